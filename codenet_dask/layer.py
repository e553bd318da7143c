"""A fully connected layer whose weights live coded on Dask workers (CodeNet).

``W`` (outputs x inputs) is cut into a ``kr x kc`` block grid and encoded once, at construction,
into a ``(kr + pr) x (kc + pc)`` product-code grid whose blocks stay resident on the workers, as
one *shard* (the blocks placed there) per worker. Feedforward ``W @ X``, backprop ``W.T @ D`` and
the update ``W -= lr * D @ X.T`` run as one task per worker and step (see ``shards``), checked and
corrected in the same graph; the update touches the coded blocks directly with encoded factors,
so ``W`` is never re-encoded (``encode_count`` stays 1).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from distributed import Client, Future, wait

from . import shards, tasks
from .blocks import CodedBlock
from .checks import ProductReport, Rejected, projection_matrix
from .codes import ProductCode, require_real_float
from .codes.grid import project_blocks
from .errors import CodeParameterError, NonFiniteInputError, ShapeMismatchError, UncorrectableError, WorkerLostError
from .faults import CorruptionHook, NoFaults, Site
from .graph import (
    Coord,
    ShardedProduct,
    alphabetic,
    encode_plan,
    repair_plan,
    round_robin_owners,
    sharded_product_plan,
    sharded_update_plan,
    step_word,
)
from .shards import Label, OperandSpec

if TYPE_CHECKING:
    from .store import CodedStore, WriteStats

#: Attempts of one coded product before it is reported uncorrectable (then: roll back).
MAX_ATTEMPTS = 3


@dataclass
class ProductResult:
    """A verified product output: one full copy on every worker that decoded it, and the report."""

    copies: dict[str, Future]
    rows: int
    batch: int
    report: ProductReport

    def to_numpy(self) -> np.ndarray:
        """Gather one copy (padding rows dropped)."""
        first = next(iter(self.copies.values()))
        return np.asarray(first.client.gather(first))[: self.rows]

    def copy_for(self, worker: str) -> Future:
        """The copy on ``worker`` (or any, if that worker decoded none)."""
        return self.copies.get(worker) or next(iter(self.copies.values()))


def _key_name(name: str) -> str:
    """A layer instance's name in task keys: its name in letter words plus a random token (which
    ends the dashboard's task prefix, so the dashboard groups by step and layer)."""
    return f"{alphabetic(name)}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Relu:
    """``relu(result)``, computed by each consuming block itself (decentralised activation)."""

    result: ProductResult


@dataclass(frozen=True)
class ReluGrad:
    """``grad * (pre > 0)``, computed by each consuming block itself (backprop through ReLU)."""

    grad: ProductResult
    pre: ProductResult


@dataclass(frozen=True)
class SoftmaxXentGrad:
    """Gradient of softmax cross-entropy of ``logits`` (a verified result) w.r.t. the logits.

    Every consuming block computes its own copy from the (small) logits.
    """

    logits: ProductResult
    labels: np.ndarray
    classes: int


@dataclass(frozen=True)
class Shipped:
    """A numpy operand already on the cluster (:meth:`CodedLayer.ship`), padded for one layer side:
    one copy on every worker holding blocks, as a previous product's verified result would be.

    Ship an operand once when several operations use it (forward and update share ``x``,
    backward and update share ``delta``); a plain numpy operand is shipped at every use.
    """

    copies: dict[str, Future]
    rows: int
    batch: int
    layout: tuple[int, int]  # (pieces, rows per piece) it is padded for

    def copy_for(self, worker: str) -> Future:
        return self.copies[worker]


Operand = np.ndarray | Shipped | ProductResult | Relu | ReluGrad | SoftmaxXentGrad
"""A product operand: a numpy matrix (or one shipped already), a previous product's verified result
on the cluster, or one of those passed through an activation that every consumer applies on its own."""


@dataclass
class CodedLayer:
    """One coded fully connected layer on a Dask cluster; build it with :meth:`encode`."""

    client: Client
    name: str
    code: ProductCode
    shape: tuple[int, int]
    dtype: np.dtype
    block_shape: tuple[int, int]
    shards: dict[str, Future]
    placement: dict[Label, str]
    hook: CorruptionHook = field(default_factory=NoFaults)
    seed: int = 0
    encode_count: int = 0
    encode_report: dict | None = None
    ops: int = 0
    max_attempts: int = MAX_ATTEMPTS
    #: This instance's name in task keys: unique, so two runs on one cluster never share a key.
    key_name: str = field(default_factory=lambda: _key_name("layer"))

    #: How products are decoded: check and correct.
    decode_kind = "coded"

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def encode(
        cls,
        client: Client,
        weights: np.ndarray,
        grid: tuple[int, int] = (4, 4),
        parity: tuple[int, int] = (2, 2),
        *,
        name: str = "dense0",
        hook: CorruptionHook | None = None,
        seed: int = 0,
        workers: Sequence[str] | None = None,
        verify_encoding: bool = True,
    ) -> CodedLayer:
        """Encode ``weights`` once into the coded grid, resident on the cluster's workers.

        Encoding may be faulty too: with ``verify_encoding`` the fresh grid is scrubbed once
        (``encode_report``) before any product uses it.
        """
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise ShapeMismatchError(f"weights must be a 2-D matrix, got shape {weights.shape}")
        dtype = require_real_float(weights.dtype, "weights")
        if not np.all(np.isfinite(weights)):
            raise NonFiniteInputError("weights hold NaN or Inf; initialise them with finite values")
        code = ProductCode(*grid, *parity)
        rows, cols = weights.shape
        if code.kr > rows or code.kc > cols:
            raise CodeParameterError(
                f"a {code.kr}x{code.kc} block grid is finer than the {rows}x{cols} matrix; "
                f"use at most {rows}x{cols} blocks"
            )
        bh, bw = math.ceil(rows / code.kr), math.ceil(cols / code.kc)
        addresses = list(workers) if workers else list(client.nthreads())
        if not addresses:
            raise CodeParameterError("the cluster has no workers; start some before encoding")
        owners = round_robin_owners(addresses, code.coded_shape)
        hook = hook or NoFaults()
        key_name = _key_name(name)
        cells = [(i, j) for i in range(code.kr) for j in range(code.kc)]
        systematic = systematic_blocks(
            client, weights, (bh, bw), {c: owners[c] for c in cells}, hook, name, f"encode-{key_name}"
        )
        plan = encode_plan(name, code, lambda i, j: systematic[(i, j)], lambda a, b: owners[(a, b)], hook, key_name)
        futures = client.get(plan.to_hlg(), plan.outputs, sync=False) if plan.outputs else []
        coded = dict(systematic)
        coded.update({(key[1], key[2]): future for key, future in zip(plan.outputs, futures)})
        layer = cls(
            client,
            name,
            code,
            (rows, cols),
            dtype,
            (bh, bw),
            _assemble(client, coded, owners, key_name),
            dict(owners),
            hook,
            seed,
            key_name=key_name,
        )
        layer.encode_count = 1
        wait(list(layer.shards.values()))
        if verify_encoding and (code.pr or code.pc):
            layer.encode_report = layer._scrub(op=0)
        return layer

    @classmethod
    def from_store(
        cls,
        client: Client,
        store: CodedStore,
        name: str,
        checkpoint: str | int | None = None,
        *,
        hook: CorruptionHook | None = None,
        seed: int = 0,
    ) -> CodedLayer:
        """A layer restored from a checkpoint: verified blocks go back to their owner workers.

        Nothing is re-encoded: the stored coded blocks (and their bookkeeping) are used as they are.
        """
        from .store import restore_to_cluster

        spec = store.layer(name)
        owners = round_robin_owners(list(client.nthreads()), spec.code.coded_shape)
        blocks = restore_to_cluster(client, store, {name: owners}, checkpoint, layers=[name])[name]
        key_name = _key_name(name)
        layer = cls(
            client,
            name,
            spec.code,
            spec.layer_shape,
            spec.dtype,
            spec.block_shape,
            _assemble(client, blocks, owners, key_name),
            dict(owners),
            hook or NoFaults(),
            seed,
            key_name=key_name,
        )
        wait(list(layer.shards.values()))
        return layer

    # -- products -------------------------------------------------------------------------
    def forward(self, x: Operand) -> ProductResult:
        """``W @ x``: block products checked down each block-column."""
        return self._product("forward", x)

    def backward(self, delta: Operand) -> ProductResult:
        """``W.T @ delta``: block products checked along each block-row."""
        return self._product("backward", delta)

    def update(self, delta: Operand, x: Operand, lr: float) -> None:
        """``W -= lr * delta @ x.T`` applied to every coded block with encoded factors."""
        self._check_lr(lr)
        d_spec, d_refs, d_batch = self._operand(delta, self.shape[0], self.code.kr, self.block_shape[0], "delta")
        x_spec, x_refs, x_batch = self._operand(x, self.shape[1], self.code.kc, self.block_shape[1], "x")
        if d_batch != x_batch:
            raise ShapeMismatchError(f"delta has batch {d_batch} but x has batch {x_batch}; they must match")
        self.ops += 1
        by_worker = self._labels_by_worker()
        jobs = {
            w: shards.UpdateJob(
                self.name,
                self.ops,
                self._worker_index(w),
                tuple(labels),
                float(lr),
                self.code.kr,
                self.code.kc,
                self.code.row_code.parity_matrix,
                self.code.col_code.parity_matrix,
                d_spec,
                x_spec,
            )
            for w, labels in by_worker.items()
        }
        plan = sharded_update_plan(f"{self.key_name}-{self.ops}", jobs, self.shards, d_refs, x_refs, self.hook)
        futures = self.client.get(plan.to_hlg(), plan.outputs, sync=False)
        self._wait(futures)
        self.shards = dict(zip(jobs, futures))

    def save(self, store: CodedStore) -> WriteStats:
        """Write this layer's coded blocks (only the changed ones) into ``store``; commit separately."""
        if self.name not in store.layers():
            store.add_layer(self.name, self.code, self.block_shape, self.dtype, self.shape)
        return store.write_layer(self.name, self.gather_blocks())

    def scrub(self) -> dict:
        """Check the resident grid's parity relations and rebuild wrong blocks in place.

        A wrong update persists in a block (every later product then corrects around it); a
        scrub finds such blocks and rebuilds them from the rest of their row or column, without
        a rollback. Every worker projects its own blocks (``scrub-project``) and one task checks
        the projections (``scrub-locate``): no block moves. Only if something is wrong does a
        ``scrub-repair`` task gather the grid, rebuild and re-verify; repaired blocks go back
        into their owners' shards. Returns the grid report (``repaired``, ``unrepairable``, ...).
        """
        self.ops += 1
        return self._scrub(self.ops)

    def _scrub(self, op: int) -> dict:
        seed = self._check_seed(op)
        projected = [
            self.client.submit(
                project_blocks,
                shard,
                self.block_shape,
                seed,
                key=(f"scrub-project-{self.key_name}-{op}", self._worker_index(w)),
                workers=[w],
                allow_other_workers=False,
                pure=False,
            )
            for w, shard in self.shards.items()
        ]
        report = self.client.submit(
            tasks.locate_grid,
            self.code,
            projected,
            self.block_shape,
            seed,
            key=f"scrub-locate-{self.key_name}-{op}",
            pure=False,
        ).result()
        if report["erased"] or report["located"] or report["unverified"]:
            return self._repair_grid(op, seed)
        return report

    def _repair_grid(self, op: int, seed: int) -> dict:
        """The rare full scrub: the whole grid on one worker, rebuilt and verified there."""
        workers = list(self.shards)
        checked = self.client.submit(
            tasks.scrub_grid,
            self.code,
            [self.shards[w] for w in workers],
            seed,
            key=f"scrub-repair-{self.key_name}-{op}",
            pure=False,
        )
        report = self.client.submit(tasks.scrub_report, checked, key=f"scrub-report-{self.key_name}-{op}").result()
        self._patch({tuple(c): checked for c in report["repaired"]}, op)
        return report

    def _patch(self, sources: dict[Label, Future], op: int) -> None:
        """Replace blocks in their owners' shards by those in ``sources`` (label -> scrub outcome)."""
        by_worker: dict[str, list[Label]] = {}
        for label in sources:
            by_worker.setdefault(self.placement[label], []).append(label)
        for w, labels in by_worker.items():
            self.shards[w] = self.client.submit(
                tasks.patch_shard,
                self.shards[w],
                [sources[lab] for lab in labels],
                labels,
                key=(f"repair-{self.key_name}-{op}", self._worker_index(w)),
                workers=[w],
                allow_other_workers=False,
            )
        wait(list(self.shards.values()))

    # -- inspection -----------------------------------------------------------------------
    @property
    def owners(self) -> dict[Coord, str]:
        """Which worker holds each coded block (replica 0 of a replicated one)."""
        return {(label[0], label[1]): w for label, w in self.placement.items() if len(label) == 2 or label[2] == 0}

    def gather_blocks(self) -> dict[Coord, CodedBlock]:
        """All coded blocks, fetched to the client (for checkpoints, tests, scrub)."""
        merged: dict[Label, CodedBlock] = {}
        for shard in self.client.gather(list(self.shards.values())):
            merged.update(shard)
        return merged  # type: ignore[return-value]

    def gather_weights(self) -> np.ndarray:
        """The systematic part of the grid assembled into ``W`` (no decoding)."""
        blocks = self.gather_blocks()
        rows = [np.hstack([blocks[(i, j)].values for j in range(self.code.kc)]) for i in range(self.code.kr)]
        return np.vstack(rows)[: self.shape[0], : self.shape[1]]

    # -- internals ------------------------------------------------------------------------
    def _wait(self, futures: Sequence[Future], poll: float = 1.0) -> None:
        """Wait for ``futures``; raise WorkerLostError if a worker holding blocks leaves meanwhile.

        Tasks are pinned to their workers, so without this a lost worker would leave them
        waiting forever instead of failing.
        """
        while True:
            try:
                wait(futures, timeout=poll)
                return
            except TimeoutError:
                # nthreads() asks the scheduler; scheduler_info() may answer from a cache without
                # workers when the scheduler is slow to reply, which would look like every worker lost.
                lost = sorted(set(self.shards) - set(self.client.nthreads()))
                if lost:
                    raise WorkerLostError(
                        f"worker(s) {', '.join(lost)} holding blocks of layer {self.name} left the cluster; "
                        f"restore the layer from the last checkpoint"
                    ) from None

    def _check_seed(self, op: int) -> int:
        """The seed of operation ``op``'s random check vectors: the same in every process and run
        (Python's ``hash`` of a string is not), so a seeded run reproduces its verdicts."""
        digest = hashlib.blake2b(f"{self.seed}/{self.name}/{op}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little")

    def _worker_index(self, worker: str) -> int:
        return sorted(self.shards).index(worker)

    def _labels_by_worker(self) -> dict[str, list[Label]]:
        by_worker: dict[str, list[Label]] = {w: [] for w in sorted(self.shards)}
        for label, w in sorted(self.placement.items()):
            by_worker[w].append(label)
        return by_worker

    @staticmethod
    def _check_lr(lr: float) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise CodeParameterError(f"learning rate must be a finite number > 0, got {lr!r}")

    def _operand(
        self, data: Operand, length: int, count: int, size: int, what: str
    ) -> tuple[OperandSpec, dict[str, list], int]:
        """How every worker gets the pieces of an operand: a spec and per-worker references."""
        if isinstance(data, Relu):
            _, refs, batch = self._operand(data.result, length, count, size, what)
            return OperandSpec("relu", size), refs, batch
        if isinstance(data, SoftmaxXentGrad):
            _, refs, batch = self._operand(data.logits, length, count, size, what)
            labels = np.asarray(data.labels, dtype=np.int64)
            return OperandSpec("softmax-grad", size, labels, data.classes), refs, batch
        if isinstance(data, ReluGrad):
            _, grads, batch = self._operand(data.grad, length, count, size, what)
            _, pres, pre_batch = self._operand(data.pre, length, count, size, what)
            if pre_batch != batch:
                raise ShapeMismatchError(
                    f"{what}: gradient batch {batch} differs from pre-activation batch {pre_batch}"
                )
            return OperandSpec("relu-grad", size), {w: grads[w] + pres[w] for w in grads}, batch
        if isinstance(data, ProductResult):
            if data.rows > length or data.rows <= length - size:
                raise ShapeMismatchError(
                    f"{what} is a {data.rows}-row result; this layer needs {count} pieces of {size} rows "
                    f"({length} in all)"
                )
        else:
            if not isinstance(data, Shipped):
                data = self._ship(data, length, count, size, what)
            if data.layout != (count, size):
                raise ShapeMismatchError(
                    f"{what} was shipped padded as {data.layout[0]} pieces of {data.layout[1]} rows; layer "
                    f"{self.name} needs {count} of {size}: ship it for this layer and side"
                )
            if not set(self.shards) <= set(data.copies):
                raise ShapeMismatchError(
                    f"{what} was shipped to other workers than layer {self.name}'s; ship it for this layer"
                )
        return OperandSpec("plain", size), {w: [data.copy_for(w)] for w in self.shards}, data.batch

    def ship(self, data: np.ndarray, what: str = "x") -> Shipped:
        """Put ``data`` on the cluster once, as ``x`` (inputs x batch) or ``delta`` (outputs x batch).

        Use the result as the operand of several operations (forward and update share ``x``) so
        the array crosses the network once, not at every use.
        """
        if what not in ("x", "delta"):
            raise ValueError(f"what must be 'x' or 'delta', got {what!r}")
        if what == "x":
            return self._ship(data, self.shape[1], self.code.kc, self.block_shape[1], what)
        return self._ship(data, self.shape[0], self.code.kr, self.block_shape[0], what)

    def _ship(self, data: np.ndarray, length: int, count: int, size: int, what: str) -> Shipped:
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[0] != length:
            raise ShapeMismatchError(
                f"{what} must have shape ({length}, batch) for layer {self.name} "
                f"{self.shape[0]}x{self.shape[1]}, got {data.shape}"
            )
        if data.shape[1] < 1:
            raise ShapeMismatchError(f"{what} has an empty batch; give at least one column")
        require_real_float(data.dtype, what)
        if data.dtype != self.dtype:
            raise ShapeMismatchError(f"{what} has dtype {data.dtype} but the layer is {self.dtype}; cast it")
        if not np.all(np.isfinite(data)):
            raise NonFiniteInputError(f"{what} holds NaN or Inf: that is bad input, not a soft error")
        padded = np.zeros((size * count, data.shape[1]), dtype=self.dtype)
        padded[:length] = data
        # One upload; every worker then copies it from a peer under a key of its own (Dask's
        # memory manager would drop extra replicas of one key, to be fetched again at each use).
        [source] = self.client.scatter([padded], hash=False)
        token = uuid.uuid4().hex[:8]
        copies = {
            w: self.client.submit(
                tasks.local_copy,
                source,
                key=(f"ship-{self.key_name}-{token}", self._worker_index(w)),
                workers=[w],
                allow_other_workers=False,
                pure=False,
            )
            for w in self.shards
        }
        return Shipped(copies, length, data.shape[1], (count, size))

    def _positions(self, step: str) -> dict[str, list[tuple[Label, shards.Position]]]:
        """Per worker, its blocks taking part in a product and their (position, codeword, copy).

        Forward checks down block-columns (codeword j = column, position = block-row), backward
        along block-rows; parity columns sit out of the forward, parity rows of the backward.
        """
        forward = step == "forward"
        members: dict[str, list[tuple[Label, shards.Position]]] = {w: [] for w in sorted(self.shards)}
        for label, w in sorted(self.placement.items()):
            a, b, r = label[0], label[1], (label[2] if len(label) > 2 else 0)
            if forward and b < self.code.kc:
                members[w].append((label, (a, b, r)))
            elif not forward and a < self.code.kr:
                members[w].append((label, (b, a, r)))
        return members

    def _product(self, step: str, data: Operand) -> ProductResult:
        """Run one product, recomputing (new attempt, new keys) while an output is rejected.

        A product still uncorrectable after an attempt may be failing on a persistently wrong
        block (a faulty update); a scrub between attempts repairs those.
        """
        forward = step == "forward"
        length, count, size = (
            (self.shape[1], self.code.kc, self.block_shape[1])
            if forward
            else (self.shape[0], self.code.kr, self.block_shape[0])
        )
        spec, refs, batch = self._operand(data, length, count, size, "x" if forward else "delta")
        self.ops += 1
        rows = self.shape[0] if forward else self.shape[1]
        v = projection_matrix(batch, self._check_seed(self.ops))
        report = ProductReport(step, self.name, op=self.ops, blocks_checked=self._blocks_checked(step))
        for attempt in range(self.max_attempts):
            product = self._sharded_product(step, attempt, spec, refs, v)
            outputs = self._run(product, report, attempt)
            errored = [f for f in outputs if f.status != "finished"]
            if errored:
                errored[0].result()  # not a soft error but a genuine failure: raise it as is
            if not any(f.type is Rejected for f in outputs):
                report.accepted_attempt = attempt
                return ProductResult(dict(zip(product.jobs, outputs)), rows, batch, report)
            report.recomputed += 1
            if self.decode_kind != "uncoded" and attempt + 1 < self.max_attempts and report.uncorrectable_codewords:
                report.repaired += [tuple(c) for c in self._scrub(self.ops)["repaired"]]
        raise UncorrectableError(
            f"{step} of layer {self.name} stayed uncorrectable after {self.max_attempts} attempts; "
            f"roll back to the last checkpoint",
            report,
        )

    def _run(self, product: ShardedProduct, report: ProductReport, attempt: int) -> list[Future]:
        """One attempt: the graph, then (rarely) the repair round; verdicts go into ``report``."""
        plan = sharded_product_plan(product)
        futures = self.client.get(plan.to_hlg(), plan.outputs + plan.reports + plan.keep, sync=False)
        n_out, n_rep = len(plan.outputs), len(plan.reports)
        outputs, verdicts = futures[:n_out], futures[n_out : n_out + n_rep]
        self._wait(outputs + verdicts)
        report.merge_verdicts(
            attempt, self.client.gather(verdicts), self._label(product.jobs[next(iter(product.jobs))])
        )
        if any(f.status == "finished" and f.type is shards.NeedsRepair for f in outputs):
            kept = dict(zip(plan.keep, futures[n_out + n_rep :]))
            workers = list(product.jobs)
            second = repair_plan(
                product,
                {w: kept[(f"block-{product.name}", product.jobs[w].worker)] for w in workers},
                {w: kept[(f"decode-{product.name}", product.jobs[w].worker)] for w in workers},
                [kept[(f"summary-{product.name}", product.jobs[w].worker)] for w in workers],
            )
            outputs = self.client.get(second.to_hlg(), second.outputs, sync=False)
            self._wait(outputs)
        return outputs

    def _sharded_product(
        self, step: str, attempt: int, spec: OperandSpec, refs: dict[str, list], v: np.ndarray
    ) -> ShardedProduct:
        forward = step == "forward"
        code = self.code.row_code if forward else self.code.col_code
        outputs, chunk_rows = (self.code.kr, self.block_shape[0]) if forward else (self.code.kc, self.block_shape[1])
        codewords = self.code.kc if forward else self.code.kr
        jobs, decode_jobs = {}, {}
        for w, members in self._positions(step).items():
            wid = self._worker_index(w)
            jobs[w] = shards.ProductJob(
                step,
                self.name,
                self.ops,
                attempt,
                wid,
                not forward,
                tuple(members),
                outputs,
                chunk_rows,
                spec,
                checked=self.decode_kind != "uncoded",
            )
            decode_jobs[w] = shards.DecodeJob(self.name, self.ops, attempt, wid, codewords, outputs, self.copies)
        # Only the coded grid checks with its code; replication votes (code None), uncoded sums.
        return ShardedProduct(
            f"{step_word(step)}-{self.key_name}-{self.ops}-{attempt}",
            jobs,
            decode_jobs,
            self.shards,
            refs,
            self.decode_kind,
            code if self.decode_kind == "coded" else None,
            v,
            self.hook,
        )

    @property
    def copies(self) -> int:
        """Replicas per block (1: the grid itself carries the redundancy)."""
        return 1

    def _label(self, job: shards.ProductJob):
        """``label(decoder, codeword, position)``: the block a verdict names."""
        forward = job.step == "forward"
        return lambda t, j, a: (a, j) if forward else (j, a)

    def _blocks_checked(self, step: str) -> int:
        code = self.code.row_code if step == "forward" else self.code.col_code
        return code.n * (self.code.kc if step == "forward" else self.code.kr)


def systematic_blocks(
    client: Client,
    weights: np.ndarray,
    block_shape: tuple[int, int],
    owners: dict[Label, str],
    hook: CorruptionHook,
    name: str,
    key: str,
) -> dict[Label, Future]:
    """Block ``(i, j, ...)`` of ``weights`` (zero-padded to whole blocks) made on its owner, each
    through its own encode fault site.

    Each piece goes straight from here to its owner (data in a task graph would pass through the
    scheduler, and large graphs are slow there).
    """
    bh, bw = block_shape
    pieces: dict[Label, Future] = {}
    for w in sorted(set(owners.values())):
        mine = [label for label in owners if owners[label] == w]
        shipped = client.scatter(
            [_padded_piece(weights, label[0], label[1], bh, bw) for label in mine], workers=[w], hash=False
        )
        pieces.update(zip(mine, shipped))
    return {
        label: client.submit(
            tasks.systematic_block,
            pieces[label],
            hook,
            Site("encode", name, 0, label),
            0,
            key=(key, *label),
            workers=[owners[label]],
            pure=False,
        )
        for label in owners
    }


def _padded_piece(weights: np.ndarray, i: int, j: int, bh: int, bw: int) -> np.ndarray:
    piece = np.zeros((bh, bw), dtype=weights.dtype)
    part = weights[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw]
    piece[: part.shape[0], : part.shape[1]] = part
    return piece


def _assemble(
    client: Client, blocks: dict[Label, Future], placement: dict[Label, str], key_name: str
) -> dict[str, Future]:
    """One shard future per worker from per-block futures already on that worker."""
    by_worker: dict[str, list[Label]] = {}
    for label in sorted(blocks):
        by_worker.setdefault(placement[label], []).append(label)
    index = {w: i for i, w in enumerate(sorted(by_worker))}
    return {
        w: client.submit(
            shards.assemble,
            labels,
            [blocks[lab] for lab in labels],
            key=(f"shard-{key_name}", index[w]),
            workers=[w],
            allow_other_workers=False,
            pure=False,
        )
        for w, labels in sorted(by_worker.items())
    }

"""A fully connected layer whose weights live coded on Dask workers (CodeNet).

``W`` (outputs x inputs) is cut into a ``kr x kc`` block grid and encoded once, at construction,
into a ``(kr + pr) x (kc + pc)`` product-code grid whose blocks stay resident on the workers.
Feedforward ``W @ X``, backprop ``W.T @ D`` and the update ``W -= lr * D @ X.T`` all run as block
tasks on the coded grid, checked and corrected in the same graph; the update touches the coded
blocks directly with encoded factors, so ``W`` is never re-encoded (``encode_count`` stays 1).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
from distributed import Client, Future, wait

from . import tasks
from .blocks import CodedBlock
from .checks import ProductReport, projection_matrix
from .codes import ProductCode, require_real_float
from .errors import CodeParameterError, NonFiniteInputError, ShapeMismatchError, UncorrectableError, WorkerLostError
from .faults import CorruptionHook, NoFaults, Site
from .graph import Activated, Coord, LossGradient, Plan, ProductSpec, encode_plan, product_plan, round_robin_owners, update_plan

if TYPE_CHECKING:
    from .store import CodedStore, WriteStats

#: Attempts of one coded product before it is reported uncorrectable (then: roll back).
MAX_ATTEMPTS = 3


@dataclass
class ProductResult:
    """Verified output chunks (futures, in order) of one coded product and what was found."""

    chunks: list[Future]
    rows: int
    batch: int
    report: ProductReport

    def to_numpy(self) -> np.ndarray:
        """Gather and assemble the result (padding rows dropped)."""
        return np.concatenate(self.chunks[0].client.gather(self.chunks))[: self.rows]


def _key_name(name: str) -> str:
    """A layer instance's name in task keys: its name plus a random 8-hex token (which Dask's
    task-prefix rule drops, so the dashboard still groups by step)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Relu:
    """``relu(result)``, computed by each consuming block task itself (decentralised activation)."""

    result: ProductResult


@dataclass(frozen=True)
class ReluGrad:
    """``grad * (pre > 0)``, computed by each consuming block task itself (backprop through ReLU)."""

    grad: ProductResult
    pre: ProductResult


@dataclass(frozen=True)
class SoftmaxXentGrad:
    """Gradient of softmax cross-entropy of ``logits`` (a verified result) w.r.t. the logits.

    Every consuming block task computes its own copy from all logit chunks (they are small).
    """

    logits: ProductResult
    labels: np.ndarray
    classes: int


Operand = Union[np.ndarray, ProductResult, Relu, ReluGrad, SoftmaxXentGrad]
"""A product operand: a numpy matrix, a previous product's verified result on the cluster, or one
of those passed through an activation that every consumer applies on its own."""


@dataclass
class CodedLayer:
    """One coded fully connected layer on a Dask cluster; build it with :meth:`encode`."""

    client: Client
    name: str
    code: ProductCode
    shape: tuple[int, int]
    dtype: np.dtype
    block_shape: tuple[int, int]
    blocks: dict[Coord, Future]
    owners: dict[Coord, str]
    hook: CorruptionHook = field(default_factory=NoFaults)
    seed: int = 0
    encode_count: int = 0
    encode_report: dict | None = None
    ops: int = 0
    max_attempts: int = MAX_ATTEMPTS
    #: This instance's name in task keys: unique, so two runs on one cluster never share a key.
    key_name: str = field(default_factory=lambda: _key_name("layer"))

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
    ) -> "CodedLayer":
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
        padded = np.zeros((bh * code.kr, bw * code.kc), dtype=dtype)
        padded[:rows, :cols] = weights
        addresses = list(workers) if workers else list(client.scheduler_info()["workers"])
        if not addresses:
            raise CodeParameterError("the cluster has no workers; start some before encoding")
        owners = round_robin_owners(addresses, code.coded_shape)
        hook = hook or NoFaults()
        key_name = _key_name(name)
        systematic = {
            (i, j): client.submit(
                tasks.systematic_block, padded[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw], hook,
                Site("encode", name, 0, (i, j)), 0,
                key=(f"encode-{key_name}", i, j), workers=[owners[(i, j)]], pure=False,
            )
            for i in range(code.kr) for j in range(code.kc)
        }
        plan = encode_plan(name, code, lambda i, j: systematic[(i, j)], lambda a, b: owners[(a, b)], hook, key_name)
        futures = client.get(plan.to_hlg(), plan.outputs, sync=False) if plan.outputs else []
        coded = dict(systematic)
        coded.update({(key[1], key[2]): future for key, future in zip(plan.outputs, futures)})
        layer = cls(client, name, code, (rows, cols), dtype, (bh, bw), coded, owners, hook, seed, key_name=key_name)
        layer.encode_count = 1
        wait(list(coded.values()))
        if verify_encoding and (code.pr or code.pc):
            layer.encode_report = layer._scrub(op=0)
        return layer

    # -- products -------------------------------------------------------------------------
    def forward(self, x: Operand) -> ProductResult:
        """``W @ x``: block products checked down each block-column (row code)."""
        pieces, batch = self._pieces(x, self.shape[1], self.code.kc, self.block_shape[1], "x")
        return self._product("forward", pieces, batch, transpose=False)

    def backward(self, delta: Operand) -> ProductResult:
        """``W.T @ delta``: block products checked along each block-row (column code)."""
        pieces, batch = self._pieces(delta, self.shape[0], self.code.kr, self.block_shape[0], "delta")
        return self._product("backward", pieces, batch, transpose=True)

    def update(self, delta: Operand, x: Operand, lr: float) -> None:
        """``W -= lr * delta @ x.T`` applied to every coded block with encoded factors."""
        self._check_lr(lr)
        d_pieces, x_pieces = self._update_pieces(delta, x)
        self.ops += 1
        plan = update_plan(
            self.name, self.ops, self.code, lambda a, b: self.blocks[(a, b)], d_pieces, x_pieces,
            float(lr), self._owner_of, self.hook, key_layer=self.key_name,
        )
        futures = self.client.get(plan.to_hlg(), plan.outputs, sync=False)
        self._wait(futures)
        self.blocks = {(key[1], key[2]): f for key, f in zip(plan.outputs, futures)}

    @classmethod
    def from_store(
        cls,
        client: Client,
        store: "CodedStore",
        name: str,
        checkpoint: str | int | None = None,
        *,
        hook: CorruptionHook | None = None,
        seed: int = 0,
    ) -> "CodedLayer":
        """A layer restored from a checkpoint: verified blocks go back to their owner workers.

        Nothing is re-encoded: the stored coded blocks (and their bookkeeping) are used as they are.
        """
        from .store import restore_to_cluster

        spec = store.layer(name)
        owners = round_robin_owners(list(client.scheduler_info()["workers"]), spec.code.coded_shape)
        blocks = restore_to_cluster(client, store, {name: owners}, checkpoint, layers=[name])[name]
        wait(list(blocks.values()))
        return cls(client, name, spec.code, spec.layer_shape, spec.dtype, spec.block_shape, blocks, owners,
                   hook or NoFaults(), seed, key_name=_key_name(name))

    def save(self, store: "CodedStore") -> "WriteStats":
        """Write this layer's coded blocks (only the changed ones) into ``store``; commit separately."""
        if self.name not in store.layers():
            store.add_layer(self.name, self.code, self.block_shape, self.dtype, self.shape)
        return store.write_layer(self.name, self.gather_blocks())

    def scrub(self) -> dict:
        """Check the resident grid's parity relations and rebuild wrong blocks in place.

        A wrong update persists in a block (every later product then corrects around it); a
        scrub finds such blocks and rebuilds them from the rest of their row or column, without
        a rollback. Runs as one ``scrub-<layer>`` task; repaired blocks are moved back to their
        owners. Returns the grid report (``repaired``, ``unrepairable``, ... coordinates).
        """
        self.ops += 1
        return self._scrub(self.ops)

    def _scrub(self, op: int) -> dict:
        coords = list(self.blocks)
        checked = self.client.submit(
            tasks.scrub_grid, self.code, dict(zip(coords, (self.blocks[c] for c in coords))),
            hash((self.seed, self.name, op)) % 2**32, key=f"scrub-{self.key_name}-{op}", pure=False,
        )
        report = self.client.submit(tasks.scrub_report, checked, key=f"scrub-report-{self.key_name}-{op}").result()
        for coord in map(tuple, report["repaired"]):
            self.blocks[coord] = self.client.submit(
                tasks.repaired_block, checked, coord, key=(f"repair-{self.key_name}-{op}", *coord),
                workers=[self.owners[coord]], allow_other_workers=False,
            )
        wait(list(self.blocks.values()))
        return report

    # -- inspection -----------------------------------------------------------------------
    def gather_blocks(self) -> dict[Coord, CodedBlock]:
        """All coded blocks, fetched to the client (for checkpoints, tests, scrub)."""
        coords = list(self.blocks)
        return dict(zip(coords, self.client.gather([self.blocks[c] for c in coords])))

    def gather_weights(self) -> np.ndarray:
        """The systematic part of the grid assembled into ``W`` (no decoding)."""
        blocks = self.gather_blocks()
        rows = [np.hstack([blocks[(i, j)].values for j in range(self.code.kc)]) for i in range(self.code.kr)]
        return np.vstack(rows)[: self.shape[0], : self.shape[1]]

    # -- internals ------------------------------------------------------------------------
    def _wait(self, futures: Sequence[Future], poll: float = 1.0) -> None:
        """Wait for ``futures``; raise WorkerLostError if a worker owning blocks leaves meanwhile.

        Block tasks are pinned to their owners, so without this a lost owner would leave them
        waiting forever instead of failing.
        """
        while True:
            try:
                wait(futures, timeout=poll)
                return
            except TimeoutError:
                lost = sorted(self._holders() - set(self.client.scheduler_info()["workers"]))
                if lost:
                    raise WorkerLostError(
                        f"worker(s) {', '.join(lost)} holding blocks of layer {self.name} left the cluster; "
                        f"restore the layer from the last checkpoint"
                    ) from None

    def _holders(self) -> set[str]:
        """Workers holding this layer's blocks."""
        return set(self.owners.values())

    @staticmethod
    def _check_lr(lr: float) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise CodeParameterError(f"learning rate must be a finite number > 0, got {lr!r}")

    def _update_pieces(self, delta: Operand, x: Operand) -> tuple[list, list]:
        d_pieces, d_batch = self._pieces(delta, self.shape[0], self.code.kr, self.block_shape[0], "delta")
        x_pieces, x_batch = self._pieces(x, self.shape[1], self.code.kc, self.block_shape[1], "x")
        if d_batch != x_batch:
            raise ShapeMismatchError(f"delta has batch {d_batch} but x has batch {x_batch}; they must match")
        return d_pieces, x_pieces

    def _owner_of(self, a: int, b: int) -> str:
        return self.owners[(a, b)]

    def _pieces(self, data: Operand, length: int, count: int, size: int, what: str) -> tuple[list, int]:
        """Split an operand into the grid's block pieces (zero-padded), scattered to the cluster."""
        if isinstance(data, Relu):
            pieces, batch = self._pieces(data.result, length, count, size, what)
            return [Activated("relu", p) for p in pieces], batch
        if isinstance(data, SoftmaxXentGrad):
            logits, batch = self._pieces(data.logits, length, count, size, what)
            labels = np.asarray(data.labels, dtype=np.int64)
            return [LossGradient(tuple(logits), labels, data.classes, i) for i in range(count)], batch
        if isinstance(data, ReluGrad):
            grads, batch = self._pieces(data.grad, length, count, size, what)
            pres, pre_batch = self._pieces(data.pre, length, count, size, what)
            if pre_batch != batch:
                raise ShapeMismatchError(f"{what}: gradient batch {batch} differs from pre-activation batch {pre_batch}")
            return [Activated("relu-grad", g, p) for g, p in zip(grads, pres)], batch
        if isinstance(data, ProductResult):
            if len(data.chunks) != count or data.rows > length or data.rows <= length - size:
                raise ShapeMismatchError(
                    f"{what} comes in {len(data.chunks)} chunks of a {data.rows}-row result; this "
                    f"layer needs {count} pieces of {size} rows ({length} in all)"
                )
            return list(data.chunks), data.batch
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
        pieces = [padded[i * size:(i + 1) * size] for i in range(count)]
        return self.client.scatter(pieces, hash=False), data.shape[1]

    def _product(self, step: str, pieces: list, batch: int, transpose: bool) -> ProductResult:
        """Run one product, recomputing (new attempt, new keys) while a chunk is rejected."""
        self.ops += 1
        forward = step == "forward"
        rows = self.shape[0] if forward else self.shape[1]
        v = projection_matrix(batch, hash((self.seed, self.name, self.ops)) % 2**32)
        report = ProductReport(step, self.name, op=self.ops, blocks_checked=self._blocks_checked(step))
        for attempt in range(self.max_attempts):
            plan = self._product_plan(self._spec(step, attempt, transpose), pieces, v)
            outputs = self.client.get(plan.to_hlg(), plan.outputs + plan.reports, sync=False)
            chunks, verdicts = outputs[: len(plan.outputs)], outputs[len(plan.outputs):]
            self._wait(outputs)
            report.merge_verdicts(attempt, self.client.gather(verdicts), plan.label)
            errored = [f for f in chunks if f.status != "finished"]
            if errored:
                errored[0].result()  # not a soft error but a genuine failure: raise it as is
            if not any(f.type is tasks.Rejected for f in chunks):
                report.accepted_attempt = attempt
                return ProductResult(chunks, rows, batch, report)
            report.recomputed += 1
        raise UncorrectableError(
            f"{step} of layer {self.name} stayed uncorrectable after {self.max_attempts} attempts; "
            f"roll back to the last checkpoint", report,
        )

    def _spec(self, step: str, attempt: int, transpose: bool) -> ProductSpec:
        """Layout of one product: forward checks block-columns, backward block-rows."""
        forward = step == "forward"

        def coord(a: int, j: int) -> Coord:
            return (a, j) if forward else (j, a)

        return ProductSpec(
            step=step, layer=self.name, op=self.ops, attempt=attempt,
            code=self.code.row_code if forward else self.code.col_code,
            codewords=self.code.kc if forward else self.code.kr, transpose=transpose, coord=coord,
            block=lambda a, j: self.blocks[coord(a, j)], owner=lambda a, j: self.owners[coord(a, j)],
            raise_on_reject=False, key_layer=self.key_name,
        )

    def _product_plan(self, spec: ProductSpec, pieces: list, v: np.ndarray) -> Plan:
        return product_plan(spec, pieces, v, self.hook)

    def _blocks_checked(self, step: str) -> int:
        code = self.code.row_code if step == "forward" else self.code.col_code
        return code.n * (self.code.kc if step == "forward" else self.code.kr)

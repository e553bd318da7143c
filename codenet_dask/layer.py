"""A fully connected layer whose weights live coded on the workers (CodeNet): the user-facing facade.

``W`` (outputs x inputs) is cut into a ``kr x kc`` block grid and encoded once, at construction,
into a ``(kr + pr) x (kc + pc)`` product-code grid whose blocks stay resident on the workers, as
one *shard* (the blocks placed there) per worker. Feedforward ``W @ X``, backprop ``W.T @ D`` and
the update ``W -= lr * D @ X.T`` run as one task per worker and step (``kernels.shards``), checked
and corrected in the same plan; the update touches the coded blocks directly with encoded factors,
so ``W`` is never re-encoded (``encode_count`` stays 1).

The layer plans its operations (``protocol.plans``) and hands them to an executor: a Dask cluster
(pass a ``distributed.Client``) or the in-process reference (:class:`~codenet_dask.executors.LocalExecutor`).
What it decides itself is the protocol's control flow: accept a product, run the repair round,
recompute a rejected attempt (with a scrub in between), give up after ``max_attempts``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .codes import ProductCode, mds_code, require_real_float
from .errors import CodeParameterError, NonFiniteInputError, ShapeMismatchError, StepTimeoutError, UncorrectableError
from .executors import Executor, Handle, as_executor
from .faults import CorruptionHook, NoFaults
from .kernels import factors, scrub, shards
from .kernels.blocks import CodedBlock
from .kernels.scrub import StoredWord
from .kernels.shards import Label, Member, OperandSpec, Shard, SummedCodeword, Transform, Verdict
from .protocol.keys import KeyMaker, step_word
from .protocol.placement import Coord, spread_owners
from .protocol.plans import (
    ShardedProduct,
    assemble_plan,
    copies_plan,
    encode_plan,
    parity_sources,
    scrub_plan,
    second_round_plan,
    sharded_product_plan,
    systematic_plan,
    update_plan,
)
from .protocol.reports import ProductReport
from .protocol.types import Plan

if TYPE_CHECKING:
    from .store import CodedStore, WriteStats

log = logging.getLogger(__name__)

#: Attempts of one coded product before it is reported uncorrectable (then: roll back).
MAX_ATTEMPTS = 3


@dataclass
class ProductResult:
    """A verified product output: one full copy on every worker that decoded it, and the report."""

    executor: Executor
    copies: dict[str, Handle]
    rows: int
    batch: int
    report: ProductReport

    def to_numpy(self) -> np.ndarray:
        """Gather one copy (padding rows dropped)."""
        return self.trimmed(self.executor.gather([self.any_copy], f"{self.report.operation} {self.report.layer}")[0])

    @property
    def any_copy(self) -> Handle:
        """One copy's handle, to gather it with other things in one round trip (then :meth:`trimmed`)."""
        return next(iter(self.copies.values()))

    def trimmed(self, gathered: Any) -> np.ndarray:
        """A gathered copy without its padding rows."""
        return np.asarray(shards.output_of(gathered))[: self.rows]

    def copy_for(self, worker: str) -> Handle:
        """The copy on ``worker`` (or any, if that worker decoded none)."""
        return self.copies.get(worker) or next(iter(self.copies.values()))


@dataclass(frozen=True)
class FirstRound:
    """One attempt of a product, started: per worker (in the product's order) its output and its
    verdict, and what a second round would read (kept on the workers until it is settled)."""

    product: ShardedProduct
    outputs: list[Handle]
    verdicts: list[Handle]
    products: dict[str, Handle]
    decoded: dict[str, Handle]
    summaries: list[Handle]


@dataclass
class Submitted:
    """A product started by :meth:`CodedLayer.submit`: ``result`` is its tentative result (its
    copies may hold markers of an output not accepted), ``verdicts`` the handles of its first
    round's verdicts (``kernels.shards.Verdict``), to gather with other things or to gate an update
    on. Once settled, ``result`` is the accepted result and ``verdicts`` are the accepted ones."""

    layer: CodedLayer
    spec: OperandSpec
    refs: dict[str, list]
    result: ProductResult
    first: FirstRound
    verdicts: list[Handle]


@dataclass(frozen=True)
class Shipped:
    """A numpy operand already on the cluster (:meth:`CodedLayer.ship`), padded for one layer side:
    one copy on every worker holding blocks, as a previous product's verified result would be.

    Ship an operand once when several operations use it (forward and update share ``x``,
    backward and update share ``delta``); a plain numpy operand is shipped at every use.
    """

    copies: dict[str, Handle]
    rows: int
    batch: int
    layout: tuple[int, int]  # (pieces, rows per piece) it is padded for

    def copy_for(self, worker: str) -> Handle:
        return self.copies[worker]


@dataclass(frozen=True)
class Activated:
    """``transform(*sources)``, computed by each consuming block itself (decentralised activation).

    ``sources`` are verified results (or shipped operands) of the same length; the transforms of a
    neural network (ReLU, its gradient, the softmax cross-entropy gradient) are in ``codenet_dask.nn``.
    """

    sources: tuple[ProductResult | Shipped, ...]
    transform: Transform


Operand = np.ndarray | Shipped | ProductResult | Activated
"""A product operand: a numpy matrix (or one shipped already), a previous product's verified result
on the cluster, or results passed through a transform that every consumer applies on its own."""


@dataclass
class CodedLayer:
    """One coded fully connected layer on a cluster; build it with :meth:`encode`."""

    executor: Executor
    name: str
    code: ProductCode
    shape: tuple[int, int]
    dtype: np.dtype
    block_shape: tuple[int, int]
    shards: dict[str, Handle]
    placement: dict[Label, str]
    #: The workers holding blocks, in the executor's order (a worker's index ends its task keys).
    workers: list[str]
    hook: CorruptionHook = field(default_factory=NoFaults)
    seed: int = 0
    encode_count: int = 0
    encode_report: dict | None = None
    ops: int = 0
    max_attempts: int = MAX_ATTEMPTS
    #: Stems of this instance's task keys: unique, so two runs on one cluster never share a key
    #: and no operation of this layer reuses one.
    keys: KeyMaker = field(default_factory=lambda: KeyMaker("layer"))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def encode(
        cls,
        target: Any,
        weights: np.ndarray,
        grid: tuple[int, int] = (4, 4),
        parity: tuple[int, int] = (2, 2),
        *,
        name: str = "dense0",
        hook: CorruptionHook | None = None,
        seed: int = 0,
        workers: list[str] | None = None,
        verify_encoding: bool = True,
        attempt: int = 0,
    ) -> CodedLayer:
        """Encode ``weights`` once into the coded grid, resident on the workers of ``target`` (a
        ``distributed.Client`` or an executor).

        Encoding may be faulty too: with ``verify_encoding`` the fresh grid is scrubbed once
        (``encode_report``) before any product uses it. ``attempt`` numbers the fault sites of
        this encoding and its scrub from there (an initialisation done again gets fresh ones).
        """
        executor = as_executor(target)
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
                f"a {code.kr}x{code.kc} block grid is finer than the {rows}x{cols} matrix; use at most {rows}x{cols} blocks"
            )
        bh, bw = math.ceil(rows / code.kr), math.ceil(cols / code.kc)
        addresses = list(workers) if workers else executor.workers()
        if not addresses:
            raise CodeParameterError("the cluster has no workers; start some before encoding")
        owners = cast(dict[Label, str], spread_owners(addresses, code.coded_shape))  # Coord keys are Labels
        hook = hook or NoFaults()
        keys = KeyMaker(name)
        plan = Plan()
        cells: dict[Label, str] = {(i, j): owners[(i, j)] for i in range(code.kr) for j in range(code.kc)}
        key = f"encode-{keys.stem()}"
        needs = {(w, label) for label, w in cells.items()}
        for coord, (sources, _) in parity_sources(code).items():
            needs |= {(owners[coord], s) for s in sources}
        pieces = scatter_pieces(executor, weights, (bh, bw), needs)
        systematic = systematic_plan(
            {c: pieces[(w, c)] for c, w in cells.items()}, cells, hook, name, key, plan, attempt
        )
        parity_blocks = encode_plan(
            name,
            code,
            lambda s, coord: pieces[(owners[coord], s)],
            lambda a, b: owners[(a, b)],
            hook,
            key,
            plan,
            attempt,
        )
        layer = cls(
            executor,
            name,
            code,
            (rows, cols),
            dtype,
            (bh, bw),
            {},
            dict(owners),
            holders(addresses, owners),
            hook,
            seed,
            keys=keys,
        )
        layer._assemble({**systematic, **cast(dict[Label, Any], parity_blocks)}, plan)
        layer.encode_count = 1
        if verify_encoding and (code.pr or code.pc):
            layer.encode_report = layer._scrub(op=0, first_attempt=attempt)
        return layer

    @classmethod
    def from_store(
        cls,
        target: Any,
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
        executor = as_executor(target)
        spec = store.layer(name)
        addresses = executor.workers()
        owners = cast(dict[Label, str], spread_owners(addresses, spec.code.coded_shape))  # Coord keys are Labels
        blocks = cast(dict[Label, CodedBlock], store.load_layer(name, checkpoint)[0])
        if set(blocks) != set(owners):
            raise ShapeMismatchError(f"layer {name!r} in the store does not hold every block of its coded grid")
        layer = cls(
            executor,
            name,
            spec.code,
            spec.layer_shape,
            spec.dtype,
            spec.block_shape,
            {},
            dict(owners),
            holders(addresses, owners),
            hook or NoFaults(),
            seed,
            keys=KeyMaker(name),
        )
        layer._assemble(scatter_blocks(executor, blocks, owners), Plan())
        return layer

    def _assemble(self, blocks: dict[Label, Any], plan: Plan) -> None:
        """Shards of ``blocks`` (refs of ``plan`` or handles), one per worker, become the layer's."""
        index = {w: i for i, w in enumerate(self.workers)}
        shard_refs = assemble_plan(blocks, self.placement, index, f"shard-{self.keys.stem()}", plan)
        handles = self.executor.run(plan, list(shard_refs.values()))
        self.shards = dict(zip(shard_refs, handles))
        self.executor.wait(list(self.shards.values()), f"encode {self.name}")

    # -- products -------------------------------------------------------------------------
    def forward(self, x: Operand) -> ProductResult:
        """``W @ x``: block products checked down each block-column."""
        return self._product("forward", x)

    def backward(self, delta: Operand) -> ProductResult:
        """``W.T @ delta``: block products checked along each block-row."""
        return self._product("backward", delta)

    def update(self, delta: Operand, x: Operand, lr: float, *, after: Sequence[Submitted] = ()) -> None:
        """``W -= lr * delta @ x.T`` applied to every coded block with encoded factors (returns once
        submitted; the next operation on the layer waits for it). The factors every block used are
        checked against each other (``kernels.factors``); the rows and columns a wrong one touched
        are marked, every product takes them as erasures, and the next :meth:`scrub` rebuilds them.

        ``after``: products :meth:`submit`-ted but not settled yet that must be accepted first (the
        backward product that reads this layer's weights, those its operands come from): every
        worker's update reads all their verdicts and runs only if all are accepted, else leaves
        the blocks as they are (then settle those products and update again)."""
        self._check_lr(lr)
        d_spec, d_refs, d_batch = self._operand(delta, self.shape[0], self.code.kr, self.block_shape[0], "delta")
        x_spec, x_refs, x_batch = self._operand(x, self.shape[1], self.code.kc, self.block_shape[1], "x")
        if d_batch != x_batch:
            raise ShapeMismatchError(f"delta has batch {d_batch} but x has batch {x_batch}; they must match")
        self.ops += 1
        row_parity, col_parity = self.code.row_code.parity_matrix, self.code.col_code.parity_matrix
        words = self._factor_words()
        check_seed = self._check_seed(self.ops) if words else None
        jobs = {
            w: shards.UpdateJob(
                self.name,
                self.ops,
                self._index(w),
                tuple(labels),
                float(lr),
                self.code.kr,
                self.code.kc,
                row_parity,
                col_parity,
                d_spec,
                x_spec,
                check_seed,
            )
            for w, labels in self._labels_by_worker().items()
        }
        checks = {w: factors.CheckJob(self.name, self.ops, job.worker, words) for w, job in jobs.items()}
        gate = [v for submitted in after for v in submitted.verdicts]
        mine = [submitted.first for submitted in after if submitted.layer is self]
        readers = {w: [first.products[w] for first in mine if w in first.products] for w in jobs}
        plan, outputs = update_plan(
            self.keys.stem(self.ops),
            jobs,
            self.shards,
            d_refs,
            x_refs,
            self.hook,
            checks if words else None,
            gate,
            readers,
        )
        # Not waited for: whatever uses the shards next (a product, a scrub, a gather) waits, with
        # its deadline, for this update too, and updates of lower layers run meanwhile.
        self.shards = dict(zip(jobs, self.executor.run(plan, [outputs[w] for w in jobs])))

    def save(self, store: CodedStore, blocks: dict[Coord, CodedBlock] | None = None) -> WriteStats:
        """Write this layer's coded blocks (only the changed ones) into ``store``; commit separately.
        ``blocks``: the layer's :meth:`gather_blocks`, if the caller has them already. Blocks a
        wrong update factor left marked are never stored: :meth:`scrub` first."""
        blocks = self.gather_blocks() if blocks is None else blocks
        marked = sorted(label for label, block in blocks.items() if block.suspect is not None)
        if marked:
            raise UncorrectableError(
                f"layer {self.name}: blocks {marked} hold entries a wrong update factor touched; scrub the layer "
                "(which rebuilds them) before saving it"
            )
        if self.name not in store.layers():
            store.add_layer(self.name, self.code, self.block_shape, self.dtype, self.shape)
        return store.write_layer(self.name, blocks)

    def scrub(self, align: bool = True) -> dict:
        """Check the resident grid's parity relations and rebuild wrong blocks in place.

        A wrong update persists in a block (every later product then corrects around it); a
        scrub finds such entries and rebuilds them from the rest of their codeword, without a
        rollback (``kernels.scrub``: every worker ships its share of the stored syndromes, then
        decodes them all and corrects its own blocks; no block moves). Returns the report
        (``erased``, ``located``, ``repaired``, ``unrepairable`` blocks, ``ok``). A clean grid is
        ``aligned`` (its parity blocks rewritten to an exact codeword) unless ``align`` is off: a
        scrub that writes nothing when nothing is flagged, to verify an earlier scrub's writes.
        """
        self.ops += 1
        return self._scrub(self.ops, align)

    def _scrub(self, op: int, align: bool = True, first_attempt: int = 0) -> dict:
        """Scrub, again (new attempt, fresh keys) while something is unrepairable: a soft error in
        the scrub itself must not cost a rollback; after ``max_attempts`` the report says so."""
        words = self._stored_words()
        if not words:
            return {
                "checked": 0,
                "erased": [],
                "located": [],
                "repaired": [],
                "unrepairable": [],
                "entries": 0,
                "realigned": 0,
                "aligned": 0,
                "ok": True,
            }
        for attempt in range(first_attempt, first_attempt + self.max_attempts):
            grid = self.code if self.code.pr and len(next(iter(self.placement))) == 2 else None
            jobs = {w: scrub.ScrubJob(self.name, op, attempt, self._index(w), words, grid, align) for w in self.workers}
            sp = scrub_plan(self.keys.stem(op, attempt), jobs, self.shards, self.hook)
            handles = self.executor.run(sp.plan, [sp.shards[w] for w in jobs] + [sp.reports[w] for w in jobs])
            shards_out, reports = handles[: len(jobs)], handles[len(jobs) :]
            found = scrub.merge_reports(self.executor.gather(reports, f"scrub {self.name}"))
            self.executor.wait(shards_out, f"scrub {self.name}")
            self.shards = dict(zip(jobs, shards_out))
            if found["ok"]:
                break
        return found

    def evacuate(self, gone: Collection[str]) -> list[Label]:
        """Move the layer off the workers ``gone`` (quarantined or lost): the others' blocks are
        placed again over the executor's current workers, ``gone``'s blocks arrive erased
        (:meth:`CodedBlock.erased`) and the next :meth:`scrub` rebuilds them from their codewords
        (never re-encoded from W). Returns the erased labels; the caller scrubs and verifies, and
        rolls back when the code cannot rebuild them."""
        keep = [w for w in self.executor.workers() if w not in gone]
        if not keep:
            raise UncorrectableError(f"layer {self.name}: no worker is left to hold its blocks")
        blocks: dict[Label, CodedBlock] = {}
        healthy = [h for w, h in self.shards.items() if w not in gone]
        for shard in self.executor.gather(healthy, f"evacuate {self.name}"):
            blocks.update(shard)
        erased = sorted(label for label, w in self.placement.items() if w in gone)
        blocks.update({label: CodedBlock.erased(self.block_shape, self.dtype) for label in erased})
        self.placement = dict(cast(dict[Label, str], spread_owners(keep, self.code.coded_shape)))
        self.workers = holders(keep, self.placement)
        self._assemble(scatter_blocks(self.executor, blocks, self.placement), Plan())
        return erased

    def participants(self, step: str) -> dict[str, list[Coord]]:
        """The blocks whose products each worker computes in a ``forward`` or ``backward``."""
        return {w: [(m.label[0], m.label[1]) for m in members] for w, members in self._members(step).items()}

    def _factor_words(self) -> tuple[factors.FactorWord, ...]:
        """The codewords an update's factors form (``kernels.factors``): down every block-column
        the row factors under the row code, along every block-row the column factors under the
        column code. Without parity one way, the copies of a factor the other way: every block of a
        block-row uses the same row factor, of a block-column the same column factor."""
        nr, nc = self.code.coded_shape
        column = [tuple((a, b) for a in range(nr)) for b in range(nc)]
        row = [tuple((a, b) for b in range(nc)) for a in range(nr)]
        words = []
        for side, code, along, across in (
            (factors.ROWS, self.code.row_code, column, row),
            (factors.COLS, self.code.col_code, row, column),
        ):
            if code.p:
                words += [factors.FactorWord(code, members, side) for members in along]
            elif len(across[0]) > 1:
                words += [factors.FactorWord(mds_code(1, len(m) - 1), m, side) for m in across]
        return tuple(words)

    def _stored_words(self) -> tuple[StoredWord, ...]:
        """The stored grid's codewords a scrub decodes: the block-columns under the row code (or,
        without parity rows, the block-rows under the column code)."""
        nr, nc = self.code.coded_shape
        if self.code.pr:
            return tuple(scrub.StoredWord(self.code.row_code, tuple((a, j) for a in range(nr))) for j in range(nc))
        if self.code.pc:
            return tuple(scrub.StoredWord(self.code.col_code, tuple((i, b) for b in range(nc))) for i in range(nr))
        return ()

    # -- inspection -----------------------------------------------------------------------
    @property
    def owners(self) -> dict[Coord, str]:
        """Which worker holds each coded block (replica 0 of a replicated one)."""
        return {(label[0], label[1]): w for label, w in self.placement.items() if len(label) == 2 or label[2] == 0}

    def gather_blocks(self) -> dict[Coord, CodedBlock]:
        """All coded blocks, fetched to the client (for checkpoints, tests, scrub)."""
        return self.blocks_of(self.executor.gather(list(self.shards.values()), f"gather {self.name}"))

    def blocks_of(self, gathered: Sequence[Shard]) -> dict[Coord, CodedBlock]:
        """The coded blocks in gathered shards (of :attr:`shards`, e.g. fetched with other things)."""
        merged: dict[Label, CodedBlock] = {}
        for shard in gathered:
            merged.update(shard)
        return merged  # type: ignore[return-value]

    def gather_weights(self) -> np.ndarray:
        """The systematic part of the grid assembled into ``W`` (no decoding)."""
        return self.weights_of(self.gather_blocks())

    def weights_of(self, blocks: dict[Coord, CodedBlock]) -> np.ndarray:
        """The systematic blocks of :meth:`blocks_of` assembled into ``W`` (no decoding)."""
        rows = [np.hstack([blocks[(i, j)].values for j in range(self.code.kc)]) for i in range(self.code.kr)]
        return np.vstack(rows)[: self.shape[0], : self.shape[1]]

    # -- internals ------------------------------------------------------------------------
    def _check_seed(self, op: int) -> int:
        """The seed of operation ``op``'s random check vectors: the same in every process and run
        (Python's ``hash`` of a string is not), so a seeded run reproduces its verdicts."""
        digest = hashlib.blake2b(f"{self.seed}/{self.name}/{op}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little")

    def _index(self, worker: str) -> int:
        return self.workers.index(worker)

    def _labels_by_worker(self) -> dict[str, list[Label]]:
        by_worker: dict[str, list[Label]] = {w: [] for w in self.workers}
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
        if isinstance(data, Activated):
            parts = [self._operand(source, length, count, size, what) for source in data.sources]
            batches = {batch for _, _, batch in parts}
            if len(batches) != 1:
                raise ShapeMismatchError(f"{what}: the sources of one activation have batches {sorted(batches)}")
            refs = {w: [ref for _, part, _ in parts for ref in part[w]] for w in self.shards}
            return OperandSpec(size, data.transform), refs, parts[0][2]
        if isinstance(data, ProductResult):
            if data.rows > length or data.rows <= length - size:
                raise ShapeMismatchError(
                    f"{what} is a {data.rows}-row result; this layer needs {count} pieces of {size} rows ({length} in all)"
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
        return OperandSpec(size), {w: [data.copy_for(w)] for w in self.shards}, data.batch

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
                f"{what} must have shape ({length}, batch) for layer {self.name} {self.shape[0]}x{self.shape[1]}, got {data.shape}"
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
        # One upload; every worker then copies it from a peer under a key of its own.
        [source] = self.executor.scatter([padded])
        plan = Plan()
        index = {w: i for i, w in enumerate(self.workers)}
        refs = copies_plan(source, list(self.shards), index, f"ship-{self.keys.stem()}", plan)
        copies = dict(zip(refs, self.executor.run(plan, list(refs.values()))))
        return Shipped(copies, length, data.shape[1], (count, size))

    def _members(self, step: str) -> dict[str, list[Member]]:
        """Per worker, its blocks taking part in a product and where each sits.

        Forward: the summed codeword runs down the block-rows (position = block-row, piece =
        block-column); backward along the block-columns. Parity columns sit out of the forward,
        parity rows of the backward.
        """
        forward = step == "forward"
        members: dict[str, list[shards.Member]] = {w: [] for w in self.workers}
        for label, w in sorted(self.placement.items()):
            a, b = label[0], label[1]
            if forward and b < self.code.kc:
                members[w].append(shards.Member(label, 0, a, b))
            elif not forward and a < self.code.kr:
                members[w].append(shards.Member(label, 0, b, a))
        return members

    def _codewords(self, step: str) -> tuple[SummedCodeword, ...]:
        """The product code's one summed codeword: its systematic positions are the output chunks."""
        code = self.code.row_code if step == "forward" else self.code.col_code
        return (shards.SummedCodeword(code, tuple(range(code.k))),)

    @property
    def checked(self) -> bool:
        """Whether products are checked (the uncoded baseline checks nothing)."""
        return True

    def _product(self, step: str, data: Operand) -> ProductResult:
        """Run one product and accept it (see :meth:`submit` and :meth:`settle`)."""
        return self.settle(self.submit(step, data))

    def submit(self, step: str, data: Operand) -> Submitted:
        """Start a ``"forward"`` or ``"backward"`` product without waiting for it: its first round
        runs on the cluster, and its tentative result can feed further operations at once (an
        output that is not accepted reaches them as a marker, and they skip their work). Accept it
        with :meth:`settle`; a training step submits all its operations, then settles them in order.
        """
        forward = step == "forward"
        if step not in ("forward", "backward"):
            raise ValueError(f"step must be 'forward' or 'backward', got {step!r}")
        length, count, size = (
            (self.shape[1], self.code.kc, self.block_shape[1])
            if forward
            else (self.shape[0], self.code.kr, self.block_shape[0])
        )
        spec, refs, batch = self._operand(data, length, count, size, "x" if forward else "delta")
        self.ops += 1
        rows = self.shape[0] if forward else self.shape[1]
        report = ProductReport(step, self.name, op=self.ops, blocks_checked=self._blocks_checked(step))
        first = self._first_round(self._sharded_product(step, self.ops, 0, spec, refs))
        result = ProductResult(self.executor, dict(zip(first.product.jobs, first.outputs)), rows, batch, report)
        return Submitted(self, spec, refs, result, first, first.verdicts)

    def settle(self, submitted: Submitted, verdicts: Sequence[Verdict] | None = None) -> ProductResult:
        """Accept a :meth:`submit`-ted product: its verdicts (``verdicts``: gathered already, with
        other things), the second round where the first flagged entries, and recomputation (new
        attempt, new keys) while an output is rejected. A product still uncorrectable after an
        attempt may be failing on a persistently wrong block (a faulty update); a scrub between
        attempts repairs those. An attempt that passes its deadline counts as rejected. Returns
        the accepted result; UncorrectableError after ``max_attempts``."""
        report, first = submitted.result.report, submitted.first
        step = report.operation
        for attempt in range(self.max_attempts):
            if attempt:
                first = self._first_round(
                    self._sharded_product(step, report.op, attempt, submitted.spec, submitted.refs)
                )
                verdicts = None
            try:
                accepted = self._finish(first, report, attempt, verdicts)
            except StepTimeoutError as exc:
                log.warning("%s; recomputing", exc)
                report.timeouts += 1
                report.recomputed += 1
                continue
            if accepted is not None:
                report.accepted_attempt = attempt
                outputs, submitted.verdicts = accepted
                submitted.result.copies = dict(zip(first.product.jobs, outputs))
                return submitted.result
            report.recomputed += 1
            if self.checked and attempt + 1 < self.max_attempts and report.uncorrectable_codewords:
                report.repaired += [tuple(c) for c in self._scrub(report.op)["repaired"]]
        raise UncorrectableError(
            f"{step} of layer {self.name} stayed uncorrectable after {self.max_attempts} attempts; roll back to the last checkpoint",
            report,
        )

    def _first_round(self, product: ShardedProduct) -> FirstRound:
        """One attempt's first round, started: per worker its output and verdict, and what a
        second round would read."""
        pp = sharded_product_plan(product)
        workers = list(product.jobs)
        outputs = [pp.outputs[w] for w in workers]
        verdicts = [pp.verdicts[w] for w in workers if w in pp.verdicts]
        kept = [pp.products[w] for w in workers] + [pp.decoded[w] for w in workers if w in pp.decoded] + pp.summaries
        handles = self.executor.run(pp.plan, outputs + verdicts + kept)
        rest = dict(zip([r.key for r in kept], handles[len(outputs) + len(verdicts) :]))
        return FirstRound(
            product,
            handles[: len(outputs)],
            handles[len(outputs) : len(outputs) + len(verdicts)],
            {w: rest[pp.products[w].key] for w in workers},
            {w: rest[pp.decoded[w].key] for w in pp.decoded},
            [rest[r.key] for r in pp.summaries],
        )

    def _finish(
        self, first: FirstRound, report: ProductReport, attempt: int, verdicts: Sequence[Verdict] | None
    ) -> tuple[list[Handle], list[Handle]] | None:
        """The rest of one attempt: its verdicts into ``report``, the second round when the first
        flagged entries; the outputs and verdict handles if every worker's output was accepted,
        else None."""
        product = first.product
        what = f"{product.jobs[next(iter(product.jobs))].step} {self.name}"
        if not first.verdicts:  # unchecked (the uncoded baseline): the plain sums
            self.executor.wait(first.outputs, what)
            return first.outputs, []
        if verdicts is None:
            verdicts = self.executor.gather(first.verdicts, what)
        if any(v.status == "skipped" for v in verdicts):
            raise ValueError(f"{what}: its operand was not accepted; settle the product it comes from first")
        report.merge_findings(attempt, verdicts)
        out, found = first.outputs, first.verdicts
        if any(v.status == "pending" for v in verdicts):
            workers = list(product.jobs)
            second = second_round_plan(product, first.products, first.decoded, first.summaries)
            handles = self.executor.run(
                second.plan, [second.outputs[w] for w in workers] + [second.verdicts[w] for w in workers]
            )
            out, found = handles[: len(workers)], handles[len(workers) :]
            verdicts = self.executor.gather(found, what)
            report.merge_findings(attempt, verdicts)
        return (out, found) if all(v.accepted for v in verdicts) else None

    def _sharded_product(
        self, step: str, op: int, attempt: int, spec: OperandSpec, refs: dict[str, list]
    ) -> ShardedProduct:
        """Attempt ``attempt`` of product ``op`` (its own op, whatever the layer submitted since:
        the fault sites and check seeds of its attempts are the product's)."""
        forward = step == "forward"
        outputs, chunk_rows = (self.code.kr, self.block_shape[0]) if forward else (self.code.kc, self.block_shape[1])
        pieces = self.code.kc if forward else self.code.kr
        codewords = self._codewords(step)
        jobs, decode_jobs = {}, {}
        for w, members in self._members(step).items():
            wid = self._index(w)
            jobs[w] = shards.ProductJob(
                step,
                self.name,
                op,
                attempt,
                wid,
                not forward,
                tuple(members),
                codewords,
                outputs,
                chunk_rows,
                spec,
                self.checked,
            )
            decode_jobs[w] = shards.DecodeJob(
                self.name, op, attempt, wid, codewords, outputs, chunk_rows, pieces, self.checked
            )
        name = f"{step_word(step)}-{self.keys.stem(op, attempt)}"
        return ShardedProduct(name, jobs, decode_jobs, self.shards, refs, self.hook)

    def _blocks_checked(self, step: str) -> int:
        code = self.code.row_code if step == "forward" else self.code.col_code
        return code.n * (self.code.kc if step == "forward" else self.code.kr)


def holders(order: list[str], placement: dict) -> list[str]:
    """The workers of ``placement`` in the order of ``order``."""
    held = set(placement.values())
    return [w for w in order if w in held]


def scatter_pieces(
    executor: Executor, weights: np.ndarray, block_shape: tuple[int, int], needs: set[tuple[str, Label]]
) -> dict[tuple[str, Label], Handle]:
    """Piece ``(i, j, ...)`` of ``weights`` (zero-padded to whole blocks) put straight on every
    worker that needs it: ``needs`` holds (worker, label) pairs, the result their handles.

    (Data inside a task graph would pass through the scheduler, and large graphs are slow there.)
    """
    bh, bw = block_shape
    pieces: dict[tuple[str, Label], Handle] = {}
    for w in sorted({w for w, _ in needs}):
        mine = sorted(label for worker, label in needs if worker == w)
        placed = executor.scatter([_padded_piece(weights, lab[0], lab[1], bh, bw) for lab in mine], w)
        pieces.update(((w, lab), handle) for lab, handle in zip(mine, placed))
    return pieces


def scatter_blocks(
    executor: Executor, blocks: dict[Label, CodedBlock], owners: dict[Label, str]
) -> dict[Label, Handle]:
    """Verified blocks (restored from a checkpoint) put straight on their owners."""
    placed: dict[Label, Handle] = {}
    for w in sorted(set(owners.values())):
        mine = sorted(label for label in owners if owners[label] == w)
        placed.update(zip(mine, executor.scatter([blocks[label] for label in mine], w)))
    return placed


def _padded_piece(weights: np.ndarray, i: int, j: int, bh: int, bw: int) -> np.ndarray:
    piece = np.zeros((bh, bw), dtype=weights.dtype)
    part = weights[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw]
    piece[: part.shape[0], : part.shape[1]] = part
    return piece

"""Task graphs of coded layer operations: readable keys, grouped by step, placed with the data.

Builders here only describe work; they never compute or touch disk. References to inputs are
either keys of the same graph or ``distributed.Future`` objects; a task is a plain Dask tuple.
Keys read well in the dashboard: the task prefix is the step (``block-forward``, ``project``,
``decode``, ``verify``, ``block-backward``, ``update``, ``encode``), the task group adds layer,
operation count and attempt, e.g. ``("block-forward-dense0-12-0", a, j)``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from . import tasks
from .codes import ProductCode, SystematicMDSCode
from .faults import CorruptionHook, Site

Key = Hashable
Ref = Any  # a key of the same graph or a distributed.Future
Coord = tuple[int, int]


@dataclass(frozen=True)
class Activated:
    """An input piece each consumer transforms itself: ``relu(source)`` or ``source * (mask > 0)``.

    Every consuming block task gets its own nested copy of the transform (with its own fault
    site), so a faulty activation spoils one block product, never a whole codeword.
    """

    kind: str
    source: Ref
    mask: Ref | None = None


@dataclass(frozen=True)
class LossGradient:
    """Rows ``index`` of the softmax cross-entropy gradient, computed by each consumer from all logits."""

    logits: tuple[Ref, ...]
    labels: np.ndarray
    classes: int
    index: int


def piece_for(piece: Ref, layer: str, op: int, consumer: tuple[int, ...], hook: CorruptionHook, attempt: int) -> Ref:
    """The reference (or inline task) a consumer block uses for one input piece."""
    site = Site("activation", layer, op, consumer)
    if isinstance(piece, Activated):
        return (tasks.activate, piece.kind, piece.source, piece.mask, hook, site, attempt)
    if isinstance(piece, LossGradient):
        return (tasks.softmax_grad, list(piece.logits), piece.labels, piece.classes, piece.index, hook, site, attempt)
    return piece


def round_robin_owners(addresses: Sequence[str], coded_shape: tuple[int, int]) -> dict[Coord, str]:
    """Which worker holds each coded block: row-major round robin over the sorted addresses."""
    if not addresses:
        raise ValueError("the cluster has no workers; start some first")
    ordered = sorted(addresses)
    nr, nc = coded_shape
    return {(a, b): ordered[(a * nc + b) % len(ordered)] for a in range(nr) for b in range(nc)}


@dataclass
class Plan:
    """A graph fragment: tasks, where each should run, and the keys callers want back."""

    tasks: dict[Key, tuple] = field(default_factory=dict)
    placement: dict[Key, str | None] = field(default_factory=dict)
    outputs: list[Key] = field(default_factory=list)
    reports: list[Key] = field(default_factory=list)
    #: Block label of position ``a`` of codeword ``j`` as seen by the decoder of output ``t``.
    label: Callable[[int, int, int], tuple[int, ...]] = lambda t, j, a: (a, j)

    def add(self, key: Key, task: tuple, worker: str | None) -> Key:
        self.tasks[key] = task
        self.placement[key] = worker
        return key

    def merge(self, other: "Plan") -> "Plan":
        """This plan with another's tasks added (outputs and reports stay this plan's)."""
        self.tasks.update(other.tasks)
        self.placement.update(other.placement)
        return self

    def to_hlg(self) -> HighLevelGraph:
        """One graph layer per worker, annotated so tasks stay where their blocks live.

        (Annotations on one big layer would be lost to graph optimisation; per-layer ones on a
        graph sent with ``Client.get`` are kept.)
        """
        by_worker: dict[str | None, dict[Key, tuple]] = {}
        for key, task in self.tasks.items():
            by_worker.setdefault(self.placement.get(key), {})[key] = task
        layers, deps = {}, {}
        token = uuid.uuid4().hex[:8]
        for i, (worker, layer_tasks) in enumerate(by_worker.items()):
            annotations = None if worker is None else {"workers": [worker], "allow_other_workers": False}
            layers[f"codenet-{token}-{i}"] = MaterializedLayer(layer_tasks, annotations=annotations)
            deps[f"codenet-{token}-{i}"] = set()
        return HighLevelGraph(layers, deps)


@dataclass(frozen=True)
class ProductSpec:
    """One coded product: which code checks it, and how block references are laid out.

    Codeword ``j`` (one per summed index) has positions ``a = 0..code.n-1``; ``coord(a, j)`` is the
    block's place in the coded grid, ``block(a, j)`` its reference, ``owner(a, j)`` its worker.
    """

    step: str  # "forward" or "backward"
    layer: str
    op: int
    attempt: int
    code: SystematicMDSCode
    codewords: int
    transpose: bool
    coord: Callable[[int, int], Coord]
    block: Callable[[int, int], Ref]
    owner: Callable[[int, int], str | None]
    raise_on_reject: bool = True
    #: Name used in task keys (default: ``layer``); a layer instance adds a token so that keys of two
    #: runs on one cluster never collide, while fault sites (which use ``layer``) stay reproducible.
    key_layer: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.key_layer or self.layer}-{self.op}-{self.attempt}"


def product_plan(spec: ProductSpec, inputs: Sequence[Ref], v: np.ndarray, hook: CorruptionHook) -> Plan:
    """Block products, projections, per-consumer decodes and independent verifies of one product.

    Output ``t`` (``t < code.k``) is ``sum_j R[j][t]``; ``plan.outputs[t]`` is its verified chunk and
    ``plan.reports[t]`` the verdicts its decoder reached.
    """
    plan = Plan(label=lambda t, j, a: spec.coord(a, j))
    tag = spec.tag
    code, n = spec.code, spec.code.n

    def site(step: str, block: tuple[int, ...]) -> Site:
        return Site(step, spec.layer, spec.op, block)

    results: list[list[Key]] = []
    summaries: list[list[Key]] = []
    for j in range(spec.codewords):
        column, projected = [], []
        for a in range(n):
            where, coord = spec.owner(a, j), spec.coord(a, j)
            key = plan.add(
                (f"block-{spec.step}-{tag}", *coord),
                (tasks.block_product, spec.block(a, j), piece_for(inputs[j], spec.layer, spec.op, coord, hook, spec.attempt),
                 spec.transpose, hook, site(f"block-{spec.step}", coord), spec.attempt),
                where,
            )
            column.append(key)
            projected.append(plan.add(
                (f"project-{spec.step}-{tag}", *coord),
                (tasks.project, key, v, hook, site("project", coord), spec.attempt),
                where,
            ))
        results.append(column)
        summaries.append(projected)

    for t in range(code.k):
        decoder = spec.owner(t, 0)
        verifier = spec.owner(t, 1 % spec.codewords) if spec.codewords > 1 else spec.owner((t + 1) % n, 0)
        if verifier == decoder:
            verifier = spec.owner((t + 1) % n, 0)
        decoded = plan.add(
            (f"decode-{spec.step}-{tag}", t),
            (tasks.decode, code, results, t, v, hook, site("decode", (t,)), spec.attempt),
            decoder,
        )
        plan.reports.append(plan.add((f"verdicts-{spec.step}-{tag}", t), (tasks.checks_of, decoded), decoder))
        plan.outputs.append(plan.add(
            (f"verify-{spec.step}-{tag}", t),
            (tasks.verify, code, decoded, summaries, t, v, hook, site("verify", (t,)), spec.attempt,
             spec.raise_on_reject),
            verifier,
        ))
    return plan


def uncoded_plan(spec: ProductSpec, inputs: Sequence[Ref], hook: CorruptionHook) -> Plan:
    """The uncoded baseline: block products summed per output chunk, nothing checked."""
    plan = Plan()
    tag = spec.tag
    results = [
        [
            plan.add((f"block-{spec.step}-{tag}", *spec.coord(a, j)),
                     (tasks.block_product, spec.block(a, j),
                      piece_for(inputs[j], spec.layer, spec.op, spec.coord(a, j), hook, spec.attempt),
                      spec.transpose, hook, Site(f"block-{spec.step}", spec.layer, spec.op, spec.coord(a, j)),
                      spec.attempt),
                     spec.owner(a, j))
            for a in range(spec.code.k)
        ]
        for j in range(spec.codewords)
    ]
    for t in range(spec.code.k):
        plan.outputs.append(plan.add(
            (f"decode-{spec.step}-{tag}", t),
            (tasks.sum_results, results, t, hook, Site("decode", spec.layer, spec.op, (t,)), spec.attempt),
            spec.owner(t, 0),
        ))
    return plan


def replicated_plan(
    spec: ProductSpec, replicas: int, replica: Callable[[int, int, int], Ref],
    replica_owner: Callable[[int, int, int], str | None], inputs: Sequence[Ref], hook: CorruptionHook,
) -> Plan:
    """Replication: every block product runs on each replica; each output chunk votes per block.

    ``replica(a, j, r)`` / ``replica_owner(a, j, r)``: replica r of the block at position a of
    summed index j. Replicas have distinct keys, so Dask never mistakes one for another.
    """
    plan = Plan(label=lambda t, j, r: (*spec.coord(t, j), r))
    tag = spec.tag
    for t in range(spec.code.k):
        codewords = []
        for j in range(spec.codewords):
            coord = spec.coord(t, j)
            codewords.append([
                plan.add((f"block-{spec.step}-{tag}", *coord, r),
                         (tasks.block_product, replica(t, j, r),
                          piece_for(inputs[j], spec.layer, spec.op, (*coord, r), hook, spec.attempt),
                          spec.transpose, hook, Site(f"block-{spec.step}", spec.layer, spec.op, (*coord, r)),
                          spec.attempt),
                         replica_owner(t, j, r))
                for r in range(replicas)
            ])
        voted = plan.add(
            (f"vote-{spec.step}-{tag}", t),
            (tasks.vote, codewords, hook, Site("decode", spec.layer, spec.op, (t,)), spec.attempt),
            spec.owner(t, 0),
        )
        plan.reports.append(plan.add((f"verdicts-{spec.step}-{tag}", t), (tasks.checks_of, voted), spec.owner(t, 0)))
        plan.outputs.append(plan.add((f"accept-{spec.step}-{tag}", t), (tasks.accept, voted), spec.owner(t, 0)))
    return plan


def encode_plan(
    layer: str,
    code: ProductCode,
    systematic: Callable[[int, int], Ref],
    owner: Callable[[int, int], str | None],
    hook: CorruptionHook,
    key_layer: str | None = None,
) -> Plan:
    """Parity blocks of the coded grid, each computed on its owner from the blocks it combines.

    Row-parity blocks combine their block-column, column-parity blocks their block-row, corner
    blocks the row-parity blocks of their block-row. ``plan.outputs`` lists the parity keys.
    """
    plan = Plan()
    nr, nc = code.coded_shape
    row_a, col_a = code.row_code.parity_matrix, code.col_code.parity_matrix
    refs: dict[Coord, Ref] = {(i, j): systematic(i, j) for i in range(code.kr) for j in range(code.kc)}
    name = f"encode-{key_layer or layer}"

    def parity(coord: Coord, sources: list[Ref], coeffs: np.ndarray) -> None:
        refs[coord] = plan.add(
            (name, *coord),
            (tasks.encode_parity, sources, coeffs, hook, Site("encode", layer, 0, coord), 0),
            owner(*coord),
        )

    for q in range(code.pr):
        for j in range(code.kc):
            parity((code.kr + q, j), [refs[(i, j)] for i in range(code.kr)], row_a[q])
    for i in range(nr):
        for q in range(code.pc):
            parity((i, code.kc + q), [refs[(i, j)] for j in range(code.kc)], col_a[q])
    plan.outputs = list(plan.tasks)
    return plan


def update_plan(
    layer: str,
    op: int,
    code: ProductCode,
    blocks: Callable[[int, int], Ref],
    deltas: Sequence[Ref],
    inputs: Sequence[Ref],
    lr: float,
    owner: Callable[[int, int], str | None],
    hook: CorruptionHook,
    replica: int | None = None,
    key_layer: str | None = None,
) -> Plan:
    """``W~ -= lr * D~ X~^T`` on every coded block; each block encodes its own factor pieces.

    ``replica`` names which copy of a replicated grid this is (it goes into keys and sites).
    """
    plan = Plan()
    suffix = () if replica is None else (replica,)
    nr, nc = code.coded_shape
    row_a, col_a = code.row_code.parity_matrix, code.col_code.parity_matrix
    for a in range(nr):
        d_rows, d_coeffs = ([a], None) if a < code.kr else (range(code.kr), row_a[a - code.kr])
        for b in range(nc):
            x_rows, x_coeffs = ([b], None) if b < code.kc else (range(code.kc), col_a[b - code.kc])
            consumer = (a, b, *suffix)
            d_pieces = [piece_for(deltas[i], layer, op, (*consumer, 0, i), hook, 0) for i in d_rows]
            x_pieces = [piece_for(inputs[j], layer, op, (*consumer, 1, j), hook, 0) for j in x_rows]
            plan.outputs.append(plan.add(
                (f"update-{key_layer or layer}-{op}", a, b, *suffix),
                (tasks.update, blocks(a, b), d_pieces, d_coeffs, x_pieces, x_coeffs, lr, hook,
                 Site("update", layer, op, (a, b, *suffix)), 0),
                owner(a, b),
            ))
    return plan

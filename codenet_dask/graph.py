"""Task graphs of coded layer operations: readable keys, grouped by step, placed with the data.

Builders here only describe work; they never compute or touch disk. References to inputs are
either keys of the same graph or ``distributed.Future`` objects; a task is a plain Dask tuple.

A layer's steps run as one task per worker (``sharded_*``, see ``shards``); keys read
``<step>-<layer words>-<token>-<op>-<attempt>`` with the worker's index, e.g.
``("block-forward-dense-zero-1a2b3c4d-12-0", 1)``, so the dashboard's task prefix names the step
and the layer (``block-forward-dense-zero``, ``decode-backwards-dense-one``, ``update-dense-zero``).
``product_plan`` is the one-task-per-block form ``matmul`` uses on dask arrays.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from . import shards, tasks
from .codes import ProductCode, SystematicMDSCode
from .faults import CorruptionHook, Site

Key = Hashable
Ref = Any  # a key of the same graph or a distributed.Future
Coord = tuple[int, int]


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
    #: Keys the caller holds on to (for a possible second round) without waiting for them.
    keep: list[Key] = field(default_factory=list)
    #: Block label of position ``a`` of codeword ``j`` as seen by the decoder of output ``t``.
    label: Callable[[int, int, int], tuple[int, ...]] = lambda t, j, a: (a, j)

    def add(self, key: Key, task: tuple, worker: str | None) -> Key:
        self.tasks[key] = task
        self.placement[key] = worker
        return key

    def merge(self, other: Plan) -> Plan:
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
                (
                    tasks.block_product,
                    spec.block(a, j),
                    inputs[j],
                    spec.transpose,
                    hook,
                    site(f"block-{spec.step}", coord),
                    spec.attempt,
                ),
                where,
            )
            column.append(key)
            projected.append(
                plan.add(
                    (f"project-{spec.step}-{tag}", *coord),
                    (tasks.project, key, v, hook, site("project", coord), spec.attempt),
                    where,
                )
            )
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
        plan.outputs.append(
            plan.add(
                (f"verify-{spec.step}-{tag}", t),
                (
                    tasks.verify,
                    code,
                    decoded,
                    summaries,
                    t,
                    v,
                    hook,
                    site("verify", (t,)),
                    spec.attempt,
                    spec.raise_on_reject,
                ),
                verifier,
            )
        )
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
    nr, _nc = code.coded_shape
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


# -- the sharded pipeline of layers: one task per worker per step (see ``shards``) ----------------
def alphabetic(name: str) -> str:
    """``name`` as dash-separated letter words (``dense0`` -> ``dense-zero``).

    The dashboard's task prefix keeps only the leading alphabetic words of a key, so a layer name
    spelled this way stays in the prefix: ``block-forward-dense-zero``.
    """
    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    words, word = [], ""
    for ch in name:
        if ch.isalpha():
            word += ch.lower()
        else:
            if word:
                words.append(word)
            word = ""
            if ch.isdigit():
                words.append(digits[int(ch)])
    if word:
        words.append(word)
    return "-".join(words) or "layer"


def step_word(step: str) -> str:
    """The step as spelled in keys: Dask's task-prefix rule drops an 8-letter word that starts like
    a hex token, so ``backward`` would vanish from the dashboard; ``backwards`` stays."""
    return "backwards" if step == "backward" else step


@dataclass(frozen=True)
class ShardedProduct:
    """One attempt of one product over a layer's shards: the per-worker jobs and references.

    ``decode`` is ``coded`` (check and correct), ``replicated`` (vote) or ``uncoded`` (sum only).
    """

    name: str  # key stem: step, layer key name, op, attempt
    jobs: dict[str, shards.ProductJob]
    decode_jobs: dict[str, shards.DecodeJob]
    shards: dict[str, Ref]
    operand: dict[str, list[Ref]]
    decode: str
    code: SystematicMDSCode | None
    v: np.ndarray
    hook: CorruptionHook


def sharded_product_plan(p: ShardedProduct) -> Plan:
    """Products, summaries, per-worker decodes, verifies and verdicts of one product.

    ``plan.outputs``: each worker's verified output (uncoded: its decode), in ``p.jobs`` order;
    ``plan.reports``: each worker's verdicts; ``plan.keep``: products and decodes a repair reads.
    """
    plan = Plan()
    workers = list(p.jobs)
    products, summaries = {}, {}
    for w in workers:
        wid = p.jobs[w].worker
        products[w] = plan.add(
            (f"block-{p.name}", wid), (shards.shard_products, p.shards[w], p.operand[w], p.jobs[w], p.v, p.hook), w
        )
        summaries[w] = plan.add((f"summary-{p.name}", wid), (shards.summary_of, products[w]), w)
    every = [summaries[w] for w in workers]
    for w in workers:
        wid, job = p.jobs[w].worker, p.decode_jobs[w]
        if p.decode == "uncoded":
            plan.outputs.append(plan.add((f"decode-{p.name}", wid), (shards.decode_uncoded, every, job, p.hook), w))
            continue
        decode = (
            (shards.decode_coded, p.code, every, job, p.hook)
            if p.decode == "coded"
            else (shards.decode_replicated, every, job, p.hook)
        )
        decoded = plan.add((f"decode-{p.name}", wid), decode, w)
        plan.reports.append(plan.add((f"verdicts-{p.name}", wid), (shards.verdicts_of, decoded), w))
        plan.outputs.append(
            plan.add((f"verify-{p.name}", wid), (shards.verify, p.code, decoded, every, job, p.v, p.hook), w)
        )
        plan.keep += [products[w], decoded]
    plan.keep += every
    return plan


def repair_plan(p: ShardedProduct, products: dict[str, Ref], decoded: dict[str, Ref], summaries: list[Ref]) -> Plan:
    """The rare second round: every worker's share of the rebuilt results, added by each decoder."""
    plan = Plan()
    shares = [
        plan.add(
            (f"repair-share-{p.name}", p.jobs[w].worker),
            (shards.repair_shares, p.code, products[w], (_repairs_of, decoded[w]), p.decode_jobs[w], p.hook),
            w,
        )
        for w in p.jobs
    ]
    for w in p.jobs:
        wid = p.jobs[w].worker
        fixed = plan.add((f"repair-{p.name}", wid), (shards.apply_repairs, decoded[w], shares), w)
        plan.outputs.append(
            plan.add(
                (f"verify-repaired-{p.name}", wid),
                (shards.verify, p.code, fixed, summaries, p.decode_jobs[w], p.v, p.hook),
                w,
            )
        )
    return plan


def _repairs_of(decoded: shards.Decoded) -> tuple:
    return decoded.repairs


def sharded_update_plan(
    name: str,
    jobs: dict[str, shards.UpdateJob],
    shard_refs: dict[str, Ref],
    delta: dict[str, list[Ref]],
    inputs: dict[str, list[Ref]],
    hook: CorruptionHook,
) -> Plan:
    """``W~ -= lr D~ X~^T``: one task per worker returns its updated shard (``plan.outputs``)."""
    plan = Plan()
    for w, job in jobs.items():
        plan.outputs.append(
            plan.add(
                (f"update-{name}", job.worker), (shards.update_shard, shard_refs[w], delta[w], inputs[w], job, hook), w
            )
        )
    return plan

"""Planners: the tasks of every operation of a coded layer (and of ``matmul``), as plain data.

A planner only describes work (``types.Plan``): which function runs on which worker under which
key, and what each task reads. Arguments are Refs to tasks of the same plan, or handles of values
an executor already holds (a layer's shards, shipped operands). Nothing here computes, waits or
touches a disk; the executors run plans, the layer facade decides what to plan next.

Layers run one task per worker and step (see ``kernels.shards``); keys read
``(<step>-<layer words>-<token>-<op>-<attempt>-<serial>, <worker index>)``, so the dashboard's task
prefix names the step and the layer (``block-forward-dense-zero``, ``decode-backwards-dense-one``).
:func:`product_plan` is the one-task-per-block form ``matmul`` uses on dask arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..codes import ProductCode, SystematicMDSCode
from ..faults.hook import CorruptionHook, Site
from ..kernels import blockwise, encode, factors, scrub, shards
from .types import Plan, Ref

Coord = tuple[int, int]
Arg = Any  # a Ref of the same plan, or an executor's handle of a value it holds
Label = tuple[int, ...]


# -- the one-task-per-block product (matmul on dask arrays) ------------------------------------
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
    block: Callable[[int, int], Arg]
    owner: Callable[[int, int], str | None]
    raise_on_reject: bool = True
    #: Name used in task keys (default: ``layer``); fault sites use ``layer`` and stay reproducible.
    key_layer: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.key_layer or self.layer}-{self.op}-{self.attempt}"


@dataclass
class BlockwisePlan:
    """A :func:`product_plan`: per output chunk ``t`` its verified chunk and its decoder's verdicts."""

    plan: Plan
    outputs: list[Ref] = field(default_factory=list)
    reports: list[Ref] = field(default_factory=list)


def product_plan(
    spec: ProductSpec, inputs: Sequence[Arg], v: np.ndarray, hook: CorruptionHook, plan: Plan
) -> BlockwisePlan:
    """Block products, projections, per-consumer decodes and independent verifies of one product,
    added to ``plan``. Output ``t`` (``t < code.k``) is ``sum_j R[j][t]``."""
    out = BlockwisePlan(plan)
    tag, code = spec.tag, spec.code

    def site(step: str, block: tuple[int, ...]) -> Site:
        return Site(step, spec.layer, spec.op, block)

    results: list[list[Ref]] = []
    summaries: list[list[Ref]] = []
    for j in range(spec.codewords):
        column, projected = [], []
        for a in range(code.n):
            where, coord = spec.owner(a, j), spec.coord(a, j)
            step = f"block-{spec.step}"
            product = plan.add(
                (f"{step}-{tag}", *coord),
                blockwise.block_product,
                spec.block(a, j),
                inputs[j],
                spec.transpose,
                hook,
                site(step, coord),
                spec.attempt,
                worker=where,
            )
            column.append(product)
            projected.append(
                plan.add(
                    (f"project-{spec.step}-{tag}", *coord),
                    blockwise.project,
                    product,
                    v,
                    hook,
                    site("project", coord),
                    spec.attempt,
                    worker=where,
                )
            )
        results.append(column)
        summaries.append(projected)

    for t in range(code.k):
        decoder = spec.owner(t, 0)
        verifier = spec.owner(t, 1 % spec.codewords) if spec.codewords > 1 else spec.owner((t + 1) % code.n, 0)
        if verifier == decoder:
            verifier = spec.owner((t + 1) % code.n, 0)
        decoded = plan.add(
            (f"decode-{spec.step}-{tag}", t),
            blockwise.decode,
            code,
            results,
            t,
            v,
            hook,
            site("decode", (t,)),
            spec.attempt,
            worker=decoder,
        )
        out.reports.append(plan.add((f"verdicts-{spec.step}-{tag}", t), blockwise.checks_of, decoded, worker=decoder))
        out.outputs.append(
            plan.add(
                (f"verify-{spec.step}-{tag}", t),
                blockwise.verify,
                code,
                decoded,
                summaries,
                t,
                v,
                hook,
                site("verify", (t,)),
                spec.attempt,
                spec.raise_on_reject,
                worker=verifier,
            )
        )
    return out


def parity_sources(code: ProductCode) -> dict[Coord, tuple[list[Coord], np.ndarray]]:
    """Every parity block of the grid as a combination of the user's weight pieces: the pieces
    (systematic coordinates) and their coefficients. Row parities combine a block-column, column
    parities a block-row, corners the whole grid (``A W A'^T``)."""
    kr, kc = code.kr, code.kc
    row_a, col_a = code.row_code.parity_matrix, code.col_code.parity_matrix
    out: dict[Coord, tuple[list[Coord], np.ndarray]] = {}
    for q in range(code.pr):
        for j in range(kc):
            out[(kr + q, j)] = ([(i, j) for i in range(kr)], row_a[q])
    for i in range(kr):
        for q in range(code.pc):
            out[(i, kc + q)] = ([(i, j) for j in range(kc)], col_a[q])
    everything = [(i, j) for i in range(kr) for j in range(kc)]
    for q in range(code.pr):
        for r in range(code.pc):
            out[(kr + q, kc + r)] = (everything, np.outer(row_a[q], col_a[r]).ravel())
    return out


def encode_plan(
    layer: str,
    code: ProductCode,
    piece: Callable[[Coord, Coord], Arg],
    owner: Callable[[int, int], str | None],
    hook: CorruptionHook,
    key: str,
    plan: Plan,
    attempt: int = 0,
) -> dict[Coord, Ref]:
    """Parity blocks of the coded grid, each computed on its owner from the user's weight pieces
    (``piece(coord, parity)``: piece ``coord`` as the owner of ``parity`` has it; see
    :func:`parity_sources`), through encode sites of ``attempt``. Returns them by coordinate."""
    parity: dict[Coord, Ref] = {}
    for coord, (sources, coeffs) in parity_sources(code).items():
        site = Site("encode", layer, 0, coord)
        parity[coord] = plan.add(
            (key, *coord),
            encode.encode_parity,
            [piece(s, coord) for s in sources],
            coeffs,
            hook,
            site,
            attempt,
            worker=owner(*coord),
        )
    return parity


# -- a layer's blocks on their workers ---------------------------------------------------------
def systematic_plan(
    pieces: Mapping[Label, Arg],
    owners: Mapping[Label, str],
    hook: CorruptionHook,
    layer: str,
    key: str,
    plan: Plan,
    attempt: int = 0,
) -> dict[Label, Ref]:
    """Systematic block ``label`` made on its owner from its shipped piece, through its own encode
    site (of ``attempt``)."""
    return {
        label: plan.add(
            (key, *label),
            encode.systematic_block,
            pieces[label],
            hook,
            Site("encode", layer, 0, label),
            attempt,
            worker=owners[label],
        )
        for label in sorted(pieces)
    }


def replica_plan(
    source_shards: Mapping[Label, Arg],
    placement: Mapping[Label, str],
    hook: CorruptionHook,
    layer: str,
    key: str,
    plan: Plan,
) -> dict[Label, Ref]:
    """Replica ``(a, b, r)`` copied on its worker from the shard holding block ``(a, b)``."""
    return {
        label: plan.add(
            (key, *label), encode.replicate_block, source_shards[label], label, layer, hook, worker=placement[label]
        )
        for label in sorted(source_shards)
    }


def assemble_plan(
    blocks: Mapping[Label, Arg], placement: Mapping[Label, str], index: Mapping[str, int], key: str, plan: Plan
) -> dict[str, Ref]:
    """One shard per worker from per-block values already on that worker."""
    by_worker: dict[str, list[Label]] = {}
    for label in sorted(blocks):
        by_worker.setdefault(placement[label], []).append(label)
    return {
        w: plan.add((key, index[w]), shards.assemble, labels, [blocks[lab] for lab in labels], worker=w)
        for w, labels in sorted(by_worker.items())
    }


def copies_plan(source: Arg, workers: Sequence[str], index: Mapping[str, int], key: str, plan: Plan) -> dict[str, Ref]:
    """A copy of ``source`` on every one of ``workers``, each under a key of its own (Dask's memory
    manager drops extra replicas of one key, to be fetched again at each use)."""
    return {w: plan.add((key, index[w]), encode.local_copy, source, worker=w) for w in workers}


# -- products of a layer: one task per worker per step (see ``kernels.shards``) -----------------
@dataclass(frozen=True)
class ShardedProduct:
    """One attempt of one product over a layer's shards: the per-worker jobs and references."""

    name: str  # key stem: step, layer key name, op, attempt, serial
    jobs: dict[str, shards.ProductJob]
    decode_jobs: dict[str, shards.DecodeJob]
    shards: Mapping[str, Arg]
    operand: Mapping[str, list[Arg]]
    hook: CorruptionHook

    @property
    def checked(self) -> bool:
        return next(iter(self.jobs.values())).checked


@dataclass
class ProductPlan:
    """A :func:`sharded_product_plan`: per worker its (verified) output and verdicts, and what a
    second round would read."""

    plan: Plan
    outputs: dict[str, Ref] = field(default_factory=dict)
    verdicts: dict[str, Ref] = field(default_factory=dict)
    products: dict[str, Ref] = field(default_factory=dict)
    decoded: dict[str, Ref] = field(default_factory=dict)
    summaries: list[Ref] = field(default_factory=list)


def sharded_product_plan(p: ShardedProduct) -> ProductPlan:
    """Products, summaries, per-worker decodes, verifies and verdicts of one product (the uncoded
    baseline: products and sums only)."""
    out = ProductPlan(Plan())
    plan = out.plan
    workers = list(p.jobs)
    for w in workers:
        wid = p.jobs[w].worker
        out.products[w] = plan.add(
            (f"block-{p.name}", wid), shards.shard_products, p.shards[w], p.operand[w], p.jobs[w], p.hook, worker=w
        )
    out.summaries = [
        plan.add((f"summary-{p.name}", p.jobs[w].worker), shards.summary_of, out.products[w], worker=w) for w in workers
    ]
    for w in workers:
        wid, job = p.jobs[w].worker, p.decode_jobs[w]
        decoded = plan.add((f"decode-{p.name}", wid), shards.decode, out.summaries, job, p.hook, worker=w)
        out.outputs[w] = decoded
        if p.checked:
            out.decoded[w] = decoded
            out.verdicts[w] = plan.add((f"verdicts-{p.name}", wid), shards.verdict_of, decoded, worker=w)
    return out


@dataclass
class SecondRound:
    """A :func:`second_round_plan`: per worker its verified output and its verdicts."""

    plan: Plan
    outputs: dict[str, Ref]
    verdicts: dict[str, Ref]


def second_round_plan(
    p: ShardedProduct, products: Mapping[str, Arg], decoded: Mapping[str, Arg], summaries: list[Arg]
) -> SecondRound:
    """The entries a first round flagged: every worker's blocks' values there, then every decoder
    decodes those entries per codeword and an independent task verifies it."""
    plan = Plan()
    attributions = [
        plan.add(
            (f"attribute-{p.name}", p.jobs[w].worker),
            shards.attribute,
            products[w],
            decoded[w],
            p.jobs[w],
            p.hook,
            worker=w,
        )
        for w in p.jobs
    ]
    outputs, verdicts = {}, {}
    for w in p.jobs:
        wid, job = p.jobs[w].worker, p.decode_jobs[w]
        outputs[w] = plan.add(
            (f"resolve-{p.name}", wid),
            shards.resolve_checked,
            decoded[w],
            attributions,
            summaries,
            job,
            p.hook,
            worker=w,
        )
        verdicts[w] = plan.add((f"verdicts-resolved-{p.name}", wid), shards.verdict_of, outputs[w], worker=w)
    return SecondRound(plan, outputs, verdicts)


def update_plan(
    name: str,
    jobs: Mapping[str, shards.UpdateJob],
    shard_refs: Mapping[str, Arg],
    delta: Mapping[str, list[Arg]],
    inputs: Mapping[str, list[Arg]],
    hook: CorruptionHook,
    checks: Mapping[str, factors.CheckJob] | None = None,
    gate: Sequence[Arg] = (),
    readers: Mapping[str, list[Arg]] | None = None,
) -> tuple[Plan, dict[str, Ref]]:
    """``W~ -= lr D~ X~^T``: one task per worker updates its shard; with ``checks``, every worker
    then checks the factors all blocks used and returns its shard with the wrong ones' rows and
    columns marked (``kernels.factors``). ``gate``: verdicts (``shards.Verdict``) of the products
    that must be accepted first; every worker's update reads all of them, so all run or none.
    ``readers[w]``: the products on worker ``w`` that read its shard, which the update (in place)
    must follow."""
    plan = Plan()
    kernel = shards.update_shard if not checks else shards.update_and_share
    outcomes = {
        w: plan.add(
            (f"update-{name}", job.worker),
            kernel,
            shard_refs[w],
            delta[w],
            inputs[w],
            job,
            hook,
            list(gate),
            list((readers or {}).get(w, [])),
            worker=w,
        )
        for w, job in jobs.items()
    }
    if not checks:
        return plan, outcomes
    shares = [
        plan.add((f"update-share-{name}", job.worker), factors.share_of, outcomes[w], worker=w)
        for w, job in jobs.items()
    ]
    return plan, {
        w: plan.add(
            (f"update-check-{name}", job.worker), factors.marked, outcomes[w], shares, checks[w], hook, worker=w
        )
        for w, job in jobs.items()
    }


# -- scrubs of a resident grid ------------------------------------------------------------------
@dataclass
class ScrubPlan:
    """A :func:`scrub_plan`: per worker its scrubbed shard and its report."""

    plan: Plan
    shards: dict[str, Ref]
    reports: dict[str, Ref]


def scrub_plan(
    name: str, jobs: Mapping[str, scrub.ScrubJob], shard_refs: Mapping[str, Arg], hook: CorruptionHook
) -> ScrubPlan:
    """Every worker ships its share of the stored grid's syndromes and flags the entries they do
    not vouch for; then every worker sends its values there and corrects its own blocks from
    everyone's values (no block moves; no single task decides for the others)."""
    plan = Plan()
    shares = [
        plan.add((f"scrub-share-{name}", job.worker), scrub.stored_share, shard_refs[w], job, hook, worker=w)
        for w, job in jobs.items()
    ]
    flagged = {
        w: plan.add((f"scrub-flag-{name}", job.worker), scrub.flag_entries, shares, job, worker=w)
        for w, job in jobs.items()
    }
    values = [
        plan.add((f"scrub-values-{name}", job.worker), scrub.values_at, shard_refs[w], flagged[w], job, hook, worker=w)
        for w, job in jobs.items()
    ]
    shards_out, reports = {}, {}
    for w, job in jobs.items():
        outcome = plan.add(
            (f"scrub-repair-{name}", job.worker),
            scrub.repair_shard,
            shard_refs[w],
            flagged[w],
            values,
            shares,
            job,
            hook,
            worker=w,
        )
        shards_out[w] = plan.add((f"scrub-shard-{name}", job.worker), scrub.shard_of, outcome, worker=w)
        reports[w] = plan.add((f"scrub-report-{name}", job.worker), scrub.report_of, outcome, worker=w)
    return ScrubPlan(plan, shards_out, reports)

"""The worker side of a layer's operations: one task per worker per step, one fault site per block.

A worker holds a *shard*: the coded blocks (logical nodes) placed on it, by label ``(a, b)`` (or
``(a, b, r)`` for replica r). Scheduling one Dask task per block costs ~2 ms each, more than a
block's arithmetic at useful sizes, so each step runs as one task per worker over all its blocks.
Each block still computes on its own (its own product, its own activation copy, its own fault
site), so a soft error still spoils exactly one logical node. What crosses the network is small:
the projections of every block result and one partial sum of the worker's systematic results;
full block results stay where they were computed and are read again only to repair a wrong one.
Pure numpy: these functions run inside worker tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..codes import CodewordCheck, SystematicMDSCode, gamma
from ..errors import UncorrectableError
from ..faults.hook import CorruptionHook, Site
from . import checks
from .blocks import CodedBlock, Factor, apply_update, encoding_error

Label = tuple[int, ...]
Shard = dict[Label, CodedBlock]
Position = tuple[int, int, int]  # (position a in its codeword, codeword j, copy r)


# -- operands ----------------------------------------------------------------------------------
class Transform(Protocol):
    """An elementwise function of operand sources that every consuming block applies itself.

    ``sources`` are the full (padded) arrays the operand is made of, ``window`` the rows of the
    piece wanted. Implementations (the network's activations, ``codenet_dask.nn``) are small
    picklable objects, so the coding core knows no neural-network math.
    """

    def __call__(self, sources: Sequence[np.ndarray], window: slice) -> np.ndarray: ...


@dataclass(frozen=True)
class OperandSpec:
    """How a consumer gets input piece ``i`` from the full (padded) operand on its worker.

    Without ``transform`` the piece is a slice of the first source; with one it is the transform's
    output, computed by every consuming block's own task (CodeNet's decentralised activation), so a
    faulty activation spoils one block, which its codeword check catches.
    """

    rows: int = 0  # rows of one piece
    transform: Transform | None = None

    @property
    def plain(self) -> bool:
        return self.transform is None

    def piece(
        self, data: Sequence[np.ndarray], index: int, hook: CorruptionHook, site: Site, attempt: int
    ) -> np.ndarray:
        window = slice(index * self.rows, (index + 1) * self.rows)
        if self.transform is None:
            return data[0][window]
        return hook.apply(site, self.transform(data, window), attempt)


# -- products ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductJob:
    """What one worker computes for one product: its blocks, where each sits in its codeword."""

    step: str  # "forward" or "backward"
    layer: str
    op: int
    attempt: int
    worker: int
    transpose: bool
    members: tuple[tuple[Label, Position], ...]
    outputs: int  # k: positions below this are systematic, and name the output chunk
    chunk_rows: int
    operand: OperandSpec
    #: Whether results are summarised for checking (projections); the uncoded baseline checks nothing.
    checked: bool = True


@dataclass(frozen=True)
class ShardSummary:
    """What a worker ships after a product: every block result's projection, and per copy r the
    sum of its systematic results placed at their output chunks."""

    projections: dict[Position, checks.Projection]
    partials: dict[int, np.ndarray]


@dataclass(frozen=True)
class ShardProducts:
    """A worker's block results of one product (stay on the worker) and their summary."""

    results: dict[Position, np.ndarray]
    summary: ShardSummary


def shard_products(
    shard: Shard, operand: Sequence[np.ndarray], job: ProductJob, v: np.ndarray, hook: CorruptionHook
) -> ShardProducts:
    """Every block product of this worker in one task; each block through its own fault site."""
    results: dict[Position, np.ndarray] = {}
    projections: dict[Position, checks.Projection] = {}
    partials: dict[int, np.ndarray] = {}
    plain: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for label, (a, j, r) in job.members:
        piece, norms2, norms1 = plain.get(j) or _input(job, operand, j, label, hook)
        if job.operand.plain:
            plain[j] = (piece, norms2, norms1)
        block = shard[label]
        weights, row_norms = (block.values.T, block.col_norms) if job.transpose else (block.values, block.row_norms)
        site = Site(f"block-{job.step}", job.layer, job.op, label)
        values = hook.apply(site, weights @ piece, job.attempt)
        if job.checked:
            result = checks.BlockResult(values, row_norms, block.err, norms2, norms1, piece.shape[0])
            summary = checks.project(result, v)
            projections[(a, j, r)] = replace(
                summary, z=hook.apply(Site("project", job.layer, job.op, label), summary.z, job.attempt)
            )
        results[(a, j, r)] = values
        if a < job.outputs:
            total = partials.get(r)
            if total is None:
                total = partials[r] = np.zeros((job.outputs * job.chunk_rows, values.shape[1]), values.dtype)
            total[a * job.chunk_rows : (a + 1) * job.chunk_rows] += values
    return ShardProducts(results, ShardSummary(projections, partials))


def _input(job: ProductJob, operand: Sequence[np.ndarray], index: int, label: Label, hook: CorruptionHook):
    """Input piece ``index`` as this block sees it, with the column norms its check needs."""
    piece = job.operand.piece(operand, index, hook, Site("activation", job.layer, job.op, label), job.attempt)
    if not job.checked:
        return piece, None, None
    return piece, np.linalg.norm(piece, axis=0).astype(np.float64), np.abs(piece).sum(axis=0, dtype=np.float64)


def summary_of(products: ShardProducts) -> ShardSummary:
    """Only the summary (what other workers fetch)."""
    return products.summary


# -- decoding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decoded:
    """A worker's own decode of a whole product output.

    ``values`` is the sum of every worker's partials (including wrong systematic results);
    ``repairs`` lists the ``(t, j, bad positions)`` whose result must still be replaced by its
    rebuilt value; ``failed`` is set if some codeword is beyond capacity.
    """

    values: np.ndarray
    checks: tuple[CodewordCheck, ...]
    repairs: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    failed: bool = False


@dataclass(frozen=True)
class NeedsRepair:
    """A verify task's answer when some systematic result must be rebuilt first."""

    repairs: tuple[tuple[int, int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class DecodeJob:
    """What a decoder needs to know about a product's layout."""

    layer: str
    op: int
    attempt: int
    worker: int
    codewords: int
    outputs: int
    copies: int = 1  # replicas per block (replication); 1 otherwise


def _projections(summaries: Sequence[ShardSummary]) -> dict[Position, checks.Projection]:
    merged: dict[Position, checks.Projection] = {}
    for s in summaries:
        merged.update(s.projections)
    return merged


def _total(summaries: Sequence[ShardSummary], copy: int) -> np.ndarray:
    parts = [s.partials[copy] for s in summaries if copy in s.partials]
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


def decode_coded(
    code: SystematicMDSCode, summaries: Sequence[ShardSummary], job: DecodeJob, hook: CorruptionHook
) -> Decoded:
    """Check every codeword from the projections and sum the partials; list what needs repair."""
    projections = _projections(summaries)
    verdicts, repairs = [], []
    for j in range(job.codewords):
        verdict = checks.check_projections(code, [projections[(a, j, 0)] for a in range(code.n)])
        verdicts.append(verdict)
        if verdict.status != "uncorrectable":
            repairs += [(t, j, verdict.bad) for t in verdict.bad if t < job.outputs]
    site = Site("decode", job.layer, job.op, (job.worker,))
    return Decoded(
        hook.apply(site, _total(summaries, 0), job.attempt),
        tuple(verdicts),
        tuple(repairs),
        any(v.status == "uncorrectable" for v in verdicts),
    )


def decode_uncoded(summaries: Sequence[ShardSummary], job: DecodeJob, hook: CorruptionHook) -> np.ndarray:
    """The uncoded baseline: the plain sum of the partials, unchecked."""
    return hook.apply(Site("decode", job.layer, job.op, (job.worker,)), _total(summaries, 0), job.attempt)


def _agree(x: checks.Projection, y: checks.Projection) -> bool:
    """Whether two replicas' projections agree within their roundoff bounds."""
    if x.erased or y.erased:
        return False
    return bool(np.all(np.abs(x.z - y.z) <= x.noise + y.noise))


@dataclass(frozen=True)
class Vote:
    """Replication's verdicts: per block ``(t, j)`` the replicas outvoted, and per output chunk the
    copy whose every block won (None: the winners are spread over copies; the chunk needs a
    repair round that sums each block's own winner)."""

    verdicts: tuple[CodewordCheck, ...]  # index t * codewords + j
    outvoted: dict[tuple[int, int], tuple[int, ...]]  # blocks with a majority only
    copy: dict[int, int | None]
    copies: int

    @property
    def failed(self) -> bool:
        return any(v.status == "uncorrectable" for v in self.verdicts)

    def chosen(self, t: int, j: int) -> int:
        """The replica of block (t, j) a decoder of chunk t uses."""
        whole = self.copy.get(t)
        return whole if whole is not None else first_not_outvoted(self.copies, self.outvoted[(t, j)])


def first_not_outvoted(copies: int, outvoted: Sequence[int]) -> int:
    """The replica of a block a repair uses: the first one its majority did not outvote."""
    return min(set(range(copies)) - set(outvoted))


def _vote(projections: dict[Position, checks.Projection], job: DecodeJob) -> Vote:
    """Per block a verdict over its replicas, and per output chunk a copy whose blocks all won.

    r = 2: a disagreement is detected, not resolved; r >= 3: a replica another agrees with wins,
    and the replicas it disagrees with are outvoted.
    """
    verdicts, outvoted, copy = [], {}, {}
    for t in range(job.outputs):
        good_copies = set(range(job.copies))
        for j in range(job.codewords):
            replicas = [projections[(t, j, r)] for r in range(job.copies)]
            agree = [[_agree(replicas[a], replicas[b]) for b in range(job.copies)] for a in range(job.copies)]
            winner = next((a for a in range(job.copies) if any(agree[a][b] for b in range(job.copies) if b != a)), None)
            if winner is None or (job.copies == 2 and not agree[0][1]):
                verdicts.append(CodewordCheck((), (), "uncorrectable", float("inf")))
                good_copies = set()
                continue
            lost = tuple(r for r in range(job.copies) if r != winner and not agree[winner][r])
            verdicts.append(CodewordCheck((), lost, "corrected" if lost else "clean", 0.0))
            outvoted[(t, j)] = lost
            good_copies -= set(lost)
        copy[t] = min(good_copies) if good_copies else None
    return Vote(tuple(verdicts), outvoted, copy, job.copies)


def decode_replicated(summaries: Sequence[ShardSummary], job: DecodeJob, hook: CorruptionHook) -> Decoded:
    """Replication's decode: per output chunk, the partials of a copy whose every block won its vote.

    A chunk whose winners are spread over copies is listed for repair: each worker then sums the
    winning replicas it holds (:func:`repair_shares`).
    """
    vote = _vote(_projections(summaries), job)
    whole = {t: r for t, r in vote.copy.items() if r is not None}
    totals = {r: _total(summaries, r) for r in set(whole.values())}
    first = next(iter(summaries[0].partials.values()))
    rows = first.shape[0] // job.outputs
    values = np.zeros_like(first)
    for t, r in whole.items():
        values[t * rows : (t + 1) * rows] = totals[r][t * rows : (t + 1) * rows]
    repairs = (
        ()
        if vote.failed
        else tuple(
            (t, j, vote.outvoted[(t, j)]) for t in range(job.outputs) if t not in whole for j in range(job.codewords)
        )
    )
    site = Site("decode", job.layer, job.op, (job.worker,))
    return Decoded(hook.apply(site, values, job.attempt), vote.verdicts, repairs, vote.failed)


def verdicts_of(decoded: Decoded) -> tuple[CodewordCheck, ...]:
    """Only the verdicts of a decode (small: what the client gathers for the report)."""
    return decoded.checks


# -- verification ------------------------------------------------------------------------------
def verify(
    code: SystematicMDSCode | None,
    decoded: Decoded,
    summaries: Sequence[ShardSummary],
    job: DecodeJob,
    v: np.ndarray,
    hook: CorruptionHook,
) -> np.ndarray | checks.Rejected | NeedsRepair:
    """Independent acceptance of a worker's decode; returns the decoded array itself.

    The expectation comes from the producers' projections, checked again here (or voted again,
    for replication, ``code`` None). A soft error here only spoils the verdict: a false alarm
    and a recomputation, never data.
    """
    if decoded.failed:
        return checks.Rejected("UncorrectableError", "a codeword holds more wrong blocks than the code can correct")
    if decoded.repairs:
        return NeedsRepair(decoded.repairs)
    try:
        dtype = decoded.values.dtype
        projections = _projections(summaries)
        if code is None:
            expected, tolerance, magnitude = _voted_expectation(projections, job, dtype)
        else:
            codewords = [[projections[(a, j, 0)] for a in range(code.n)] for j in range(job.codewords)]
            expected, tolerance, magnitude = checks.expected_projections(code, codewords, dtype)
        site = Site("verify", job.layer, job.op, (job.worker,))
        observed = hook.apply(site, decoded.values.astype(np.float64, copy=False) @ v, job.attempt)
        return checks.accept_values(decoded.values, observed, expected, tolerance, magnitude, v)
    except UncorrectableError as exc:
        return checks.Rejected(type(exc).__name__, str(exc))


def _voted_expectation(
    projections: dict[Position, checks.Projection], job: DecodeJob, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replication's (expected, tolerance, magnitude) of ``decoded @ V``, from the replicas a
    decoder uses (the same :class:`Vote`, taken again here from the producers' projections)."""
    vote = _vote(projections, job)
    if vote.failed:
        raise UncorrectableError("replicas disagree with no majority")
    expected, tolerance, magnitudes = [], [], []
    for t in range(job.outputs):
        chosen = [projections[(t, j, vote.chosen(t, j))] for j in range(job.codewords)]
        magnitude = sum(p.magnitude for p in chosen)
        expected.append(sum(p.z for p in chosen))
        tolerance.append(sum(p.noise for p in chosen) + gamma(job.codewords + 1, dtype) * magnitude)
        magnitudes.append(magnitude)
    return np.concatenate(expected), np.concatenate(tolerance), np.concatenate(magnitudes)


# -- repairs (rare: a systematic result was wrong) ---------------------------------------------
def repair_shares(
    code: SystematicMDSCode | None,
    products: ShardProducts,
    decoded: Decoded,
    job: DecodeJob,
    hook: CorruptionHook,
) -> dict[int, np.ndarray]:
    """This worker's new partial sum of every output chunk under repair.

    Coded (``code``): its good systematic results of the chunk, plus its share
    ``sum_{good a here} c_a R[a, j]`` of each wrong result rebuilt from the good positions of
    codeword j. Replication (``code`` None): the replica of each block it holds that was not
    outvoted. The wrong result never enters an arithmetic (a NaN or 1e300 would swamp the sum
    otherwise). Summed over workers, the new partials are the repaired chunk.
    """
    wrong = {(t, j): bad for t, j, bad in decoded.repairs}
    chunks: dict[int, np.ndarray] = {}
    for t in sorted({t for t, _ in wrong}):
        terms = []
        for j in range(job.codewords):
            bad = wrong.get((t, j))
            if code is None or bad is None:
                copy = 0 if bad is None else first_not_outvoted(job.copies, bad)
                terms += [products.results[(t, j, copy)]] if (t, j, copy) in products.results else []
                continue
            known = [a for a in range(code.n) if a not in bad]
            terms += [
                r.dtype.type(c) * r
                for c, a in zip(code.rebuild_matrix(known, [t])[0], known)
                if (r := products.results.get((a, j, 0))) is not None
            ]
        if terms:
            chunk = sum(terms[1:], terms[0].copy())
            chunks[t] = hook.apply(Site("decode", job.layer, job.op, (job.worker, t)), chunk, job.attempt)
    return chunks


def apply_repairs(decoded: Decoded, shares: Sequence[dict[int, np.ndarray]]) -> Decoded:
    """The decode with every repaired output chunk replaced by the sum of the workers' new partials."""
    values = decoded.values.copy()
    for t in sorted({t for t, _, _ in decoded.repairs}):
        parts = [worker_shares[t] for worker_shares in shares if t in worker_shares]
        rows = parts[0].shape[0]
        values[t * rows : (t + 1) * rows] = sum(parts[1:], parts[0].copy())
    return replace(decoded, values=values, repairs=())


# -- updates -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateJob:
    """One worker's part of ``W~ -= lr * D~ X~^T``: its blocks and how to encode their factors."""

    layer: str
    op: int
    worker: int
    labels: tuple[Label, ...]
    lr: float
    kr: int
    kc: int
    row_parity: np.ndarray  # pr x kr: parity block-row q of D~ is sum_i row_parity[q, i] D[i]
    col_parity: np.ndarray  # pc x kc
    delta: OperandSpec
    inputs: OperandSpec


def update_shard(
    shard: Shard, delta: Sequence[np.ndarray], inputs: Sequence[np.ndarray], job: UpdateJob, hook: CorruptionHook
) -> Shard:
    """Every block of this worker updated with its encoded factors; the layer is never re-encoded.

    Factor pieces are activated and encoded once per worker and copy (a fault there spoils this
    worker's blocks of one block-row or -column, one per codeword of the other direction:
    products correct around them and a scrub rebuilds them). Replicas of one block get factors
    of their own: two replicas on one worker must not share a fault, or a majority could be wrong.

    The update *consumes* ``shard``: blocks are overwritten in place, which saves a copy pass and
    half the memory. That is safe because nothing reads a shard after its update: a step's
    products are accepted before its update is submitted, a rollback restores from the store, and
    the shard is pinned to this worker, so Dask never re-runs this task on it.
    """
    by_copy: dict[tuple[int, ...], list[Label]] = {}
    for label in job.labels:
        by_copy.setdefault(tuple(label[2:]), []).append(label)  # (): a coded block; (r,): replica r
    updated = dict(shard)
    for copy, labels in by_copy.items():
        d_factors = _factors(delta, job.delta, {lab[0] for lab in labels}, job.kr, job.row_parity, (0, copy), job, hook)
        x_factors = _factors(
            inputs, job.inputs, {lab[1] for lab in labels}, job.kc, job.col_parity, (1, copy), job, hook
        )
        for label in labels:
            block = apply_update(shard[label], d_factors[label[0]], x_factors[label[1]], job.lr, in_place=True)
            updated[label] = replace(
                block, values=hook.apply(Site("update", job.layer, job.op, label), block.values, 0)
            )
    return updated


def _factors(
    data: Sequence[np.ndarray],
    spec: OperandSpec,
    wanted: set[int],
    k: int,
    parity: np.ndarray,
    where: tuple[int, tuple[int, ...]],
    job: UpdateJob,
    hook: CorruptionHook,
) -> dict[int, Factor]:
    """The factor pieces this worker needs: systematic ones as they are, parity ones encoded.

    ``where`` is (side, copy): side 0 is the row factor D~, 1 the column factor X~; fault sites
    read ``(side, index, worker, *copy)``.
    """
    side, copy = where
    needed = set(range(k)) if any(i >= k for i in wanted) else wanted
    pieces = {
        i: spec.piece(data, i, hook, Site("activation", job.layer, job.op, (side, i, job.worker, *copy)), 0)
        for i in sorted(needed)
    }
    factors = {i: Factor.of(pieces[i]) for i in wanted if i < k}
    parity_rows = sorted(i for i in wanted if i >= k)
    if parity_rows:
        stacked = np.stack([pieces[i] for i in range(k)])  # k x rows x B
        maxima = np.array([float(np.max(np.abs(pieces[i]), initial=0.0)) for i in range(k)])
        for q in parity_rows:
            coeffs = parity[q - k]
            values = np.tensordot(coeffs.astype(stacked.dtype), stacked, axes=1)
            err = encoding_error(k, float(np.abs(coeffs) @ maxima), stacked.dtype)
            site = Site("encode", job.layer, job.op, (side, q, job.worker, *copy))
            factors[q] = Factor.of(hook.apply(site, values, 0), err)
    return factors


def assemble(labels: Sequence[Label], blocks: Sequence[CodedBlock]) -> Shard:
    """A shard from individual blocks (after encoding or restoring)."""
    return dict(zip(labels, blocks))

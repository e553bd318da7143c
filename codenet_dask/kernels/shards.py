"""The worker side of a layer's operations: one task per worker per step, one fault site per block.

A worker holds a *shard*: the coded blocks (logical nodes) placed on it, by label ``(a, b)`` (or
``(a, b, r)`` for replica r). Scheduling one Dask task per block costs ~2 ms each, more than a
block's arithmetic at useful sizes, so each step runs as one task per worker over all its blocks.
Each block still computes on its own (its own product, its own activation copy, its own fault
site), so a soft error still spoils exactly one logical node.

A product's results are checked at full resolution, entry by entry, without moving them: the code
is linear, so the sum over operand pieces of a family of codewords is a codeword again (a *summed
codeword*), and each worker ships only its partial sums (the systematic ones make the output) and
its share of the summed codeword's syndrome with the modelled variance of its noise
(``kernels.noise``). Every worker decodes the output itself: where every syndrome entry is within
its threshold and nothing was provably wrong, the output is the sum of the partials; the few
flagged entries go to a second round, in which every worker sends its blocks' own values at just
those entries and each codeword is decoded there (``codes.entrywise``). An independent verify task
recomputes each decode and must agree bit for bit. Pure numpy: these functions run inside worker
tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

import numpy as np

from ..codes import SystematicMDSCode, gamma
from ..codes.entrywise import EntryDecode, decode_entries
from ..faults.hook import CorruptionHook, NoFaults, Site
from . import checks, factors, noise
from .blocks import CodedBlock, Factor, apply_update, encoding_error
from .noise import BlockStats, PieceStats

Label = tuple[int, ...]
Shard = dict[Label, CodedBlock]


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
        return self.pieces(data, index, hook, site, attempt)[1]

    def pieces(
        self, data: Sequence[np.ndarray], index: int, hook: CorruptionHook, site: Site, attempt: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The piece as computed and as used (through the fault hook): bookkeeping derived from it
        must come from the first, or a wrong value would hide inside bounds it made itself."""
        window = slice(index * self.rows, (index + 1) * self.rows)
        if self.transform is None:
            return data[0][window], data[0][window]
        clean = self.transform(data, window)
        return clean, hook.apply(site, clean, attempt)


# -- products ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One block taking part in a product: which summed codeword and position it contributes to,
    and ``piece``, the operand piece it multiplies (also its own codeword within the summed one)."""

    label: Label
    codeword: int
    position: int
    piece: int


@dataclass(frozen=True)
class SummedCodeword:
    """The sum over pieces of one family of codewords: a codeword again, as the code is linear.

    The product code has one (its positions are the block-rows forward, the block-columns
    backward; its systematic positions are the output chunks); replication has one per output
    chunk (positions are copies, copy 0 systematic); uncoded one per chunk with a trivial code.
    ``chunks[i]`` is the output chunk of systematic position ``i``.
    """

    code: SystematicMDSCode
    chunks: tuple[int, ...]


@dataclass(frozen=True)
class ProductJob:
    """What one worker computes for one product: its blocks, where each sits in its codeword."""

    step: str  # "forward" or "backward"
    layer: str
    op: int
    attempt: int
    worker: int
    transpose: bool
    members: tuple[Member, ...]
    codewords: tuple[SummedCodeword, ...]
    outputs: int  # output chunks
    chunk_rows: int
    operand: OperandSpec
    #: Whether results are checked (the uncoded baseline checks nothing).
    checked: bool = True


@dataclass(frozen=True)
class ShardSummary:
    """What a worker ships after a product (every decoder fetches every worker's).

    ``partials[t]``: the sum of its systematic contributions to output chunk ``t`` (erased entries
    left out); ``syndromes[c]``: its share ``sum H[:, pos] R`` of summed codeword ``c``'s syndrome
    (float64, ``p x rows x B``); ``variances[c]``: the modelled variance of that share's noise;
    ``erased[(c, pos)]``: flat indices of entries it found provably wrong (non-finite, or larger than
    any correct product) or a wrong update factor marked, left out of both, and of those
    ``marked[(c, pos)]`` the marked ones, ``marked_by[(c, pos)]`` the blocks they are of; ``worker``:
    its index (``ProductJob.worker``).
    """

    partials: dict[int, np.ndarray]
    syndromes: dict[int, np.ndarray]
    variances: dict[int, np.ndarray]
    erased: dict[tuple[int, int], np.ndarray]
    worker: int
    marked: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    marked_by: dict[tuple[int, int], tuple[Label, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardProducts:
    """A worker's block results of one product (stay on the worker) and their summary."""

    results: dict[Label, np.ndarray]
    stats: dict[Label, tuple[BlockStats, PieceStats, np.ndarray | None]]
    summary: ShardSummary
    #: Per block with a ``suspect`` mark: the flat output entries it fed; per block whose result read
    #: all zeros where its operands say it cannot (``noise.dead``): all of them. Known erasures.
    marked: dict[Label, np.ndarray]


def shard_products(
    shard: Shard, operand: Sequence[np.ndarray | Unaccepted], job: ProductJob, hook: CorruptionHook
) -> ShardProducts | checks.Skipped:
    """Every block product of this worker in one task; each block through its own fault site.

    The worker's per-position partial sums are formed in float64 and pass through the ``project``
    fault site before anything is derived from them, so a fault there shows in the syndrome too.
    An operand that was not accepted (a step's operations run as one graph) skips the product.
    """
    operand = [output_of(o) for o in operand]
    if not settled(operand):
        return checks.Skipped()
    # A faulty block or operand is non-finite or huge: such entries are erased below (provably
    # wrong), so numpy's overflow warnings about them would only reach the user's terminal.
    with np.errstate(over="ignore", invalid="ignore"):
        return _shard_products(shard, cast(Sequence[np.ndarray], operand), job, hook)


def _shard_products(
    shard: Shard, operand: Sequence[np.ndarray], job: ProductJob, hook: CorruptionHook
) -> ShardProducts:
    results: dict[Label, np.ndarray] = {}
    stats: dict[Label, tuple[BlockStats, PieceStats, np.ndarray | None]] = {}
    plain: dict[int, tuple[np.ndarray, np.ndarray, PieceStats | None]] = {}
    sums: dict[tuple[int, int], np.ndarray] = {}
    variances: dict[int, np.ndarray] = {}
    erased: dict[tuple[int, int], list[np.ndarray]] = {}
    marked_by: dict[tuple[int, int], list[Label]] = {}
    marked: dict[Label, np.ndarray] = {}
    dtype = None
    for member in job.members:
        piece, clean, piece_stats = plain.get(member.piece) or _input(job, operand, member, hook)
        if job.operand.plain:
            plain[member.piece] = (piece, clean, piece_stats)
        block = shard[member.label]
        weights = block.values.T if job.transpose else block.values
        site = Site(f"block-{job.step}", job.layer, job.op, member.label)
        values = hook.apply(site, weights @ piece, job.attempt)
        dtype = values.dtype
        results[member.label] = values
        word = job.codewords[member.codeword]
        key = (member.codeword, member.position)
        if not job.checked:
            total = sums.get(key)
            sums[key] = values.astype(np.float64) if total is None else total + values
            continue
        assert piece_stats is not None  # the pieces of a checked product carry stats (_input)
        block_stats = noise.block_stats(block, job.transpose, piece.shape[0], values.dtype)
        spread = noise.exact_spread(weights, clean)
        stats[member.label] = (block_stats, piece_stats, spread)
        contribution, wrong = noise.screen(values, block_stats, piece_stats)
        if block.suspect is not None:  # entries a wrong update factor fed: erasures, like provably wrong ones
            marked[member.label] = block.suspect.output(job.transpose, values.shape[1])
        if noise.dead(values, block_stats, piece_stats):  # a dead unit or a dropped message: erased all over
            marked[member.label] = np.arange(values.size)
        if member.label in marked:
            contribution.flat[marked[member.label]] = 0.0
            wrong = np.union1d(wrong, marked[member.label])
            marked_by.setdefault(key, []).append(member.label)
        if wrong.size:
            erased.setdefault(key, []).append(wrong)
        total = sums.get(key)
        sums[key] = contribution if total is None else total + contribution
        h = word.code.check_matrix[:, member.position]
        variance = noise.product_variance(
            contribution, block_stats, piece_stats, len(job.members) + word.code.n, spread
        )
        share = (h**2)[:, None, None] * variance[None]
        variances[member.codeword] = share if member.codeword not in variances else variances[member.codeword] + share
    sums = {
        key: hook.apply(Site("project", job.layer, job.op, (job.worker, 0, *key)), total, job.attempt)
        for key, total in sums.items()
    }
    partials: dict[int, np.ndarray] = {}
    syndromes: dict[int, np.ndarray] = {}
    for (c, position), total in sums.items():
        word = job.codewords[c]
        if position < word.code.k:
            partials[word.chunks[position]] = total.astype(dtype, copy=False)
        if job.checked and word.code.p:
            share = word.code.check_matrix[:, position][:, None, None] * total[None]
            syndromes[c] = share if c not in syndromes else syndromes[c] + share
    summary = ShardSummary(
        partials,
        syndromes,
        {c: v.astype(np.float32) for c, v in variances.items() if job.codewords[c].code.p},
        {key: np.unique(np.concatenate(parts)) for key, parts in erased.items()},
        job.worker,
        {key: np.unique(np.concatenate([marked[label] for label in labels])) for key, labels in marked_by.items()},
        {key: tuple(labels) for key, labels in marked_by.items()},
    )
    return ShardProducts(results, stats, summary, marked)


def _input(
    job: ProductJob, operand: Sequence[np.ndarray], member: Member, hook: CorruptionHook
) -> tuple[np.ndarray, np.ndarray, PieceStats | None]:
    """Input piece ``member.piece`` as this block sees it, as computed, and the column statistics
    its check needs (of the piece as computed: see ``OperandSpec.pieces``)."""
    site = Site("activation", job.layer, job.op, member.label)
    clean, piece = job.operand.pieces(operand, member.piece, hook, site, job.attempt)
    return piece, clean, (PieceStats.of(clean) if job.checked else None)


def summary_of(products: ShardProducts | checks.Skipped) -> ShardSummary | checks.Skipped:
    """Only the summary (what other workers fetch)."""
    return products if isinstance(products, checks.Skipped) else products.summary


# -- decoding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeJob:
    """What a decoder needs to know about a product's layout."""

    layer: str
    op: int
    attempt: int
    worker: int
    codewords: tuple[SummedCodeword, ...]
    outputs: int
    chunk_rows: int
    pieces: int  # operand pieces: codewords per summed codeword
    checked: bool = True


@dataclass(frozen=True)
class Finding:
    """A block found wrong by a decode: at how many entries, and how (``erased``: provably wrong on
    its own; ``located``: placed by the code)."""

    label: Label
    entries: int
    kind: str


@dataclass(frozen=True)
class Decoded:
    """A worker's own decode of a whole product output (``rows x B``, the chunks stacked).

    ``findings``: the blocks it found wrong; ``failed``: the codewords (``summed * pieces + piece``)
    with some entry beyond what the code can correct, or ambiguous (``ambiguous`` counts those
    entries); the output is then unusable.
    """

    values: np.ndarray
    findings: tuple[Finding, ...] = ()
    failed: tuple[int, ...] = ()
    ambiguous: int = 0


@dataclass(frozen=True)
class Pending:
    """A first-round decode that found entries its summed syndromes cannot vouch for: ``entries[c]``
    (flat indices into one chunk) of summed codeword ``c`` need every block's own values there."""

    decoded: Decoded
    entries: dict[int, np.ndarray]


#: What a task hands on instead of a result that is not accepted (yet): a product's verify refused
#: it, it waits for the second round, or it was skipped because its own input was one of these.
Unaccepted = checks.Rejected | Pending | checks.Skipped


def settled(values: Sequence[object]) -> bool:
    """Whether every value is a result to work with: none is :data:`Unaccepted`."""
    return not any(isinstance(v, Unaccepted) for v in values)


def _sum_partials(summaries: Sequence[ShardSummary], job: DecodeJob) -> np.ndarray:
    """The output as the sum of every worker's partials (chunks stacked)."""
    first = next(p for s in summaries for p in s.partials.values())
    values = np.zeros((job.outputs * job.chunk_rows, first.shape[1]), first.dtype)
    for s in summaries:
        for t, part in s.partials.items():
            values[t * job.chunk_rows : (t + 1) * job.chunk_rows] += part
    return values


def _summed_check(summaries: Sequence[ShardSummary], c: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Summed codeword ``c``'s syndrome (every worker's share added) and its threshold: ``LAMBDA``
    modelled standard deviations of its noise plus the rigorous bound of the sum itself (None
    without parity)."""
    parts = [s.syndromes[c] for s in summaries if c in s.syndromes]
    if not parts:
        return None
    syndrome = sum(parts[1:], parts[0].copy())
    variance = sum((s.variances[c].astype(np.float64) for s in summaries if c in s.variances), 0.0)
    rigorous = gamma(len(parts) + 1, np.float64) * sum(np.abs(part) for part in parts)
    return syndrome, noise.LAMBDA * np.sqrt(variance) + rigorous


def first_round(
    summaries: Sequence[ShardSummary], job: DecodeJob
) -> tuple[np.ndarray, tuple[Finding, ...], dict[int, np.ndarray]]:
    """The output as the sum of every worker's partials; the entries a summed codeword's syndrome
    cannot vouch for either rebuilt here or left for the second round.

    Where a summed codeword's syndrome flags nothing but marked entries (``ShardProducts.marked``:
    known erasures, the exact footprint of a wrong update factor, which lasts until the next scrub
    and would send every product to a second round meanwhile, or a dead block result), the output
    needs no block's own values: the marked positions' summed values are solved from the summed
    syndrome there while at least one parity is left to check the rebuild (the rule the second
    round keeps for marks), and the output entries are corrected. Anything else (a flagged entry
    not marked, an entry provably wrong, a rebuild that does not check) goes to the second round,
    which places every error in its block: per summed codeword ``c``, the flat entries of one chunk
    (``pending[c]``), over their footprint. Returns the values, the marked blocks rebuilt around,
    and ``pending``.
    """
    values = _sum_partials(summaries, job)
    shape = _chunk_shape(summaries, job)
    found: dict[Label, int] = {}
    pending: dict[int, np.ndarray] = {}
    for c, word in enumerate(job.codewords):
        erased = [idx for s in summaries for (cc, _), idx in s.erased.items() if cc == c]
        marked: dict[int, list[np.ndarray]] = {}
        for summary in summaries:
            for (cc, position), idx in summary.marked.items():
                if cc == c:
                    marked.setdefault(position, []).append(idx)
        check = _summed_check(summaries, c)
        loud = np.zeros(0, np.int64)
        if check is not None:
            syndrome, tau = check
            with np.errstate(invalid="ignore"):  # a share's Inf makes its own tau Inf: never within it
                within = (np.abs(syndrome) <= tau) & np.isfinite(syndrome)
                loud = np.flatnonzero(~np.all(within, axis=0).ravel())
        if not loud.size and not erased:
            continue
        known = {position: np.unique(np.concatenate(parts)) for position, parts in marked.items()}
        everything = np.unique(np.concatenate([loud, *erased]))
        only_marks = check is not None and known and np.isin(everything, np.concatenate(list(known.values()))).all()
        verdict = _rebuild(word.code, check, known) if only_marks else None
        if verdict is None:
            pending[c] = footprint(everything, shape)
            continue
        for a, t in enumerate(word.chunks):
            chunk = values[t * shape[0] : (t + 1) * shape[0]].reshape(-1)
            chunk[verdict.entries] -= verdict.errors[a].astype(values.dtype)
        for summary in summaries:
            for (cc, position), labels in summary.marked_by.items():
                if cc == c:
                    for label in labels:
                        found[label] = found.get(label, 0) + int(verdict.bad[position].sum())
    findings = tuple(Finding(label, entries, "erased") for label, entries in sorted(found.items()))
    return values, findings, pending


def _rebuild(
    code: SystematicMDSCode, check: tuple[np.ndarray, np.ndarray] | None, known: dict[int, np.ndarray]
) -> EntryDecode | None:
    """The summed codeword decoded with the marked entries erased, or None where that is not a
    rebuild to accept: an entry with as many erased positions as parities (no parity left to check
    it), an error at a position not erased, or an entry it cannot decode."""
    assert check is not None  # only called with parity
    p = code.p
    syndrome, tau = check
    size = syndrome[0].size
    count = np.zeros(size, np.int64)
    for idx in known.values():
        count[idx] += 1
    if count.max(initial=0) >= p:
        return None
    verdict = decode_entries(code, syndrome.reshape(p, -1), tau.reshape(p, -1), known)
    if verdict.failed.any():
        return None
    allowed = np.zeros_like(verdict.bad)
    for position, idx in known.items():
        allowed[position] = np.isin(verdict.entries, idx)
    return None if (verdict.bad & ~allowed).any() else verdict


def _chunk_shape(summaries: Sequence[ShardSummary], job: DecodeJob) -> tuple[int, int]:
    first = next(p for s in summaries for p in s.partials.values())
    return job.chunk_rows, first.shape[1]


def footprint(entries: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Every entry in a row or a column of ``entries`` (flat indices into a chunk of ``shape``).

    A wrong block result rarely stops at the entries its check flags: a wrong weight spoils a
    whole row of the block's output (``e * x[k, b]`` for every column ``b``), a wrong operand entry a
    whole column, and where ``x[k, b]`` is small the error is below the threshold yet may be many
    times the product's own roundoff. The second round therefore looks at the whole footprint.
    """
    rows, cols = np.unravel_index(entries, shape)
    grid = np.zeros(shape, bool)
    grid[rows, :] = True
    grid[:, cols] = True
    return np.flatnonzero(grid)


def _erase_footprints(
    verdict: EntryDecode,
    erased: dict[int, np.ndarray],
    idx: np.ndarray,
    shape: tuple[int, int],
    p: int,
    doubt: dict[int, np.ndarray],
) -> dict[int, np.ndarray] | None:
    """The erasures a second decode uses: every position the first found wrong, erased over the
    footprint (:func:`footprint`) of the entries it was found wrong at, so that its sub-threshold
    errors there are rebuilt too. None when nothing was found, or when erasing would leave the
    codeword no parity to check the rebuild with. Entries erased only for doubt (``doubt``: masks
    over ``idx``) were not found wrong: they are not widened."""
    good = ~verdict.failed
    wrong = [a for a in range(verdict.bad.shape[0]) if (verdict.bad[a] & good).any()]
    if not wrong or len(wrong) >= p:
        return None
    rows, cols = np.unravel_index(idx, shape)
    widened = dict(erased)
    for a in wrong:
        found = verdict.bad[a] & good
        if a in doubt:
            found &= ~doubt[a][verdict.entries]
        if found.any():
            hit = verdict.entries[found]
            near = np.flatnonzero(np.isin(rows, rows[hit]) | np.isin(cols, cols[hit]))
            widened[a] = np.union1d(erased.get(a, np.zeros(0, np.int64)), near)
    return widened if any(widened[a] is not erased.get(a) for a in widened) else None


@dataclass(frozen=True)
class Checked:
    """A worker's decode of a product output and its independent verification (:func:`verify`),
    one task for the two computations, each through its own fault site: ``output`` is the decoded
    array when the verification agrees (what consumers use: :func:`output_of`), else a marker of
    why not; ``decoded`` is the decode itself (its findings, and where a second round starts)."""

    output: np.ndarray | Unaccepted
    decoded: Decoded | Pending | checks.Skipped


def output_of(value: Any) -> Any:
    """What a consumer uses of a product output: a :class:`Checked`'s output, anything else as it is."""
    return value.output if isinstance(value, Checked) else value


def decode(
    summaries: Sequence[ShardSummary | checks.Skipped], job: DecodeJob, hook: CorruptionHook
) -> Checked | np.ndarray | checks.Skipped:
    """The first round: sum the partials; entries the summed syndromes flag need a second round;
    the decode verified. (The uncoded baseline checks nothing: its output is the plain sum.) A
    worker that skipped its products skips the decode."""
    if not settled(summaries):
        skipped = checks.Skipped()
        return Checked(skipped, skipped) if job.checked else skipped
    summaries = cast(Sequence[ShardSummary], summaries)
    if not job.checked:
        return hook.apply(Site("decode", job.layer, job.op, (job.worker,)), _sum_partials(summaries, job), job.attempt)
    values, findings, entries = first_round(summaries, job)
    values = hook.apply(Site("decode", job.layer, job.op, (job.worker,)), values, job.attempt)
    decoded = Pending(Decoded(values, findings), entries) if entries else Decoded(values, findings)
    return Checked(verify(decoded, summaries, None, job, hook), decoded)


@dataclass(frozen=True)
class Attribution:
    """One worker's block values (float64) at the entries a first round flagged, with their noise
    variances and which of them are provably wrong."""

    members: tuple[Member, ...]
    values: tuple[np.ndarray, ...]
    variances: tuple[np.ndarray, ...]
    wrong: tuple[np.ndarray, ...]
    worker: int
    #: Of ``wrong``, the entries a wrong update factor's mark erased (``CodedBlock.suspect``).
    marked: tuple[np.ndarray, ...]


def attribute(products: ShardProducts, first: Checked, job: ProductJob, hook: CorruptionHook) -> Attribution:
    """This worker's blocks at the flagged entries (nothing if its own decode flagged none)."""
    pending = first.decoded
    entries = pending.entries if isinstance(pending, Pending) else {}
    members, values, variances, wrong, marked = [], [], [], [], []
    for member in job.members:
        idx = entries.get(member.codeword)
        if idx is None:
            continue
        result = products.results[member.label]
        block_stats, piece_stats, spread = products.stats[member.label]
        site = Site("project", job.layer, job.op, (job.worker, 1, *member.label))
        at = hook.apply(site, result.reshape(-1)[idx].astype(np.float64), job.attempt)
        bad, variance = noise.at_entries(at, idx, result.shape, block_stats, piece_stats, spread)
        mark = np.isin(idx, products.marked.get(member.label, np.zeros(0, np.int64)))
        bad |= mark
        members.append(member)
        values.append(np.where(bad, 0.0, at))
        variances.append(variance)
        wrong.append(bad)
        marked.append(mark)
    return Attribution(tuple(members), tuple(values), tuple(variances), tuple(wrong), job.worker, tuple(marked))


def consistent(
    attribution: Attribution, summary: ShardSummary, word: SummedCodeword, c: int, idx: np.ndarray
) -> np.ndarray:
    """Where a worker's second-round values of summed codeword ``c`` (at flat entries ``idx`` of a
    chunk) give, summed as its first round summed them, bit for bit the syndrome share it sent
    then: the same float64 additions in the same order. Elsewhere one of its two messages is wrong
    (a fault in the values it sent, or in its partial sums), so its values there are not used: a
    faulty second-round read would otherwise count as a right copy and, beside one wrong block
    (two copies of a repetition code both read as 0, say), outvote the right one."""
    sent = summary.syndromes.get(c)
    totals: dict[int, np.ndarray] = {}
    for member, value in zip(attribution.members, attribution.values):
        if member.codeword == c:
            totals[member.position] = value if member.position not in totals else totals[member.position] + value
    if sent is None or not totals:
        return np.ones(idx.size, bool)
    h = word.code.check_matrix
    again: np.ndarray | None = None
    for position, total in totals.items():
        share = h[:, position][:, None] * total[None]
        again = share if again is None else again + share
    with np.errstate(invalid="ignore"):
        return np.all(again == sent.reshape(sent.shape[0], -1)[:, idx], axis=0)


def resolve(
    pending: Decoded | Pending,
    attributions: Sequence[Attribution],
    summaries: Sequence[ShardSummary],
    job: DecodeJob,
    hook: CorruptionHook,
) -> Decoded:
    """The second round: every flagged entry decoded per codeword from the blocks' own values.

    Each summed codeword splits back into its codewords (one per operand piece); at every flagged
    entry a codeword's syndrome is recomputed from the attributed values, wrong positions are found
    entry by entry (``codes.entrywise``) and the output entry becomes the sum of corrected values.
    A worker's values that do not agree with its first-round share (:func:`consistent`) count as
    erased there.
    """
    if not isinstance(pending, Pending):
        return pending
    values = pending.decoded.values.copy()
    shape = (values.shape[0] // job.outputs, values.shape[1])
    sent = {summary.worker: summary for summary in summaries}
    findings: dict[Label, list] = {f.label: [(f.entries, f.kind)] for f in pending.decoded.findings}  # rebuilt already
    failed: set[int] = set()
    ambiguous = 0
    for c, idx in pending.entries.items():
        word = job.codewords[c]
        n = word.code.n
        by_piece: dict[int, dict[int, tuple[Label, np.ndarray, np.ndarray, np.ndarray]]] = {}
        doubts: dict[int, dict[int, np.ndarray]] = {}  # per piece and position: entries erased for doubt only
        marks: dict[int, dict[int, np.ndarray]] = {}  # per piece and position: entries a mark erased
        for att in attributions:
            doubtful = ~consistent(att, sent[att.worker], word, c, idx) if att.worker in sent else None
            for member, v, var, bad, mark in zip(att.members, att.values, att.variances, att.wrong, att.marked):
                if member.codeword == c and v.shape == idx.shape:
                    if mark.any():
                        marks.setdefault(member.piece, {})[member.position] = mark
                    if doubtful is not None and doubtful.any():
                        doubts.setdefault(member.piece, {})[member.position] = doubtful & ~bad
                        v, var, bad = np.where(doubtful, 0.0, v), np.where(doubtful, 0.0, var), bad | doubtful
                    by_piece.setdefault(member.piece, {})[member.position] = (member.label, v, var, bad)
        total = np.zeros((word.code.k, idx.size))
        for piece in range(job.pieces):
            positions = by_piece.get(piece, {})
            if len(positions) != n:
                failed.add(c * job.pieces + piece)  # some block's values are missing: nothing to decode with
                continue
            doubt, marked = doubts.get(piece, {}), marks.get(piece, {})
            none = np.zeros(idx.size, bool)
            unsure = {a: doubt.get(a, none) | marked.get(a, none) for a in {*doubt, *marked}}
            if unsure and _unverifiable(positions, unsure, word.code.p):
                failed.add(c * job.pieces + piece)  # a rebuild with no parity left to check it: recompute
                continue
            y = np.stack([positions[a][1] for a in range(n)])
            variance = np.stack([positions[a][2] for a in range(n)])
            h = word.code.check_matrix
            tau = noise.LAMBDA * np.sqrt((h**2) @ variance) + gamma(n + 1, np.float64) * (np.abs(h) @ np.abs(y))
            erased = {a: np.flatnonzero(positions[a][3]) for a in range(n)}
            verdict = decode_entries(word.code, h @ y, tau, erased)
            widened = _erase_footprints(verdict, erased, idx, shape, word.code.p, doubt)
            if widened is not None:  # decode again with the wrong blocks erased over their footprints
                y = y.copy()
                for a, at in widened.items():
                    y[a, at] = 0.0
                tau = noise.LAMBDA * np.sqrt((h**2) @ variance) + gamma(n + 1, np.float64) * (np.abs(h) @ np.abs(y))
                verdict = decode_entries(word.code, h @ y, tau, widened)
            fixed = y.copy()
            if verdict.entries.size:
                fixed[:, verdict.entries] -= verdict.errors
                if verdict.failed.any():
                    failed.add(c * job.pieces + piece)
                ambiguous += int(verdict.ambiguous.sum())
                for a in range(n):
                    hits = verdict.bad[a] & ~verdict.failed
                    if a in doubt:  # erased only for its worker's inconsistent messages: no evidence
                        hits &= ~doubt[a][verdict.entries]
                    if hits.any():
                        kind = "erased" if positions[a][3].any() else "located"
                        findings.setdefault(positions[a][0], []).append((int(hits.sum()), kind))
            total += fixed[: word.code.k]
        rows = values.shape[0] // job.outputs
        for i, t in enumerate(word.chunks):
            chunk = values[t * rows : (t + 1) * rows].reshape(-1)
            chunk[idx] = total[i].astype(values.dtype)
    decoded = Decoded(
        hook.apply(Site("decode", job.layer, job.op, (job.worker, 1)), values, job.attempt),
        tuple(Finding(label, sum(e for e, _ in hits), hits[0][1]) for label, hits in sorted(findings.items())),
        tuple(sorted(failed)),
        ambiguous,
    )
    return decoded


def resolve_checked(
    first: Checked,
    attributions: Sequence[Attribution],
    summaries: Sequence[ShardSummary],
    job: DecodeJob,
    hook: CorruptionHook,
) -> Checked:
    """The second round (:func:`resolve`) of a worker's first-round decode, verified."""
    resolved = resolve(cast(Decoded | Pending, first.decoded), attributions, summaries, job, hook)
    return Checked(verify(resolved, summaries, attributions, job, hook), resolved)


def _unverifiable(positions: dict, unsure: dict[int, np.ndarray], p: int) -> bool:
    """Whether some entry has ``p`` or more erased positions, one of them ``unsure``: erased for
    doubt (a worker's inconsistent messages) or for a mark (a wrong update factor's, which stays
    until a scrub and so meets every later fault of its codeword). Rebuilt from the rest with no
    parity left over, an error elsewhere would pass unseen. (Provably wrong entries alone may use
    every parity: they are known to be wrong, and they do not last.)"""
    erased = sum(positions[a][3].astype(np.int64) for a in positions)
    doubted = np.any(np.stack(list(unsure.values())), axis=0)
    return bool(np.any((erased >= p) & doubted))


@dataclass(frozen=True)
class Verdict:
    """One worker's part of a product as the client and the step's gates see it (small): whether
    its output was accepted, and what its decode found (``Decoded`` without the values)."""

    status: Literal["accepted", "pending", "rejected", "skipped"]
    findings: tuple[Finding, ...] = ()
    failed: tuple[int, ...] = ()
    ambiguous: int = 0

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def verdict_of(checked: Checked) -> Verdict:
    """The verdict of a decode and its verification."""
    output, decoded = checked.output, checked.decoded
    if isinstance(output, checks.Skipped | Pending) or not isinstance(decoded, Decoded):
        return Verdict("skipped" if isinstance(output, checks.Skipped) else "pending")
    status: Literal["accepted", "rejected"] = "rejected" if isinstance(output, checks.Rejected) else "accepted"
    return Verdict(status, decoded.findings, decoded.failed, decoded.ambiguous)


# -- verification ------------------------------------------------------------------------------
def verify(
    decoded: Decoded | Pending | checks.Skipped,
    summaries: Sequence[ShardSummary],
    attributions: Sequence[Attribution] | None,
    job: DecodeJob,
    hook: CorruptionHook,
) -> np.ndarray | Unaccepted:
    """Independent acceptance of a worker's decode; returns the decoded array itself.

    The same output is computed again here, from the same inputs, and must agree bit for bit (the
    arithmetic is the same and in the same order: only a soft error makes them differ). A soft error
    here only spoils the verdict: a false alarm and a recomputation, never data. A first-round decode
    that still needs a second round (or was skipped) passes through.
    """
    if isinstance(decoded, Pending | checks.Skipped):
        return decoded
    if decoded.failed:
        reason = "ambiguous" if decoded.ambiguous else "beyond what the code can correct"
        return checks.Rejected("UncorrectableError", f"some output entries are {reason}")
    again, findings, entries = first_round(summaries, job)
    if attributions is not None:
        again = resolve(Pending(Decoded(again, findings), entries), attributions, summaries, job, NoFaults()).values
    again = hook.apply(Site("verify", job.layer, job.op, (job.worker,)), again, job.attempt)
    if not np.array_equal(again, decoded.values, equal_nan=False):
        return checks.Rejected("DecodeMismatchError", "the decode disagrees with its independent recomputation")
    return decoded.values


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
    #: Seed of the factors' check vector (``factors.check_vector``): for :func:`update_and_share`.
    check_seed: int | None = None


def update_shard(
    shard: Shard,
    delta: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    job: UpdateJob,
    hook: CorruptionHook,
    gate: Sequence[Verdict] = (),
    readers: Sequence[object] = (),
) -> Shard:
    """Every block of this worker updated with its encoded factors; the layer is never re-encoded.

    Every block activates and encodes its own factor pieces (fault sites ``(side, index, *label)``):
    a fault there spoils that one block, one position of each of its codewords, which the factor
    check marks (:func:`update_and_share`), products correct around and a scrub rebuilds.
    (Factors shared by a worker's blocks would spoil them all alike, and a codeword held by one
    worker would stay a codeword, of wrong weights.)

    The update *consumes* ``shard``: blocks are overwritten in place, which saves a copy pass and
    half the memory. That is safe because nothing reads a shard after its update: a step's
    products are accepted before its update runs (``gate``: the verdicts of every product the
    step ran before it, on every worker; the update is skipped, the shard returned as it is,
    unless all are accepted, so the workers' blocks stay one codeword), the products on this
    worker that read the shard ran before it (``readers``: their results, not used, order the
    update after them, checked or not), a rollback restores from the store, and the shard is
    pinned to this worker, so Dask never re-runs this task on it.
    """
    delta, inputs = [output_of(d) for d in delta], [output_of(x) for x in inputs]
    if not _open(delta, inputs, gate):
        return shard
    return _update(shard, delta, inputs, job, hook, None)[0]


def update_and_share(
    shard: Shard,
    delta: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    job: UpdateJob,
    hook: CorruptionHook,
    gate: Sequence[Verdict] = (),
    readers: Sequence[object] = (),
) -> factors.UpdateOutcome:
    """:func:`update_shard`, and the share of the factors every block used that the factor check
    needs (``kernels.factors``: their projections on the update's check vector; none when the
    gate skipped the update)."""
    assert job.check_seed is not None  # a checked update has a check vector
    delta, inputs = [output_of(d) for d in delta], [output_of(x) for x in inputs]
    if not _open(delta, inputs, gate):
        return factors.UpdateOutcome(shard, None)
    sizes = factors.PieceSizes(factors.check_vector(job.check_seed, delta[0].shape[1]))
    updated, used = _update(shard, delta, inputs, job, hook, sizes)
    return factors.UpdateOutcome(updated, factors.share(used, sizes.r))


def _open(delta: Sequence[object], inputs: Sequence[object], gate: Sequence[Verdict]) -> bool:
    """Whether an update may run: its factors are results and every verdict of its gate accepted."""
    return settled(delta) and settled(inputs) and all(verdict.accepted for verdict in gate)


def _update(
    shard: Shard,
    delta: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    job: UpdateJob,
    hook: CorruptionHook,
    sizes: factors.PieceSizes | None,
) -> tuple[Shard, list[tuple[tuple[Label, int], np.ndarray, np.ndarray]]]:
    """The updated shard, and (with ``sizes``) every factor as used with its projected bound."""
    updated = dict(shard)
    used: list[tuple[tuple[Label, int], np.ndarray, np.ndarray]] = []
    for label in job.labels:
        d, d_bound = _factor(delta, job.delta, label[0], job.kr, job.row_parity, (0, label), job, hook, sizes)
        x, x_bound = _factor(inputs, job.inputs, label[1], job.kc, job.col_parity, (1, label), job, hook, sizes)
        if d_bound is not None and x_bound is not None:
            used += [((label, factors.ROWS), d.values, d_bound), ((label, factors.COLS), x.values, x_bound)]
        block = apply_update(shard[label], d, x, job.lr, in_place=True)
        updated[label] = replace(block, values=hook.apply(Site("update", job.layer, job.op, label), block.values, 0))
    return updated, used


def _factor(
    data: Sequence[np.ndarray],
    spec: OperandSpec,
    index: int,
    k: int,
    parity: np.ndarray,
    where: tuple[int, Label],
    job: UpdateJob,
    hook: CorruptionHook,
    sizes: factors.PieceSizes | None,
) -> tuple[Factor, np.ndarray | None]:
    """One block's factor piece ``index``: a systematic piece as it is, a parity one encoded; and
    (with ``sizes``: the factors are checked) the projected bound of its distance from the exact
    encoding (``factors.PieceSizes.bound``).

    ``where`` is (side, block label): side 0 is the row factor D~, 1 the column factor X~. Values
    are as used (faults included), statistics and bounds of the values as computed
    (``OperandSpec.pieces``).
    """
    side, label = where

    def piece(i: int) -> tuple[np.ndarray, np.ndarray]:
        return spec.pieces(data, i, hook, Site("activation", job.layer, job.op, (side, i, *label)), 0)

    if index < k:
        clean, used = piece(index)
        bound = None if sizes is None else sizes.bound([sizes.of((side, index), clean)], None, clean.dtype)
        return replace(Factor.of(clean), values=used), bound
    both = [piece(i) for i in range(k)]
    clean = np.stack([c for c, _ in both])  # k x rows x B
    used = np.stack([u for _, u in both])
    coeffs = parity[index - k]
    maxima = np.array([float(np.max(np.abs(c), initial=0.0)) for c, _ in both])
    err = encoding_error(k, float(np.abs(coeffs) @ maxima), used.dtype)
    site = Site("encode", job.layer, job.op, (side, index, *label))
    values = hook.apply(site, np.tensordot(coeffs.astype(used.dtype), used, axes=1), 0)
    encoded = Factor.of(np.tensordot(coeffs.astype(used.dtype), clean, axes=1), err)
    bound = (
        None
        if sizes is None
        else sizes.bound([sizes.of((side, i), c) for i, (c, _) in enumerate(both)], coeffs, clean.dtype)
    )
    return replace(encoded, values=values), bound


def assemble(labels: Sequence[Label], blocks: Sequence[CodedBlock]) -> Shard:
    """A shard from individual blocks (after encoding or restoring)."""
    return dict(zip(labels, blocks))

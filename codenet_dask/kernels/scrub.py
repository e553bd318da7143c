"""Checking and repairing a layer's resident grid, entry by entry, where the blocks are.

The stored grid is a set of codewords of stored blocks (the block-columns under the row code; for
replication, each block's copies under a repetition code). A scrub has two stages, like a product:

1. every worker ships its share of each codeword's full-resolution syndrome ``sum_a H[:, a] W~_a``
   (long double, ``wide``) with the modelled variance of its noise per entry (the stored values'
   drift from an exact codeword: encoding and every update round each entry once,
   ``noise.entry_drift``) and the entries it holds that are known wrong (not finite, beyond the
   block's rigorously tracked largest magnitude, or marked by the update-factor check,
   ``kernels.factors``); every worker sums the shares and flags the entries whose syndrome exceeds
   its threshold (:func:`flag_entries`);
2. every worker sends its blocks' own values at the flagged entries (:func:`values_at`), and each
   decodes every codeword there from those values (``codes.entrywise``; its own blocks as they are,
   not as read) and corrects its own blocks (:func:`repair_shard`): a wrong share can only flag
   entries and a wrong read only mislead other workers' decodes, never change a value. A wrong
   rewrite is a weight fault, found by the next product or scrub.

No block moves and no single task decides for the others. An entry two error patterns explain
equally well sits at the noise level: its systematic values are kept and its parities re-derived
from them. An entry beyond what the code can place is reported ``unrepairable`` (the caller
scrubs again, then rolls back).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import cast

import numpy as np

from ..codes import ProductCode, SystematicMDSCode, unit_roundoff
from ..codes.entrywise import decode_entries
from ..faults.hook import CorruptionHook, Site
from . import noise
from .blocks import CodedBlock
from .encode import stored
from .wide import U_WIDE, WIDE, gamma_wide, pair, unpair

Label = tuple[int, ...]
Shard = dict[Label, CodedBlock]

#: An ambiguous entry whose syndrome stays within this many thresholds counts as noise level.
NOISE_LEVEL = 3.0


@dataclass(frozen=True)
class StoredWord:
    """One codeword of stored blocks: its code and the block at each position."""

    code: SystematicMDSCode
    members: tuple[Label, ...]


@dataclass(frozen=True)
class ScrubJob:
    """What one worker's scrub tasks need: the grid's codewords (the same for every worker)."""

    layer: str
    op: int
    attempt: int
    worker: int
    words: tuple[StoredWord, ...]
    #: The product code when ``words`` are a coded grid's block-columns (parity re-derivation at
    #: noise-level entries then covers the whole slice of the grid at that entry).
    grid: ProductCode | None = None
    #: Whether a grid with nothing flagged is made an exact codeword again (:func:`aligned`: a
    #: rewrite of every parity block). Off for a scrub that only verifies another's rewrites.
    align: bool = True

    @property
    def checked(self) -> tuple[StoredWord, ...]:
        """Every codeword a scrub takes syndromes of: ``words``, and for a grid with parity both
        ways its systematic block-rows under the column code too (:func:`aligned`)."""
        if self.grid is None or not (self.grid.pr and self.grid.pc):
            return self.words
        nc = self.grid.coded_shape[1]
        rows = tuple(StoredWord(self.grid.col_code, tuple((a, b) for b in range(nc))) for a in range(self.grid.kr))
        return self.words + rows


@dataclass(frozen=True)
class StoredShare:
    """A worker's share of every codeword's syndrome: ``syndromes[i]`` (``2 x p x rows x cols``: the
    long double share as a float64 pair, ``wide.pair``), the modelled noise variance per entry
    ``variances[i]`` (``p x rows x cols``), a per-row bound ``rounding[i]`` of its entries' sizes
    (times ``wide.gamma_wide``: a rigorous bound of the sums' rounding), and its known wrong
    entries ``erased[(i, position)]``."""

    syndromes: dict[int, np.ndarray]
    variances: dict[int, np.ndarray]
    rounding: dict[int, np.ndarray]
    erased: dict[tuple[int, int], np.ndarray]


@dataclass(frozen=True)
class StoredValues:
    """A worker's blocks at the flagged entries: per block label its values there (float64,
    provably wrong ones 0), their drift variances and which are wrong."""

    values: dict[Label, np.ndarray]
    variances: dict[Label, np.ndarray]
    wrong: dict[Label, np.ndarray]
    #: Per block: its rigorous ``err`` and largest magnitude (a rebuilt entry's own bound is made
    #: of its sources').
    bounds: dict[Label, tuple[float, float]]


@dataclass(frozen=True)
class ScrubOutcome:
    """A worker's shard after its scrub, and what the scrub found."""

    shard: Shard
    report: dict


def _provably_wrong(block: CodedBlock, values: np.ndarray) -> np.ndarray:
    """Not finite, or larger than the block's rigorously tracked largest magnitude."""
    with np.errstate(invalid="ignore"):
        return ~(np.abs(values) <= block.max_abs * (1 + 1e-12) + np.finfo(np.float64).tiny)


def _known_wrong(block: CodedBlock, values: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """Provably wrong, or marked by the factor check (``CodedBlock.suspect``): ``values`` is the
    whole block, or its entries at flat indices ``at``."""
    bad = _provably_wrong(block, values)
    if block.suspect is not None:
        marked = block.suspect.stored()
        if at is None:
            bad.reshape(-1)[marked] = True
        else:
            bad |= np.isin(at, marked)
    return bad


def stored_share(shard: Shard, job: ScrubJob, hook: CorruptionHook) -> StoredShare:
    """This worker's share of every codeword's syndrome (through a ``scrub`` fault site,
    ``(worker, 0, word)``)."""
    syndromes: dict[int, np.ndarray] = {}
    variances: dict[int, np.ndarray] = {}
    rounding: dict[int, np.ndarray] = {}
    erased: dict[tuple[int, int], np.ndarray] = {}
    for i, word in enumerate(job.checked):
        h = word.code.check_matrix
        for a, label in enumerate(word.members):
            block = shard.get(label)
            if block is None:
                continue
            values = block.values.astype(np.float64)
            bad = np.flatnonzero(_known_wrong(block, values))
            if bad.size:
                values.flat[bad] = 0.0
                erased[(i, a)] = bad
            drift = noise.entry_drift(block, values)
            largest = np.abs(values).max(axis=1, initial=0.0)
            share = h[:, a].astype(WIDE)[:, None, None] * values[None]
            syndromes[i] = share if i not in syndromes else syndromes[i] + share
            variances[i] = (h[:, a] ** 2)[:, None, None] * drift[None] + variances.get(i, 0.0)
            rounding[i] = np.abs(h[:, a])[:, None] * largest[None] + rounding.get(i, 0.0)
        if i in syndromes:
            site = Site("scrub", job.layer, job.op, (job.worker, 0, i))
            syndromes[i] = hook.apply(site, pair(syndromes[i]), job.attempt)
    return StoredShare(syndromes, variances, rounding, erased)


def flag_entries(shares: Sequence[StoredShare], job: ScrubJob) -> np.ndarray:
    """The flat entries (of one block: every block has the same shape) some codeword's summed
    syndrome does not vouch for, or some block holds provably wrong."""
    flagged = [idx for s in shares for idx in s.erased.values()]
    for i, word in enumerate(job.checked):
        summed = _summed(shares, i, word)
        if summed is None:
            continue
        syndrome, variance, rigorous = summed
        tau = noise.LAMBDA * np.sqrt(variance) + (rigorous + U_WIDE * np.abs(syndrome).max(axis=2))[:, :, None]
        with np.errstate(invalid="ignore"):  # a share's Inf makes its own tau Inf: never within it
            within = (np.abs(syndrome) <= tau) & np.isfinite(syndrome)
            flagged.append(np.flatnonzero(~np.all(within, axis=0).ravel()))
    return np.unique(np.concatenate(flagged)) if flagged else np.zeros(0, np.int64)


def _summed(shares: Sequence[StoredShare], i: int, word: StoredWord) -> tuple[np.ndarray, ...] | None:
    """Codeword ``i``'s syndrome summed over the shares (long double), its modelled variance and a
    rigorous per-row bound of the sums' rounding (None: nothing to check)."""
    parts = [unpair(s.syndromes[i]) for s in shares if i in s.syndromes]
    if not parts or not word.code.p:
        return None
    syndrome = sum(parts[1:], parts[0])
    variance = cast(np.ndarray, sum(s.variances[i] for s in shares if i in s.variances))  # not 0: parts is not empty
    rows_bound = cast(np.ndarray, sum(s.rounding[i] for s in shares if i in s.rounding))
    return syndrome, variance, gamma_wide(len(word.members) + len(parts) + 1) * rows_bound


def values_at(shard: Shard, flagged: np.ndarray, job: ScrubJob, hook: CorruptionHook) -> StoredValues:
    """Every block of this worker at the flagged entries (each through a ``scrub`` fault site,
    ``(worker, 1, *label)``)."""
    values: dict[Label, np.ndarray] = {}
    variances: dict[Label, np.ndarray] = {}
    wrong: dict[Label, np.ndarray] = {}
    bounds: dict[Label, tuple[float, float]] = {}
    if flagged.size == 0:
        return StoredValues(values, variances, wrong, bounds)
    for label, block in shard.items():
        at = hook.apply(Site("scrub", job.layer, job.op, (job.worker, 1, *label)), _read(block, flagged), job.attempt)
        bad = _known_wrong(block, at, flagged)
        rows = np.unravel_index(flagged, block.shape)[0]
        values[label] = np.where(bad, 0.0, at)
        variances[label] = noise.entry_drift(block, values[label], rows)
        wrong[label] = bad
        bounds[label] = (float(block.err), float(block.max_abs))
    return StoredValues(values, variances, wrong, bounds)


def _read(block: CodedBlock, flagged: np.ndarray) -> np.ndarray:
    return block.values.reshape(-1)[flagged].astype(np.float64)


def _all_words(job: ScrubJob) -> list[StoredWord]:
    """The codewords decoded: the job's, and for a grid the other direction's too (block-rows
    under the column code), so an entry beyond one codeword's capacity may be placed by another."""
    words = list(job.words)
    if job.grid is not None and job.grid.pc:
        nr, nc = job.grid.coded_shape
        words += [StoredWord(job.grid.col_code, tuple((a, b) for b in range(nc))) for a in range(nr)]
    return words


def repair_shard(
    shard: Shard,
    flagged: np.ndarray,
    gathered: Sequence[StoredValues],
    shares: Sequence[StoredShare],
    job: ScrubJob,
    hook: CorruptionHook,
) -> ScrubOutcome:
    """Decode every flagged entry from the blocks' own values, codeword after codeword and again
    while a pass changes something (iterative product-code decoding); correct this worker's blocks.

    The report names every block found wrong (``erased``: provably wrong entries; ``located``), the
    ones this worker ``repaired``, ``unrepairable`` ones (some entry of their codeword beyond what
    the code can place: the blocks wrong there, or if none could be named, the codeword) and the
    entries ``realigned`` (noise-level entries no error pattern explains uniquely: see
    :func:`_rederive`). The entries a block would be rewritten with pass through the fault hook
    (site ``(worker, 2, *label)``): a faulty rewrite is a weight fault like a faulty update. A grid
    with nothing flagged is ``aligned`` (:func:`aligned`)."""
    y = {label: g.values[label].copy() for g in gathered for label in g.values}
    variance = {label: g.variances[label].copy() for g in gathered for label in g.variances}
    wrong = {label: g.wrong[label].copy() for g in gathered for label in g.wrong}
    bounds = {label: g.bounds[label] for g in gathered for label in g.bounds}
    for label, block in shard.items():  # this worker's own blocks as they are, not as read: a read may be wrong
        if label in y:
            wrong[label] = _known_wrong(block, _read(block, flagged), flagged)
            y[label] = np.where(wrong[label], 0.0, _read(block, flagged))
    words = _all_words(job)
    gain = max((rebuild_gain(word.code) for word in words if word.code.p), default=1.0)
    erased_found: set[Label] = set()
    located: set[Label] = set()
    failures: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for _ in range(2 * len(words)):
        changed = False
        for w, word in enumerate(words):
            if flagged.size == 0 or word.code.p == 0:
                continue
            if any(m not in y for m in word.members):
                failures[w] = (
                    np.arange(flagged.size),
                    np.zeros(flagged.size, bool),
                    np.ones((word.code.n, flagged.size), bool),
                )
                continue
            values = np.stack([y[m] for m in word.members])
            h = word.code.check_matrix
            spread = np.stack([variance[m] for m in word.members])
            tau = noise.LAMBDA * np.sqrt((h**2) @ spread) + gamma_wide(word.code.n + 1) * (np.abs(h) @ np.abs(values))
            erased = {a: np.flatnonzero(wrong[m]) for a, m in enumerate(word.members)}
            syndrome = h.astype(WIDE) @ values.astype(WIDE)
            verdict = decode_entries(word.code, syndrome, tau, erased)
            failures.pop(w, None)
            if verdict.clean:
                continue
            good = ~verdict.failed
            for a, member in enumerate(word.members):
                hits = verdict.bad[a] & good
                if hits.any():
                    at = verdict.entries[hits]
                    (erased_found if wrong[member][at].any() else located).add(member)
                    y[member][at] -= verdict.errors[a, hits]
                    wrong[member][at] = False
                    # A rebuilt entry carries its sources' drift, amplified by the rebuild: the
                    # other codeword through it (iterative decoding) must expect that much.
                    variance[member][at] = np.maximum(variance[member][at], gain**2 * spread[:, at].sum(axis=0))
                    changed = True
            if verdict.failed.any():
                at = verdict.entries[verdict.failed]
                # Ambiguous *and* within a few thresholds: a noise-level deviation (see _rederive);
                # anything larger may be a real error that two patterns explain, and is not guessed.
                calm = np.all(np.abs(syndrome[:, at]) <= NOISE_LEVEL * tau[:, at], axis=0)
                failures[w] = (at, verdict.ambiguous[verdict.failed] & calm, verdict.bad[:, verdict.failed])
        if not changed:
            break
    unrepairable: set[Label] = set()
    noise_level: set[int] = set()
    for w, (entries, ambiguous, bad) in failures.items():
        word = words[w]
        noise_level.update(int(e) for e in entries[ambiguous])
        if (~ambiguous).any():
            named = {word.members[a] for a in range(word.code.n) if bad[a, ~ambiguous].any()}
            unrepairable |= named or set(word.members)
    realigned = len(noise_level)
    if noise_level:
        _rederive(y, job, sorted(noise_level))
    fixed, repaired = dict(shard), set()
    largest = max((b for _, b in bounds.values()), default=0.0)
    worst_err = max((e for e, _ in bounds.values()), default=0.0)
    ok = not unrepairable
    for label, block in shard.items():
        if label not in y:
            continue
        old = block.values.reshape(-1)[flagged]
        new = y[label].astype(block.dtype) if flagged.size else old
        if np.array_equal(old, new, equal_nan=True) or label in unrepairable:
            continue
        values = block.values.copy()  # the old shard may still be read
        values.reshape(-1)[flagged] = new
        # A rebuilt entry is as far from the exact codeword as its sources times the rebuild's gain,
        # plus its rounding to the stored dtype: the rigorous ``err`` the block keeps. Bookkeeping
        # is measured from the values as decoded (once the whole grid verified; else it stays as it
        # was), before the write, which may be faulty (site ``(worker, 2, *label)``).
        err = max(block.err, gain * worst_err + (gain + 1) * unit_roundoff(block.dtype) * largest)
        rebuilt = CodedBlock.from_values(values, err, block.updates) if ok else replace(block, values=values, err=err)
        site = Site("scrub", job.layer, job.op, (job.worker, 2, *label))
        fixed[label] = stored(rebuilt, hook, site, job.attempt)
        repaired.add(label)
    report = {
        "checked": len({label for word in job.words for label in word.members}),
        "erased": sorted(list(k) for k in erased_found),
        "located": sorted(list(k) for k in located),
        "repaired": sorted(list(k) for k in repaired),
        "unrepairable": sorted(list(k) for k in unrepairable),
        "entries": int(flagged.size),
        "realigned": realigned,
        "aligned": 0,
    }
    report["ok"] = ok
    if flagged.size == 0 and job.align:
        fixed = aligned(shard, shares, job, hook)
        report["aligned"] = len(fixed)
    elif ok:  # every block verified: its bookkeeping may be measured again from its values
        fixed = {label: b if label in repaired else b.refreshed() for label, b in fixed.items()}
    return ScrubOutcome(fixed, report)


def aligned(shard: Shard, shares: Sequence[StoredShare], job: ScrubJob, hook: CorruptionHook) -> Shard:
    """A verified grid made an exact codeword again, so its drift does not grow without bound.

    Every update rounds every stored entry, so the grid drifts from an exact codeword like a random
    walk, and the checks' thresholds with it (``noise.entry_drift``: ``updates + 1`` roundings).
    With nothing flagged, every codeword's syndrome ``S = A W_sys - W_par`` (``H = [A, -I]``) is
    noise, and every worker already holds it: each parity block becomes ``W_par + S`` (for a grid
    with parity both ways, the parity columns' systematic rows first, then the parity rows with the
    corners' share of those corrections), which no block has to move for. The grid is then a
    codeword up to one rounding per entry: its blocks count ``updates = 0`` again and their
    rigorous ``err`` is that rounding plus the syndromes' own. A faulty share can at most
    move a parity entry by its (noise-level) threshold; each rewrite passes the fault hook like a
    repair's (site ``(worker, 2, *label)``).
    """
    words = job.checked
    corrections: dict[Label, np.ndarray] = {}
    largest_bound = 0.0
    # The other direction's codewords first: their parities are systematic members of the columns'.
    for i in [*range(len(job.words), len(words)), *range(len(job.words))]:
        word = words[i]
        summed = _summed(shares, i, word)
        if summed is None:
            continue
        syndrome, _, rigorous = summed
        largest_bound = max(largest_bound, float(rigorous.max(initial=0.0)))
        a_matrix, k = word.code.parity_matrix, word.code.k
        for q in range(word.code.p):
            change = syndrome[q].copy()
            for a in range(k):
                if word.members[a] in corrections:
                    change += a_matrix[q, a] * corrections[word.members[a]]
            corrections[word.members[k + q]] = change
    gain = 1.0 + max((float(np.abs(w.code.parity_matrix).sum(axis=1).max()) for w in words if w.code.p), default=0.0)
    out: Shard = {}
    for label, block in shard.items():
        if label not in corrections:
            out[label] = CodedBlock.from_values(block.values, 0.0, 0)  # systematic: defines the codeword
            continue
        values = (block.values.astype(WIDE) + corrections[label]).astype(block.dtype)
        err = unit_roundoff(block.dtype) * float(np.abs(values).max(initial=0.0)) + gain * largest_bound
        site = Site("scrub", job.layer, job.op, (job.worker, 2, *label))
        out[label] = stored(CodedBlock.from_values(values, err, 0), hook, site, job.attempt)
    return out


def _rederive(y: dict[Label, np.ndarray], job: ScrubJob, positions: list[int]) -> None:
    """At noise-level entries no error pattern explains uniquely: every parity re-derived there
    from the systematic values (a grid's parity rows, parity columns and corners; a block's copies
    from copy 0), so the stored values are a codeword at those entries in every direction."""
    at = np.asarray(positions)
    code = job.grid
    if code is None:  # copies of one block: copy 0 is the systematic one
        for word in job.words:
            for member in word.members[1:]:
                y[member][at] = y[word.members[0]][at]
        return
    kr, kc = code.kr, code.kc
    nr, nc = code.coded_shape
    sys = np.stack([np.stack([y[(a, b)][at] for b in range(kc)]) for a in range(kr)])  # kr x kc x e
    full = np.zeros((nr, nc, at.size))
    full[:kr, :kc] = sys
    full[:kr, kc:] = np.einsum("qb,abe->aqe", code.col_code.parity_matrix, sys)
    full[kr:, :] = np.einsum("qa,abe->qbe", code.row_code.parity_matrix, full[:kr, :])
    for a in range(nr):
        for b in range(nc):
            if a >= kr or b >= kc:
                y[(a, b)][at] = full[a, b]


@lru_cache(maxsize=256)
def rebuild_gain(code: SystematicMDSCode) -> float:
    """The largest 1-norm of a row of any rebuild matrix the decoder may use (up to ``p`` positions
    rebuilt from the rest): how much a rebuilt entry can amplify its sources' errors."""
    gain = 1.0
    for size in range(1, code.p + 1):
        for wanted in itertools.combinations(range(code.n), size):
            known = [a for a in range(code.n) if a not in wanted]
            gain = max(gain, float(np.abs(code.rebuild_matrix(known, list(wanted))).sum(axis=1).max()))
    return gain


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report of a scrub from every worker's: the union of what they found and repaired."""
    merged = {
        key: sorted({tuple(k) for r in reports for k in r[key]})
        for key in ("erased", "located", "repaired", "unrepairable")
    }
    out: dict = {key: [list(k) for k in value] for key, value in merged.items()}
    out["checked"] = max((r["checked"] for r in reports), default=0)
    out["entries"] = max((r["entries"] for r in reports), default=0)
    out["realigned"] = max((r["realigned"] for r in reports), default=0)
    out["aligned"] = sum(r.get("aligned", 0) for r in reports)
    out["ok"] = not out["unrepairable"]
    return out


def shard_of(outcome: ScrubOutcome) -> Shard:
    """The scrubbed shard (stays on its worker)."""
    return outcome.shard


def report_of(outcome: ScrubOutcome) -> dict:
    """Only the (small) report, for the client."""
    return outcome.report

"""Checking and repairing a layer's resident grid, entry by entry, where the blocks are.

The stored grid is a set of codewords of stored blocks (the block-columns under the row code; for
replication, each block's copies under a repetition code). A scrub has two stages, like a product:

1. every worker ships its share of each codeword's full-resolution syndrome ``sum_a H[:, a] W~_a``
   (float64) with the modelled variance of its noise per row (the stored values' drift from an
   exact codeword: encoding and every update round each entry once, ``kernels.noise``) and the
   entries it holds that are provably wrong (not finite, or beyond the block's rigorously tracked
   largest magnitude); every worker sums the shares and flags the entries whose syndrome exceeds
   its threshold (:func:`flag_entries`);
2. every worker sends its blocks' own values at the flagged entries (:func:`values_at`), and each
   decodes every codeword there from those values (``codes.entrywise``) and corrects its own
   blocks (:func:`repair_shard`): a wrong share can only flag entries, never change a value.

No block moves and no single task decides for the others. An entry two error patterns explain
equally well sits at the noise level: its systematic values are kept and its parities re-derived
from them. An entry beyond what the code can place is reported ``unrepairable`` (the caller
scrubs again, then rolls back).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..codes import ProductCode, SystematicMDSCode, gamma, unit_roundoff
from ..codes.entrywise import decode_entries
from ..faults.hook import CorruptionHook, Site
from . import noise
from .blocks import CodedBlock

Label = tuple[int, ...]
Shard = dict[Label, CodedBlock]


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


@dataclass(frozen=True)
class StoredShare:
    """A worker's share of every codeword's syndrome: ``syndromes[i]`` (``p x rows x cols``), the
    modelled noise variance per row ``variances[i]`` (``p x rows``), a rigorous per-row bound of its
    own float64 rounding ``rounding[i]``, and its provably wrong entries ``erased[(i, position)]``."""

    syndromes: dict[int, np.ndarray]
    variances: dict[int, np.ndarray]
    rounding: dict[int, np.ndarray]
    erased: dict[tuple[int, int], np.ndarray]


@dataclass(frozen=True)
class StoredValues:
    """A worker's blocks at the flagged entries of each codeword: per ``(word, position)`` its
    values there (float64, provably wrong ones 0), their drift variances and which are wrong."""

    values: dict[tuple[int, int], np.ndarray]
    variances: dict[tuple[int, int], np.ndarray]
    wrong: dict[tuple[int, int], np.ndarray]
    #: Per ``(word, position)``: the block's rigorous ``err`` and largest magnitude (a rebuilt
    #: entry's own bound is made of its sources').
    bounds: dict[tuple[int, int], tuple[float, float]]


@dataclass(frozen=True)
class ScrubOutcome:
    """A worker's shard after its scrub, and what the scrub found."""

    shard: Shard
    report: dict


def _provably_wrong(block: CodedBlock, values: np.ndarray) -> np.ndarray:
    """Not finite, or larger than the block's rigorously tracked largest magnitude."""
    with np.errstate(invalid="ignore"):
        return ~(np.abs(values) <= block.max_abs * (1 + 1e-12) + np.finfo(np.float64).tiny)


def stored_share(shard: Shard, job: ScrubJob, hook: CorruptionHook) -> StoredShare:
    """This worker's share of every codeword's syndrome (through the ``project`` fault site)."""
    syndromes, variances, rounding, erased = {}, {}, {}, {}
    for i, word in enumerate(job.words):
        h = word.code.check_matrix
        for a, label in enumerate(word.members):
            block = shard.get(label)
            if block is None:
                continue
            values = block.values.astype(np.float64)
            bad = np.flatnonzero(_provably_wrong(block, values))
            if bad.size:
                values.flat[bad] = 0.0
                erased[(i, a)] = bad
            drift = noise.block_stats(block, False, values.shape[1], block.dtype).drift
            largest = np.abs(values).max(axis=1, initial=0.0)
            share = h[:, a][:, None, None] * values[None]
            syndromes[i] = share if i not in syndromes else syndromes[i] + share
            variances[i] = (h[:, a] ** 2)[:, None] * drift[None] + variances.get(i, 0.0)
            rounding[i] = np.abs(h[:, a])[:, None] * largest[None] + rounding.get(i, 0.0)
        if i in syndromes:
            site = Site("project", job.layer, job.op, (job.worker, i))
            syndromes[i] = hook.apply(site, syndromes[i], job.attempt)
    return StoredShare(syndromes, variances, rounding, erased)


def flag_entries(shares: Sequence[StoredShare], job: ScrubJob) -> dict[int, np.ndarray]:
    """Per codeword, the flat entries (of one block) its summed syndrome does not vouch for."""
    u64 = unit_roundoff(np.float64)
    flagged: dict[int, np.ndarray] = {}
    for i, word in enumerate(job.words):
        parts = [s.syndromes[i] for s in shares if i in s.syndromes]
        erased = [idx for s in shares for (j, _), idx in s.erased.items() if j == i]
        loud = np.zeros(0, np.int64)
        if parts and word.code.p:
            syndrome = sum(parts[1:], parts[0].copy())
            variance = sum(s.variances[i] for s in shares if i in s.variances)
            rows_bound = sum(s.rounding[i] for s in shares if i in s.rounding)
            rigorous = gamma(len(word.members) + len(parts) + 1, np.float64) * rows_bound
            tau = noise.LAMBDA * np.sqrt(variance) + rigorous + u64 * np.abs(syndrome).max(axis=2)
            with np.errstate(invalid="ignore"):
                loud = np.flatnonzero(~np.all(np.abs(syndrome) <= tau[:, :, None], axis=0).ravel())
        if loud.size or erased:
            flagged[i] = np.unique(np.concatenate([loud, *erased]))
    if job.grid is not None and flagged:  # a grid's slices: every block at every flagged entry
        union = np.unique(np.concatenate(list(flagged.values())))
        flagged = dict.fromkeys(range(len(job.words)), union)
    return flagged


def values_at(shard: Shard, flagged: dict[int, np.ndarray], job: ScrubJob, hook: CorruptionHook) -> StoredValues:
    """This worker's stored values at the flagged entries (each through a ``project`` fault site)."""
    values, variances, wrong, bounds = {}, {}, {}, {}
    for i, idx in flagged.items():
        for a, label in enumerate(job.words[i].members):
            block = shard.get(label)
            if block is None:
                continue
            at = block.values.reshape(-1)[idx].astype(np.float64)
            at = hook.apply(Site("project", job.layer, job.op, (job.worker, i, a)), at, job.attempt)
            bad = _provably_wrong(block, at)
            rows = np.unravel_index(idx, block.shape)[0]
            drift = noise.block_stats(block, False, block.shape[1], block.dtype).drift
            values[(i, a)] = np.where(bad, 0.0, at)
            variances[(i, a)] = drift[rows]
            wrong[(i, a)] = bad
            bounds[(i, a)] = (float(block.err), float(block.max_abs))
    return StoredValues(values, variances, wrong, bounds)


def repair_shard(
    shard: Shard, flagged: dict[int, np.ndarray], gathered: Sequence[StoredValues], job: ScrubJob
) -> ScrubOutcome:
    """Decode every flagged entry of every codeword from the blocks' own values; correct this
    worker's blocks there. The report names every block found wrong (``erased``: provably wrong
    entries; ``located``), the ones this worker ``repaired``, ``unrepairable`` ones (some entry of
    their codeword is beyond what the code can place: the blocks wrong there, or if none could be
    named, the codeword) and the entries ``realigned`` (see the module docstring)."""
    fixed = dict(shard)
    erased_found, located, repaired, unrepairable = set(), set(), set(), set()
    entries = realigned = 0
    noise_level: set[int] = set()  # positions (into a grid's flagged entries) to re-derive
    gathered_values: dict[tuple[int, int], np.ndarray] = {key: g.values[key] for g in gathered for key in g.values}
    for i, idx in flagged.items():
        word = job.words[i]
        n, k, p = word.code.n, word.code.k, word.code.p
        found = {
            key: (g.values[key], g.variances[key], g.wrong[key], g.bounds[key])
            for g in gathered
            for key in g.values
            if key[0] == i
        }
        if len(found) != n or any(v[0].shape != idx.shape for v in found.values()):
            unrepairable |= set(word.members)  # some block's values are missing
            continue
        y = np.stack([found[(i, a)][0] for a in range(n)])
        variance = np.stack([found[(i, a)][1] for a in range(n)])
        wrong = {a: np.flatnonzero(found[(i, a)][2]) for a in range(n)}
        h = word.code.check_matrix
        tau = noise.LAMBDA * np.sqrt((h**2) @ variance) + gamma(n + 1, np.float64) * (np.abs(h) @ np.abs(y))
        syndrome = h @ y
        verdict = decode_entries(word.code, syndrome, tau, wrong) if p else None
        if verdict is None or verdict.clean:
            continue
        entries += int(verdict.entries.size)
        realign = verdict.failed & verdict.ambiguous & (k < n)
        if realign.any() and job.grid is not None:
            noise_level.update(int(e) for e in verdict.entries[realign])  # re-derived below, whole slice
        elif realign.any():
            verdict.bad[k:, realign] = True
            verdict.errors[k:, realign] = -syndrome[:, verdict.entries[realign]]  # H = [A, -I]
        realigned += int(realign.sum())
        failed = verdict.failed & ~realign
        for a, label in enumerate(word.members):
            if (verdict.bad[a] & ~realign).any():
                (erased_found if wrong[a].size else located).add(label)
        if failed.any():
            named = {word.members[a] for a in range(n) if (verdict.bad[a] & failed).any()}
            unrepairable |= named or set(word.members)
        # A rebuilt entry is as far from the exact codeword as its sources, times the rebuild's gain,
        # plus its rounding to the stored dtype: the rigorous ``err`` a repaired block keeps.
        worst_err = max(found[(i, a)][3][0] for a in range(n))
        largest = max(found[(i, a)][3][1] for a in range(n))
        gain = rebuild_gain(word.code)
        for a, label in enumerate(word.members):
            hits = verdict.bad[a] & ~failed
            if label not in fixed or not hits.any():
                continue
            block = fixed[label]
            err = max(block.err, gain * worst_err + (gain + 1) * unit_roundoff(block.dtype) * largest)
            values = block.values.copy()  # the old shard may still be read
            # The entry becomes the rebuilt value (what was read, minus its error), whatever was
            # stored: a value corrupted on its way here is rebuilt too, and stays what it was.
            values.reshape(-1)[idx[verdict.entries[hits]]] = (
                y[a, verdict.entries[hits]] - verdict.errors[a, hits]
            ).astype(block.dtype)
            fixed[label] = CodedBlock.from_values(values, err, block.updates)
            repaired.add(label)
    if noise_level and job.grid is not None:
        _rederive(fixed, job, next(iter(flagged.values())), sorted(noise_level), gathered_values, repaired)
    report = {
        "checked": len({label for word in job.words for label in word.members}),
        "erased": sorted(list(k) for k in erased_found),
        "located": sorted(list(k) for k in located),
        "repaired": sorted(list(k) for k in repaired - unrepairable),
        "unrepairable": sorted(list(k) for k in unrepairable),
        "entries": entries,
        "realigned": realigned,
    }
    report["ok"] = not report["unrepairable"]
    if report["ok"]:  # every block verified: its bookkeeping may be measured again from its values
        fixed = {label: CodedBlock.from_values(b.values, b.err, b.updates) for label, b in fixed.items()}
    return ScrubOutcome(fixed, report)


def _rederive(
    fixed: Shard,
    job: ScrubJob,
    union: np.ndarray,
    positions: list[int],
    values: dict[tuple[int, int], np.ndarray],
    repaired: set,
) -> None:
    """At entries whose syndrome sits at the noise level but fits no unique error: every parity
    block of the grid (parity rows, parity columns, corners) re-derived there from the systematic
    values, so the grid is a codeword at those entries in both directions (re-deriving the parities
    of one direction only would move the other's away from a codeword)."""
    code = job.grid
    assert code is not None
    kr, kc = code.kr, code.kc
    nr, nc = code.coded_shape
    at = np.asarray(positions)
    # values are keyed (word = block-column j, position = block-row a)
    sys = np.stack([np.stack([values[(j, a)][at] for j in range(kc)]) for a in range(kr)])  # kr x kc x e
    a_row, a_col = code.row_code.parity_matrix, code.col_code.parity_matrix  # pr x kr, pc x kc
    parity_cols = np.einsum("qb,abe->aqe", a_col, sys)  # kr x pc x e
    full = np.zeros((nr, nc, at.size))
    full[:kr, :kc] = sys
    full[:kr, kc:] = parity_cols
    full[kr:, :] = np.einsum("qa,abe->qbe", a_row, full[:kr, :])
    flat = union[at]
    for (a, b), block in list(fixed.items()):
        if (a >= kr or b >= kc) and len((a, b)) == 2:
            new = block.values.copy()
            new.reshape(-1)[flat] = full[a, b].astype(block.dtype)
            fixed[(a, b)] = CodedBlock.from_values(new, block.err, block.updates)
            repaired.add((a, b))


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
    out["ok"] = not out["unrepairable"]
    return out


def shard_of(outcome: ScrubOutcome) -> Shard:
    """The scrubbed shard (stays on its worker)."""
    return outcome.shard


def report_of(outcome: ScrubOutcome) -> dict:
    """Only the (small) report, for the client."""
    return outcome.report

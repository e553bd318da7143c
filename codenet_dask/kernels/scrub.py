"""Checking and repairing a layer's resident grid, entry by entry, where the blocks are.

The stored grid is a set of codewords of stored blocks (the block-columns under the row code; for
replication, each block's copies under a repetition code). Every worker ships its share of each
codeword's full-resolution syndrome ``sum_a H[:, a] W~_a`` (float64) with the modelled variance of
its noise per row (the stored values' drift from an exact codeword: encoding and every update round
each entry once, ``kernels.noise``), and entries it holds that are provably wrong (not finite, or
beyond the block's rigorously tracked largest magnitude). Every worker then
decodes every codeword itself (``codes.entrywise``) and corrects its own blocks at the entries
found wrong, so a stored error is repaired within one scrub, no block moves, and no single task
decides for the others. An entry beyond what the code can place is reported ``unrepairable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..codes import SystematicMDSCode, gamma, unit_roundoff
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
    worker: int
    words: tuple[StoredWord, ...]


@dataclass(frozen=True)
class StoredShare:
    """A worker's share of every codeword's syndrome: ``syndromes[i]`` (``p x rows x cols``), the
    modelled noise variance per row ``variances[i]`` (``p x rows``), a rigorous per-row bound of its
    own float64 rounding ``rounding[i]``, and its non-finite entries ``erased[(i, position)]``."""

    syndromes: dict[int, np.ndarray]
    variances: dict[int, np.ndarray]
    rounding: dict[int, np.ndarray]
    erased: dict[tuple[int, int], np.ndarray]


@dataclass(frozen=True)
class ScrubOutcome:
    """A worker's shard after its scrub, and what the scrub found."""

    shard: Shard
    report: dict


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
            # Provably wrong: not finite, or larger than the block's rigorously tracked magnitude.
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(~(np.abs(values) <= block.max_abs * (1 + 1e-12) + np.finfo(np.float64).tiny))
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
            syndromes[i] = hook.apply(site, syndromes[i], 0)
    return StoredShare(syndromes, variances, rounding, erased)


def scrub_shard(shard: Shard, shares: Sequence[StoredShare], job: ScrubJob, hook: CorruptionHook) -> ScrubOutcome:
    """Decode every codeword from all workers' shares; correct this worker's blocks where wrong.

    The report names every block found wrong (``erased``: non-finite entries; ``located``), the
    ones this worker ``repaired``, and ``unrepairable`` ones (some entry of their codeword is beyond
    what the code can place: then every block wrong there, or if none could be named, the codeword).
    """
    fixed = dict(shard)
    erased_found, located, repaired, unrepairable = set(), set(), set(), set()
    entries = realigned = 0
    u64 = unit_roundoff(np.float64)
    for i, word in enumerate(job.words):
        parts = [s.syndromes[i] for s in shares if i in s.syndromes]
        if not parts or word.code.p == 0:
            continue
        syndrome = sum(parts[1:], parts[0].copy())
        variance = sum(s.variances[i] for s in shares if i in s.variances)
        rows_bound = sum(s.rounding[i] for s in shares if i in s.rounding)
        rigorous = gamma(len(word.members) + len(parts) + 1, np.float64) * rows_bound + u64 * np.abs(syndrome).max(
            axis=2
        )
        tau = np.broadcast_to((noise.LAMBDA * np.sqrt(variance) + rigorous)[:, :, None], syndrome.shape)
        erased = {a: idx for s in shares for (j, a), idx in s.erased.items() if j == i}
        verdict = decode_entries(word.code, syndrome, tau, erased)
        if verdict.clean:
            continue
        entries += int(verdict.entries.size)
        for a, label in enumerate(word.members):
            if verdict.bad[a].any():
                (erased_found if a in erased else located).add(label)
        # An entry two error patterns explain equally well sits at the noise level: its systematic
        # values are kept and its parities re-derived from them (with H = [A, -I], parity q gains
        # syndrome q), so the grid is a codeword there again; beyond capacity it is unrepairable.
        realign = verdict.failed & verdict.ambiguous & (word.code.k < word.code.n)
        if realign.any():
            for q in range(word.code.p):
                verdict.bad[word.code.k + q, realign] = True
                verdict.errors[word.code.k + q, realign] = -syndrome.reshape(word.code.p, -1)[
                    q, verdict.entries[realign]
                ]
            realigned += int(realign.sum())
        failed = verdict.failed & ~realign
        if failed.any():
            named = {word.members[a] for a in range(word.code.n) if (verdict.bad[a] & failed).any()}
            unrepairable |= named or set(word.members)
        good = ~failed
        for a, label in enumerate(word.members):
            hits = verdict.bad[a] & good
            if label not in fixed or not hits.any():
                continue
            block = fixed[label]
            values = block.values.astype(np.float64)  # a copy: the old shard may still be read
            flat = values.reshape(-1)
            flat[erased.get(a, [])] = 0.0  # left out of the syndrome: its error is minus its true value
            flat[verdict.entries[hits]] -= verdict.errors[a, hits]
            fixed[label] = CodedBlock.from_values(values.astype(block.dtype), block.err, block.updates)
            repaired.add(label)
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


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report of a scrub from every worker's: the union of what they found and repaired."""
    merged = {
        key: sorted({tuple(k) for r in reports for k in r[key]})
        for key in ("erased", "located", "repaired", "unrepairable")
    }
    out: dict = {key: [list(k) for k in value] for key, value in merged.items()}
    out["checked"] = max((r["checked"] for r in reports), default=0)
    out["entries"] = max((r["entries"] for r in reports), default=0)
    out["realigned"] = max((r.get("realigned", 0) for r in reports), default=0)
    out["ok"] = not out["unrepairable"]
    return out


def shard_of(outcome: ScrubOutcome) -> Shard:
    """The scrubbed shard (stays on its worker)."""
    return outcome.shard


def report_of(outcome: ScrubOutcome) -> dict:
    """Only the (small) report, for the client."""
    return outcome.report

"""Checking an update's factors across blocks, before a wrong one hides in the weights.

Every coded block encodes its own factors of ``W~ -= lr D~ X~^T`` (``shards.update_and_share``):
block ``(a, b)`` uses row factor ``D~_a`` and column factor ``X~_b``. Down a block-column the row
factors the blocks used form a codeword of the row code, along a block-row the column factors one
of the column code, and a replicated block's copies all use the same two. A factor that a soft
error spoilt in one block leaves that block's update wrong by ``lr e x^T``: tiny next to the
weights, so a scrub of the stored grid (whose noise is a rounding of every weight per update)
cannot see it, yet coherent along its rows, so every later product is many times its own
roundoff off. (A scrub that finds nothing then re-derives the parities from the systematic blocks
and the error is part of the codeword for good: the Monte Carlo found exactly this.)

So every update also ships, per block and factor, the factor's projection on a random batch
vector (:func:`check_vector`: ``D~ r``, one value per row of the block, in float64 for float32
factors and in long double for float64 ones, so it adds no rounding worth the name) with a
rigorous bound of its distance from the exact encoding of the pieces as computed: zero rounding
for a systematic piece but :data:`AGREE` units (two workers' activations may differ in the last
bits), the encoding's ``gamma`` for a parity one. Every worker decodes those codewords entry by
entry (``codes.entrywise``: an entry is a row of ``D~``, a column of ``X~``) and marks the rows and
columns of its own blocks that a wrong factor touched (``CodedBlock.suspect``): products take them
as erasures, the next scrub rebuilds them. A factor entry the code cannot place marks every member
there: the product is beyond what the code corrects, and the scrub between its attempts rebuilds
the entries through the other direction's codewords where it can (else the run rolls back). The
check is a fault site of its own (``scrub``, block ``(worker, 3, word)``): a faulty check marks too
much (a rebuild) or too little (a second fault, in the same worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from ..codes import SystematicMDSCode, gamma, unit_roundoff
from ..codes.entrywise import decode_entries
from ..faults.hook import CorruptionHook, Site
from .blocks import CodedBlock, Suspect
from .wide import WIDE, gamma_wide, pair, unpair

Label = tuple[int, ...]
Shard = dict[Label, CodedBlock]

#: Units of roundoff two workers' computations of the same factor piece may differ by (the same
#: activation on different CPUs or BLAS builds); on one machine they agree bit for bit.
AGREE = 4.0

#: Sides of a block's update: its row factor ``D~`` (entries: the block's rows) and its column
#: factor ``X~`` (entries: its columns).
ROWS, COLS = 0, 1


@dataclass(frozen=True)
class FactorWord:
    """One codeword of update factors: the blocks whose factor on ``side`` it is made of, in
    code position order."""

    code: SystematicMDSCode
    members: tuple[Label, ...]
    side: int


@dataclass(frozen=True)
class FactorShare:
    """A worker's factors as its blocks used them: per ``(label, side)`` the projection (a
    long double ``wide.pair``, ``2 x entries``) and a rigorous bound of its distance from the exact
    encoding of the clean pieces (``entries``)."""

    projections: dict[tuple[Label, int], np.ndarray]
    bounds: dict[tuple[Label, int], np.ndarray]


@dataclass(frozen=True)
class UpdateOutcome:
    """A worker's shard after its update, and its factors' share (what the other workers fetch;
    None: the update was skipped, ``shards.update_and_share``)."""

    shard: Shard
    share: FactorShare | None


@dataclass(frozen=True)
class CheckJob:
    """What one worker's factor check needs: the codewords, and its own blocks."""

    layer: str
    op: int
    worker: int
    words: tuple[FactorWord, ...]


def check_vector(seed: int, batch: int) -> np.ndarray:
    """The random batch vector ``r`` of one update (Gaussian: no fault cancels in ``e r`` but by
    measure-zero chance)."""
    return np.random.default_rng(seed).standard_normal(batch)


class PieceSizes:
    """``|piece| @ |r|`` of the clean factor pieces, each computed once per worker (every block of a
    worker activates the same clean pieces; their faults are in the values as used), and the
    projected bounds built from them."""

    def __init__(self, r: np.ndarray) -> None:
        self.r, self.r_abs = r, np.abs(r)
        self._sizes: dict[tuple[int, int], np.ndarray] = {}

    def of(self, key: tuple[int, int], clean: np.ndarray) -> np.ndarray:
        """Of piece ``key`` (side, index), computed from ``clean`` the first time."""
        if key not in self._sizes:
            self._sizes[key] = np.abs(clean).astype(np.float64) @ self.r_abs
        return self._sizes[key]

    @staticmethod
    def bound(sizes: Sequence[np.ndarray], coeffs: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
        """The projected bound of a factor's distance from the exact encoding of the clean pieces:
        ``AGREE u |piece| |r|`` for a systematic one (``coeffs`` None, one piece), and for a parity
        one the encoding's ``gamma_{k+1} sum_i |c_i| |piece_i| |r|``, one unit more for the
        coefficients rounded to ``dtype`` (the check uses them unrounded), and the pieces' ``AGREE``."""
        u = unit_roundoff(dtype)
        if coeffs is None:
            return AGREE * u * sizes[0]
        spread = np.abs(coeffs).astype(np.float64) @ np.stack(sizes)
        return (gamma(len(coeffs) + 1, dtype) + (1 + AGREE) * u) * spread


def share(used: Sequence[tuple[tuple[Label, int], np.ndarray, np.ndarray]], r: np.ndarray) -> FactorShare:
    """A worker's factors projected on ``r``: ``used`` holds per factor its key ``(label, side)``,
    its values as used and their projected bound (:meth:`PieceSizes.bound`). All of them go through
    one product, in float64 (BLAS) for float32 factors and in long double for float64 ones: its
    rounding is ~2**-29 resp. 2**-11 of the factors' own; the bound gains it."""
    if not used:
        return FactorShare({}, {})
    values = np.concatenate([u for _, u, _ in used])
    bound = np.concatenate([b for _, _, b in used])
    if values.dtype.itemsize < 8:
        projection = (values.astype(np.float64) @ r).astype(WIDE)
        error = gamma(r.size + 1, np.float64)
    else:
        projection = np.einsum("ij,j->i", values.astype(WIDE), r.astype(WIDE))
        error = gamma_wide(r.size + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        total = bound * (1 + 1e-12) + error * (np.abs(values).astype(np.float64) @ np.abs(r))
    ends = np.cumsum([u.shape[0] for _, u, _ in used])[:-1]
    keys = [key for key, _, _ in used]
    projections = dict(zip(keys, (pair(p) for p in np.split(projection, ends))))
    return FactorShare(projections, dict(zip(keys, np.split(total, ends))))


def share_of(outcome: UpdateOutcome) -> FactorShare | None:
    """Only the factors' share (small: what every worker's check fetches)."""
    return outcome.share


def marked(outcome: UpdateOutcome, shares: Sequence[FactorShare | None], job: CheckJob, hook: CorruptionHook) -> Shard:
    """The updated shard with every row and column of its blocks that some wrong factor touched
    marked (``CodedBlock.suspect``); see the module docstring. Words of one code and side are
    decoded together (one ``decode_entries`` over all their entries). A skipped update (every
    worker's is skipped alike: the same gate) has nothing to check."""
    shard = outcome.shard
    if any(share is None for share in shares):
        return shard
    present = cast(Sequence[FactorShare], shares)
    projections = {key: value for share in present for key, value in share.projections.items()}
    bounds = {key: value for share in present for key, value in share.bounds.items()}
    groups: dict[tuple[int, int], list[int]] = {}
    for i, word in enumerate(job.words):
        if word.code.p and any(label in shard for label in word.members):
            groups.setdefault((id(word.code), word.side), []).append(i)
    marks: dict[Label, list[Suspect]] = {}
    for indices in groups.values():
        words = [job.words[i] for i in indices]
        sites = [Site("scrub", job.layer, job.op, (job.worker, 3, i)) for i in indices]
        for word, wrong in zip(words, _wrong_entries(words, projections, bounds, hook, sites)):
            for a, label in enumerate(word.members):
                if label in shard and wrong[a].any():
                    block = shard[label]
                    rows, cols = np.zeros(block.shape[0], bool), np.zeros(block.shape[1], bool)
                    (rows if word.side == ROWS else cols)[wrong[a]] = True
                    marks.setdefault(label, []).append(Suspect(rows, cols))
    if not marks:
        return shard
    out = dict(shard)
    for label, found in marks.items():
        suspect = shard[label].suspect
        for mark in found:
            suspect = mark.union(suspect)
        out[label] = replace(shard[label], suspect=suspect)
    return out


def _wrong_entries(
    words: Sequence[FactorWord],
    projections: dict[tuple[Label, int], np.ndarray],
    bounds: dict[tuple[Label, int], np.ndarray],
    hook: CorruptionHook,
    sites: Sequence[Site],
) -> list[np.ndarray]:
    """Per word (of one code and side) and position, the entries its factor is wrong at
    (``n x entries``): placed by the code, not finite, or (an entry the code cannot place) every
    position there. Every worker's share is there: the plan hands each check all of them."""
    code = words[0].code
    n, h = code.n, code.check_matrix
    keys = [[(label, word.side) for label in word.members] for word in words]
    values = [np.stack([unpair(projections[k]) for k in ks]) for ks in keys]
    beta = [np.stack([bounds[k] for k in ks]) for ks in keys]
    sizes = [v.shape[1] for v in values]
    y, b = np.concatenate(values, axis=1), np.concatenate(beta, axis=1)
    erased = ~np.isfinite(y) | ~np.isfinite(b)
    y, b = np.where(erased, 0, y), np.where(erased, 0.0, b)
    syndromes = np.split((h.astype(WIDE) @ y).astype(np.float64), np.cumsum(sizes)[:-1], axis=1)
    syndrome = np.concatenate([hook.apply(site, part, 0) for site, part in zip(sites, syndromes)], axis=1)
    tau = np.abs(h) @ b + gamma_wide(n + 1) * (np.abs(h) @ np.abs(y).astype(np.float64))
    verdict = decode_entries(code, syndrome, tau, {a: np.flatnonzero(erased[a]) for a in range(n)})
    wrong = erased.copy()
    wrong[:, verdict.entries] |= verdict.bad
    wrong[:, verdict.entries[verdict.failed]] = True
    return np.split(wrong, np.cumsum(sizes)[:-1], axis=1)

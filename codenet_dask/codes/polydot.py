"""Generalized PolyDot (GPD) codes: one polynomial evaluation of W per worker, any K results decode.

Dutta, Bai, Jeong, Low, Grover (ISIT 2018; arXiv 1811.10751). W is split ``m x n`` into blocks
``W[i, j]`` and worker p (of P) stores one evaluation of the matrix polynomial
``W~(a) = sum_ij W[i, j] a^(n i + j)`` at its own point ``a_p``: 1/(mn) of W. The three products
of a training step all run on that one stored piece, which is never re-encoded:

- forward ``S = W X``: worker p gets ``X~_p = sum_k X[k] a_p^(n - 1 - k)`` and returns ``W~_p X~_p``,
  the value at ``a_p`` of a polynomial of degree ``mn + n - 2`` whose coefficient ``n i + n - 1`` is
  ``S[i]`` (the other coefficients are "garbage", aligned so that they share exponents): any
  ``K_f = mn + n - 1`` results decode S (the paper's recovery threshold, verified here by degree
  counting and by ``tests/test_polydot.py``).
- backward ``C = Wᵀ D``: worker p gets ``D~_p = sum_l D[l] a_p^(n (m - 1 - l))`` and returns
  ``W~_pᵀ D~_p``; ``C[j]`` is coefficient ``n (m - 1) + j`` of a polynomial of degree ``2mn - n - 1``,
  so the same encoding needs ``K_b = 2mn - n`` results (more than ``K_f`` once m >= 2: with W~'s
  exponents fixed by the forward alignment, no choice of D~'s exponents aligns the backward garbage).
- update ``W <- W - lr D Xᵀ``: worker p gets ``U_p = sum_i D[i] a_p^(n i)``, ``V_p = sum_j X[j] a_p^j``
  and adds ``-lr U_p V_pᵀ`` to its piece, which is exactly the new W's evaluation: the stored
  pieces stay a codeword of the ``[P, mn]`` weight code.

Each product's results are a codeword of a ``[P, K]`` evaluation (generalised Reed–Solomon) code, so
``e`` wrong results at unknown positions and ``s`` at known positions (NaN/Inf, missing, straggling)
are corrected while ``2e + s <= P - K``.

Real arithmetic: the paper's real evaluation points make the decoding Vandermonde matrices lose
digits exponentially in K (``workflows/polydot_conditioning.py`` measures it). The default
construction ``"circle"`` evaluates at the P-th roots of unity instead — the complex form of the
rotation-matrix embedding of Ramamoorthy & Tang (arXiv 1910.06515): two real half-blocks are paired
into one complex block (``W[i, j] = [A | B] -> A + iB``, the same storage), the worker's product is a
complex one (twice the real multiply-adds) and the decoding matrices are partial DFT matrices.
``"chebyshev"`` keeps the paper's real form at Chebyshev points, for comparison.

Detection is statistical with a stated false-alarm probability, never a guessed tolerance: the
caller gives, per result entry, an upper bound ``sigma`` on the standard deviation of each real
component of its roundoff (:func:`product_scale` computes it from the operands). Assuming roundoff
errors of different workers are independent, zero-mean, with Gaussian tails, a syndrome entry of the
clean results exceeds ``lam * sqrt(sum |H|^2 sigma^2)`` with probability ``2 Phi(-lam)``; ``lam`` is
chosen so that the union over every entry of a check stays below ``false_alarm`` (1e-9 by default).
The decoder's own float64 roundoff is added as a rigorous term. An error pattern is accepted only if
it leaves the remaining results consistent by that test; two patterns within capacity that both
explain the results are reported (``ambiguous``), never resolved silently.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.special import ndtri

from ..errors import CodeParameterError, IllConditionedCodeError, ShapeMismatchError
from .mds import MAX_CONDITION
from .roundoff import require_real_float, unit_roundoff

Construction = Literal["circle", "chebyshev"]
Status = Literal["clean", "corrected", "uncorrectable"]
Direction = Literal["forward", "backward", "weights"]

#: Per-check probability that clean results raise an alarm (under the noise model above).
FALSE_ALARM = 1e-9
#: Certification inverts every decoding subset up to this many; beyond, it samples.
EXHAUSTIVE_SUBSETS = 20_000
#: Random subsets a sampled certificate checks (plus every contiguous arc of missing points).
SAMPLED_SUBSETS = 4_000
#: Error supports of one size tried one by one; beyond, candidates come from peeling and Prony.
EXHAUSTIVE_SUPPORTS = 2_000
#: Random combinations of the entries the search for wrong results runs on (then confirmed in full).
SEARCH_PROJECTIONS = 8


def evaluation_points(workers: int, construction: Construction) -> np.ndarray:
    """The P evaluation points: roots of unity (complex) or Chebyshev points in [-1, 1] (real)."""
    k = np.arange(workers)
    if construction == "circle":
        return np.exp(2j * np.pi * k / workers)
    if construction == "chebyshev":
        return np.cos((2 * k + 1) * np.pi / (2 * workers))
    raise CodeParameterError(f"unknown construction {construction!r}; use 'circle' or 'chebyshev'")


# -- certified conditioning -------------------------------------------------------------------
@dataclass(frozen=True)
class ConditionCertificate:
    """Worst 2-norm condition number of the decoding matrices one code's decoder may use.

    The decoder solves least squares on ``subset_size`` or more results; adding rows never lowers
    the smallest singular value, so ``worst = sigma_max(G) / min_S sigma_min(G_S)`` over the subsets
    S of exactly ``subset_size`` rows bounds every decode. ``exhaustive``: every subset was checked
    (up to rotations, which leave the circle's condition numbers unchanged); otherwise ``checked``
    random subsets plus every contiguous arc, and :meth:`exceed_fraction` states the confidence.
    """

    worst: float
    subset_size: int
    subsets: int
    checked: int
    exhaustive: bool

    def exceed_fraction(self, confidence: float = 0.99) -> float:
        """At most this fraction of subsets is worse than ``worst``, with the given confidence."""
        if self.exhaustive:
            return 0.0
        return min(1.0, math.log(1.0 / (1.0 - confidence)) / self.checked)

    def describe(self) -> str:
        """One line for tables and error messages."""
        if self.exhaustive:
            return f"{self.worst:.3g} (all {self.subsets} subsets of {self.subset_size})"
        return (
            f"{self.worst:.3g} (sampled {self.checked} of {self.subsets:.3g} subsets of {self.subset_size}; "
            f"< {self.exceed_fraction():.1e} of them worse at 99% confidence)"
        )


def power_table(workers: int, construction: Construction, exponents: np.ndarray) -> np.ndarray:
    """``a_p ** e`` for every worker p and exponent e, to the last bit.

    numpy's complex power loses ~20 ulps; on the circle the angle ``2 pi (p e mod P) / P`` is exact
    integer arithmetic first, so float64 codes stay consistent at float64 roundoff.
    """
    return _wide_power_table(workers, construction, np.asarray(exponents)).astype(
        np.complex128 if construction == "circle" else np.float64
    )


def _wide_power_table(workers: int, construction: Construction, exponents: np.ndarray) -> np.ndarray:
    """:func:`power_table` in long double."""
    index = np.arange(workers)
    pi = np.arccos(np.longdouble(-1))
    if construction == "circle":
        angle = (np.outer(index, exponents) % workers).astype(np.longdouble) * (2 * pi / workers)
        return np.cos(angle) + 1j * np.sin(angle).astype(np.clongdouble)
    points = np.cos((2 * index.astype(np.longdouble) + 1) * pi / (2 * workers))
    return points[:, None] ** exponents[None, :]


def _vandermonde(points: np.ndarray, k: int) -> np.ndarray:
    construction: Construction = "circle" if np.iscomplexobj(points) else "chebyshev"
    return _generator(len(points), construction, k)


@lru_cache(maxsize=256)
def _generator(workers: int, construction: Construction, k: int) -> np.ndarray:
    """``a_p ** t`` for t < k (read-only, built once: decoders index it for every support tried)."""
    table = power_table(workers, construction, np.arange(k))
    table.flags.writeable = False
    return table


@lru_cache(maxsize=256)
def _wide_generator(workers: int, construction: Construction, k: int) -> np.ndarray:
    table = _wide_power_table(workers, construction, np.arange(k))
    table.flags.writeable = False
    return table


def _removal_sets(workers: int, removed: int, rotations: bool, seed: int) -> tuple[np.ndarray, bool]:
    """Rows of removed positions to check, and whether they are all there are (up to rotation)."""
    count = math.comb(workers - 1, removed - 1) if rotations else math.comb(workers, removed)
    if count <= EXHAUSTIVE_SUBSETS:
        if rotations:  # every removal set rotates to one holding point 0
            rest = np.array(list(itertools.combinations(range(1, workers), removed - 1)), dtype=int)
            return np.hstack([np.zeros((len(rest), 1), dtype=int), rest.reshape(len(rest), removed - 1)]), True
        return np.array(list(itertools.combinations(range(workers), removed)), dtype=int).reshape(-1, removed), True
    rng = np.random.default_rng(seed)
    sampled = np.argsort(rng.random((SAMPLED_SUBSETS, workers)), axis=1)[:, :removed]
    arcs = (np.arange(workers)[:, None] + np.arange(removed)[None, :]) % workers  # the known worst kind
    return np.vstack([sampled, arcs]), False


@lru_cache(maxsize=4096)
def _certify(workers: int, construction: Construction, k: int, subset_size: int) -> ConditionCertificate:
    g = _vandermonde(evaluation_points(workers, construction), k)
    removed = workers - subset_size
    removals, exhaustive = _removal_sets(
        workers, removed, construction == "circle" and removed >= 1, workers * 1000 + k * 10 + subset_size
    )
    gone = np.zeros((len(removals), workers), dtype=bool)
    np.put_along_axis(gone, removals, True, axis=1)
    kept = np.argsort(gone, axis=1, kind="stable")[:, :subset_size]  # kept positions, in order
    # sigma_min^2 as the smallest eigenvalue of the Gram matrix (batched, fast); the few worst
    # subsets are then redone with an SVD, so the certificate is exact to float64.
    gram_min = np.empty(len(kept))
    for start in range(0, len(kept), 4096):
        stacked = g[kept[start : start + 4096]]
        gram = np.swapaxes(stacked.conj(), -1, -2) @ stacked
        gram_min[start : start + 4096] = np.linalg.eigvalsh(gram)[:, 0]
    suspects = kept[np.argsort(gram_min)[:16]]
    smallest = float(np.min(np.linalg.svd(g[suspects], compute_uv=False)[:, -1]))
    worst = float(np.linalg.norm(g, 2)) / smallest if smallest > 0 else math.inf
    return ConditionCertificate(worst, subset_size, math.comb(workers, removed), len(kept), exhaustive)


# -- the decoder's verdict --------------------------------------------------------------------
@dataclass(frozen=True)
class PolyDotCheck:
    """The verdict on one product's P results.

    ``erased``: positions known bad before decoding (missing or non-finite); ``located``: wrong
    positions found from the results; ``ambiguous``: two error patterns within capacity explain the
    results (then ``status`` is uncorrectable: recompute). ``excess``: largest ``|syndrome|`` /
    threshold of the error-free hypothesis (> 1 means something is wrong). ``search``: how the
    located pattern was found and shown unique — "exhaustive" (every pattern of its size tried) or
    "algebraic" (peeling/Prony candidates, unique by the distance argument in the module notes).
    """

    status: Status
    erased: tuple[int, ...]
    located: tuple[int, ...]
    ambiguous: bool
    excess: float
    sigmas: float
    search: Literal["none", "exhaustive", "algebraic"] = "none"

    @property
    def bad(self) -> tuple[int, ...]:
        """Every position whose result was not used."""
        return tuple(sorted(self.erased + self.located))

    def to_dict(self) -> dict[str, object]:
        """Plain data for reports."""
        return {
            "status": self.status,
            "erased": list(self.erased),
            "located": list(self.located),
            "ambiguous": self.ambiguous,
            "excess": self.excess,
            "sigmas": self.sigmas,
            "search": self.search,
        }


@dataclass(frozen=True)
class PolyDotDecode:
    """A decoded product (``values`` is None when uncorrectable), its verdict and its noise scale.

    ``scale`` bounds the standard deviation of each output entry's error, propagated from the
    results' ``sigma`` through the decoding matrix: what the next check may assume of it.
    """

    values: np.ndarray | None = field(repr=False)
    check: PolyDotCheck
    scale: np.ndarray | None = field(default=None, repr=False)


# -- one [P, K] evaluation code: fit tests, location, decoding --------------------------------
def _magnitudes(z: np.ndarray) -> np.ndarray:
    """``|Re| + |Im|``: an upper bound on |z| within sqrt 2, cheaper than the modulus."""
    if not np.iscomplexobj(z):
        return np.abs(z)
    return np.abs(z.real) + np.abs(z.imag)


def _scaled(z: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Results and scales divided per column by a power of two near the largest |entry|.

    Exact (no rounding), so every test is unchanged, and 1e300 results no longer overflow (nor
    1e-300 ones underflow). Columns already in a safe range are left alone (no copy).
    """
    peak = np.max(_magnitudes(z), axis=0)
    if np.all((peak < 1e100) & (peak > 1e-100) | (peak == 0)):
        return z, sigma
    _, exponent = np.frexp(np.where(peak > 0, peak, 1.0))
    factor = np.ldexp(1.0, -exponent)
    return z * factor, sigma * factor


@dataclass(frozen=True)
class EvaluationCode:
    """The ``[P, k]`` code one product's results form: values at the P points of a polynomial of
    degree < k with block coefficients. Fit tests, error location, least-squares decoding."""

    points: np.ndarray = field(repr=False)
    k: int
    max_erasures: int
    false_alarm: float

    @property
    def workers(self) -> int:
        return len(self.points)

    def generator(self) -> np.ndarray:
        return _vandermonde(self.points, self.k)

    def capacity(self, erasures: int) -> int:
        """Wrong results at unknown positions still correctable with this many erasures."""
        cost = erasures + max(0, erasures - self.max_erasures)  # beyond the budget an erasure costs 2
        return (self.workers - self.k - cost) // 2 if cost <= self.workers - self.k else -1

    def _sigmas(self, tests: int) -> float:
        return float(-ndtri(self.false_alarm / (2 * max(tests, 1))))

    def fit(
        self, z: np.ndarray, sigma: np.ndarray, used: Sequence[int], wide: bool = False, energy: bool = False
    ) -> tuple[bool, float, float, float]:
        """Whether the results at ``used`` are one codeword up to roundoff: (ok, excess, sigmas, energy).

        ``excess``: the largest |syndrome entry| / threshold; with ``energy``, also log10 of the sum
        of their squares (how much is left to explain, for ranking suspects; else -inf).

        The syndrome is the results' component outside the code (an orthonormal basis of the left
        null space of the used generator rows). ``wide``: compute it in long double (for float64
        data, whose roundoff float64 arithmetic could not resolve); else float64.
        """
        used = list(used)
        if len(used) <= self.k:
            return True, 0.0, 0.0, -math.inf
        g = self.generator()[used]
        q, _ = np.linalg.qr(g, mode="complete")
        basis = q[:, self.k :]
        zu, sig = _scaled(z[used], sigma[used])
        if wide:
            big = np.clongdouble if np.iscomplexobj(basis) or np.iscomplexobj(zu) else np.longdouble
            construction: Construction = "circle" if np.iscomplexobj(self.points) else "chebyshev"
            gw = _wide_generator(self.workers, construction, self.k)[used].astype(big)
            basis = basis.astype(big)
            # One refinement step: remove the part of the basis inside range(G) that float64 QR left
            # (~u kappa), solving the small normal equations; the leak drops to ~(u kappa)^2.
            leak = (gw.conj().T @ basis).astype(np.complex128 if big is np.clongdouble else np.float64)
            basis = basis - gw @ np.linalg.lstsq(g.conj().T @ g, leak, rcond=None)[0].astype(big)
            zu = zu.astype(big)
            u = float(np.finfo(np.longdouble).eps) / 2
        else:
            u = unit_roundoff(np.float64)
        check = basis.conj().T
        syndrome = check @ zu
        abs_check = np.abs(check).astype(np.float64)
        tau = np.sqrt(abs_check**2 @ sig**2)
        rounding = 4.0 * (len(used) + 2) * u * (abs_check @ _magnitudes(zu).astype(np.float64))
        parts = (syndrome.real, syndrome.imag) if np.iscomplexobj(syndrome) else (syndrome,)
        lam = self._sigmas(syndrome.size * len(parts))
        threshold = np.maximum(lam * tau + rounding, np.finfo(np.float64).tiny)
        ratios = [np.abs(part).astype(np.float64) / threshold for part in parts]
        excess = max(float(np.max(r)) for r in ratios)
        left = -math.inf
        if energy and excess > 0:
            left = 2 * math.log10(excess) + math.log10(sum(float(np.sum((r / excess) ** 2)) for r in ratios))
        return excess <= 1.0, excess, lam, left

    def _prony(self, z: np.ndarray, used: list[int], t: int) -> tuple[int, ...] | None:
        """Candidate t error positions from the syndromes' linear recurrence (locator polynomial)."""
        pts = self.points[used]
        r = len(used) - self.k
        if r < 2 * t:
            return None
        diffs = pts[:, None] - pts[None, :]
        np.fill_diagonal(diffs, 1.0)
        weights = 1.0 / np.prod(diffs, axis=1)  # dual GRS column multipliers
        mix = np.random.default_rng(t).standard_normal((z.shape[1], min(4, z.shape[1])))
        zp = np.nan_to_num(z[used] @ mix)
        syndromes = (weights[None, :] * pts[None, :] ** np.arange(r)[:, None]) @ zp  # (r, L)
        hankel = np.vstack(
            [np.stack([syndromes[i : i + t + 1, c] for i in range(r - t)]) for c in range(syndromes.shape[1])]
        )
        if not np.all(np.isfinite(hankel)):
            return None
        locator = np.linalg.svd(hankel)[2][-1].conj()
        if abs(locator[-1]) < 1e-12 * np.max(np.abs(locator)):
            return None
        roots = np.roots(locator[::-1])
        found = {used[int(np.argmin(np.abs(pts - root)))] for root in roots}
        return tuple(sorted(found)) if len(found) == t else None

    def _peel_order(self, z: np.ndarray, sigma: np.ndarray, base: list[int], count: int, wide: bool) -> list[int]:
        """Up to ``count`` positions, most suspect first: each round drops the one without which
        the rest has the least syndrome energy left. Large errors go first, so they cannot mask
        small ones; Prony then places what remains (:meth:`_candidates`)."""
        rest, order = list(base), []
        for _ in range(count):
            if len(rest) <= self.k + 1:
                break
            scores = [self.fit(z, sigma, [b for b in rest if b != a], wide, energy=True)[3] for a in rest]
            order.append(rest.pop(int(np.nanargmin(np.nan_to_num(scores, nan=np.inf)))))
        return order

    def _candidates(self, z: np.ndarray, base: list[int], t: int, peeled):
        """Error supports of size t worth testing, cheapest first.

        Prony for all t at once; then successive Prony — the j dominant errors first (Prony of
        size j), erased, and Prony for the t - j left — so a large error cannot hide small ones;
        last the greedy peeling order (``peeled()``, costly) and its completions by Prony.
        """
        whole = self._prony(z, base, t)
        if whole is not None:
            yield whole
        for j in range(1, t):
            dominant = self._prony(z, base, j)
            if dominant is not None:
                rest = self._prony(z, [a for a in base if a not in dominant], t - j)
                if rest is not None:
                    yield tuple(sorted({*dominant, *rest}))
        order = peeled()
        if len(order) >= t:
            yield tuple(sorted(order[:t]))
        for j in range(1, min(t, len(order) + 1)):
            rest = self._prony(z, [a for a in base if a not in order[:j]], t - j)
            if rest is not None:
                yield tuple(sorted({*order[:j], *rest}))

    def _prune(
        self, z: np.ndarray, sigma: np.ndarray, base: list[int], support: Sequence[int], wide: bool
    ) -> tuple[int, ...]:
        """Drop members of a fitting support whose result fits with the others (not wrong after all)."""
        support = list(support)
        for a in list(support):
            smaller = [b for b in support if b != a]
            if self.fit(z, sigma, [b for b in base if b not in smaller], wide)[0]:
                support = smaller
        return tuple(sorted(support))

    def locate(
        self,
        z: np.ndarray,
        sigma: np.ndarray,
        erased: Iterable[int],
        wide: bool = False,
        bound: np.ndarray | None = None,
    ) -> PolyDotCheck:
        """Classify the results: clean, corrected (``located`` + ``erased`` dropped) or uncorrectable.

        A result with a NaN/Inf entry, or (given ``bound``) an entry larger than any right result
        can have, is known wrong: an erasure. Patterns are tried by size; within capacity the
        smallest that fits wins, if it is the only one of its size (else ``ambiguous``).
        """
        finite = np.all(np.isfinite(z), axis=1) & np.all(np.isfinite(sigma), axis=1)
        if bound is not None:
            with np.errstate(invalid="ignore"):
                finite &= ~np.any(np.abs(z) > bound, axis=1)
        erased_t = tuple(sorted({int(a) for a in erased} | {int(a) for a in np.flatnonzero(~finite)}))
        if not np.all(finite):
            z = np.where(np.isfinite(z), z, 0.0)
        base = [a for a in range(self.workers) if a not in erased_t]
        capacity = self.capacity(len(erased_t))
        if capacity < 0:
            return PolyDotCheck("uncorrectable", erased_t, (), False, math.inf, 0.0)
        ok, excess, lam, _ = self.fit(z, sigma, base, wide)
        if ok:
            return PolyDotCheck("corrected" if erased_t else "clean", erased_t, (), False, excess, lam)
        if z.shape[1] > SEARCH_PROJECTIONS:
            # Search on a few seeded random combinations of the entries (cheap), accept only what
            # also fits at full resolution; only if that finds nothing, search at full resolution.
            mix = np.random.default_rng(z.shape[1]).standard_normal((z.shape[1], SEARCH_PROJECTIONS))
            projected = (np.nan_to_num(z @ mix), np.sqrt(sigma**2 @ mix**2))
            found = self._search(
                *projected, base, capacity, wide, lambda support: self._fits_without(z, sigma, base, support, wide)
            )
            if found is not None:
                return PolyDotCheck(found[0], erased_t, found[1], found[2], excess, lam, found[3])
        found = self._search(z, sigma, base, capacity, wide, lambda support: True)
        if found is not None:
            return PolyDotCheck(found[0], erased_t, found[1], found[2], excess, lam, found[3])
        return PolyDotCheck("uncorrectable", erased_t, (), False, excess, lam)

    def _fits_without(
        self, z: np.ndarray, sigma: np.ndarray, base: list[int], support: Sequence[int], wide: bool
    ) -> bool:
        return self.fit(z, sigma, [a for a in base if a not in support], wide)[0]

    def _search(
        self,
        z: np.ndarray,
        sigma: np.ndarray,
        base: list[int],
        capacity: int,
        wide: bool,
        confirm: Callable[[Sequence[int]], bool],
    ) -> tuple[Status, tuple[int, ...], bool, Literal["exhaustive", "algebraic"]] | None:
        """The smallest error support (within capacity) that fits, and is confirmed: (status, support,
        ambiguous, search), or None. ``confirm`` re-tests a support on the full results."""
        peeled = lru_cache(maxsize=1)(lambda: self._peel_order(z, sigma, base, capacity, wide))
        for t in range(1, capacity + 1):
            if math.comb(len(base), t) <= EXHAUSTIVE_SUPPORTS:
                fits = [
                    s
                    for s in itertools.combinations(base, t)
                    if self._fits_without(z, sigma, base, s, wide) and confirm(s)
                ]
                if len(fits) > 1:
                    return "uncorrectable", (), True, "exhaustive"
                if fits:
                    return "corrected", fits[0], False, "exhaustive"
                continue
            for candidate in self._candidates(z, base, t, peeled):
                if len(candidate) == t and self._fits_without(z, sigma, base, candidate, wide) and confirm(candidate):
                    pruned = self._prune(z, sigma, base, candidate, wide)
                    return "corrected", pruned if confirm(pruned) else candidate, False, "algebraic"
        return None

    def solve(
        self, z: np.ndarray, sigma: np.ndarray, used: Sequence[int], wanted: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients ``wanted`` from the results at ``used`` (least squares) and their noise scale."""
        used = list(used)
        rebuild = np.linalg.pinv(self.generator()[used])[list(wanted)]
        values = rebuild @ z[used]
        scale = np.sqrt(np.abs(rebuild) ** 2 @ sigma[used] ** 2)
        return values, scale


# -- the code object ---------------------------------------------------------------------------
def product_scale(a: np.ndarray, b: np.ndarray, result: np.ndarray | None = None, extra_terms: int = 0) -> np.ndarray:
    """Per-entry bound on the roundoff standard deviation of ``a @ b`` computed in a's precision.

    A dot product of length L commits about L roundings, each at most u times a partial sum; for
    data with random signs the partial sums stay near ``sqrt(sum |a_k b_k|^2)``, for same-signed data
    near the final ``|a @ b|``. The scale is ``u sqrt(L) max(those two)``, L counting the real
    multiply-adds per real output component plus ``extra_terms`` (roundings of encoding the operands).
    Cancellation-heavy data can exceed it; the check then raises a false alarm, never a silent error.
    The result's magnitude is capped by ``|a_i| |b_j|``: a wrong result cannot widen its own scale.
    """
    u = unit_roundoff(np.finfo(a.dtype).dtype)
    terms = a.shape[-1] * (2 if np.iscomplexobj(a) or np.iscomplexobj(b) else 1) + extra_terms
    abs_a, abs_b = np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)
    magnitude = np.sqrt(abs_a**2 @ abs_b**2)
    if result is not None:
        # Capped by Cauchy–Schwarz, so a wrong result cannot widen its own scale past what any
        # right one could have (and u sqrt(L) |error| is far below the error itself anyway).
        ceiling = np.linalg.norm(abs_a, axis=-1)[..., :, None] * np.linalg.norm(abs_b, axis=-2)[..., None, :]
        magnitude = np.maximum(magnitude, np.minimum(np.abs(result).astype(np.float64), ceiling))
    return u * math.sqrt(terms) * magnitude


def _cauchy_schwarz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|row_i(a)| |col_j(b)|`` widened by a rigorous roundoff margin: |(a @ b)_ij| never exceeds it."""
    rows = np.linalg.norm(a.astype(np.complex128 if np.iscomplexobj(a) else np.float64), axis=-1)
    cols = np.linalg.norm(b.astype(np.complex128 if np.iscomplexobj(b) else np.float64), axis=-2)
    margin = 1 + 4 * (2 * a.shape[-1] + 4) * unit_roundoff(np.finfo(a.dtype).dtype)
    return margin * rows[..., :, None] * cols[..., None, :]


@dataclass(frozen=True)
class PolyDotCode:
    """A Generalized PolyDot code: W split ``m x n``, one evaluation per worker; see the module notes.

    ``max_erasures``: results at known positions (NaN/Inf, missing, straggling) that cost one unit of
    redundancy each (beyond, two); None takes the most the certificate allows. Construction certifies
    the worst condition number of every decoding the three codes (weights, forward, backward) can
    need and refuses worse than ``max_condition``.

    >>> code = PolyDotCode(m=2, n=2, workers=12)
    >>> code.forward_threshold, code.backward_threshold, code.correctable_errors
    (5, 6, 3)
    >>> w = np.arange(32.0).reshape(4, 8); x = np.ones((8, 3))
    >>> pieces = code.encode_weights(w)                     # worker p stores pieces[p]
    >>> x_pieces = code.encode_forward_input(x)             # worker p gets x_pieces[p]
    >>> results = code.forward(pieces, x_pieces)            # worker p computes results[p]
    >>> scale = code.forward_scale(pieces, x_pieces, results, code.encoding_drift(w))
    >>> decoded = code.decode_forward(results, scale)
    >>> decoded.check.status, bool(np.allclose(decoded.values, w @ x))
    ('clean', True)
    >>> results[4, 0, 0] += 1.0  # one wrong result at an unknown position
    >>> decoded = code.decode_forward(results, scale)
    >>> decoded.check.status, decoded.check.located, bool(np.allclose(decoded.values, w @ x))
    ('corrected', (4,), True)
    """

    m: int
    n: int
    workers: int
    construction: Construction = "circle"
    max_erasures: int | None = None
    false_alarm: float = FALSE_ALARM
    max_condition: float = MAX_CONDITION
    _erasures: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("m", "n", "workers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise CodeParameterError(f"{name} must be a positive integer, got {value!r}")
        evaluation_points(1, self.construction)  # validates the name
        if not (0.0 < self.false_alarm < 1.0):
            raise CodeParameterError(f"false_alarm must lie in (0, 1), got {self.false_alarm!r}")
        k = max(self.forward_threshold, self.backward_threshold)
        if self.workers <= k:
            raise CodeParameterError(
                f"a {self.m}x{self.n} GPD split needs more than {k} workers (any {k} results decode a "
                f"product; one more to detect an error); use workers >= {k + 1} or a coarser split"
            )
        redundancy = self.workers - k
        if self.max_erasures is None:
            erasures = self._most_certified(redundancy)
            if erasures < 0:
                self._refuse(0)
        else:
            erasures = self.max_erasures
            if not (isinstance(erasures, int) and 0 <= erasures <= redundancy):
                raise CodeParameterError(f"max_erasures must be an integer in [0, {redundancy}], got {erasures!r}")
            if self._worst_for(erasures) > self.max_condition:
                self._refuse(erasures)
        object.__setattr__(self, "_erasures", erasures)

    def _most_certified(self, redundancy: int) -> int:
        """The largest erasure budget whose decodings certify (-1: none); the worst grows with it."""
        if self._worst_for(redundancy) <= self.max_condition:
            return redundancy
        low, high = -1, redundancy  # worst(low) passes (or low = -1), worst(high) fails
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self._worst_for(middle) <= self.max_condition else (low, middle)
        return low

    def _worst_for(self, erasures: int) -> float:
        return max(cert.worst for cert in self._certificates(erasures).values())

    def _refuse(self, erasures: int) -> None:
        certs = self._certificates(erasures)
        worst = max(certs, key=lambda name: certs[name].worst)
        most = self._most_certified(erasures - 1) if erasures else -1
        fix = (
            f"pass max_erasures={most} (the most that certify)"
            if most >= 0
            else "use fewer workers, a coarser split or construction='circle'"
        )
        raise IllConditionedCodeError(
            f"a {self.m}x{self.n} GPD code on {self.workers} workers ({self.construction}) with "
            f"{erasures} erasures has worst-case {worst} decoding condition number "
            f"{certs[worst].describe()} > {self.max_condition:.0e}; {fix}"
        )

    # -- parameters -------------------------------------------------------------------------
    @property
    def blocks(self) -> int:
        """mn: the blocks of W; each worker stores one evaluation, 1/(mn) of W."""
        return self.m * self.n

    @property
    def forward_threshold(self) -> int:
        """K_f = mn + n - 1: forward results that decode ``W X`` (the paper's recovery threshold)."""
        return self.m * self.n + self.n - 1

    @property
    def backward_threshold(self) -> int:
        """K_b = 2mn - n: backward results that decode ``Wᵀ D`` from the same encoding."""
        return 2 * self.m * self.n - self.n

    @property
    def erasure_budget(self) -> int:
        """Known-position bad results costing one unit each (``max_erasures`` or the most certified)."""
        return self._erasures

    @property
    def correctable_errors(self) -> int:
        """Wrong results at unknown positions corrected in every product (worst direction)."""
        return (self.workers - max(self.forward_threshold, self.backward_threshold)) // 2

    @property
    def points(self) -> np.ndarray:
        """The evaluation point of each worker."""
        return evaluation_points(self.workers, self.construction)

    @property
    def complex_pieces(self) -> bool:
        """Whether pieces are complex (two real half-blocks paired, the circle construction)."""
        return self.construction == "circle"

    @property
    def flop_ratio(self) -> float:
        """Work of all workers over the uncoded product, per product kind (a complex piece costs 2x)."""
        return self.workers / self.blocks * (2 if self.complex_pieces else 1)

    def code(self, direction: Direction) -> EvaluationCode:
        """The ``[P, K]`` evaluation code the results of one direction form."""
        k = {"forward": self.forward_threshold, "backward": self.backward_threshold, "weights": self.blocks}
        return EvaluationCode(self.points, k[direction], self._erasures, self.false_alarm)

    def _certificates(self, erasures: int) -> dict[str, ConditionCertificate]:
        out = {}
        for name, k in (
            ("weights", self.blocks),
            ("forward", self.forward_threshold),
            ("backward", self.backward_threshold),
        ):
            redundancy = self.workers - k
            cost = min(erasures, redundancy)
            size = self.workers - cost - (redundancy - cost) // 2
            out[name] = _certify(self.workers, self.construction, k, size)
        return out

    @property
    def certificates(self) -> dict[str, ConditionCertificate]:
        """The certified worst condition number of each direction's decodings."""
        return self._certificates(self._erasures)

    @property
    def worst_condition(self) -> float:
        """Largest certified condition number over all three codes."""
        return self._worst_for(self._erasures)

    def describe(self) -> dict[str, object]:
        """Plain-data parameters (for store attributes and reports)."""
        return {
            "family": "polydot",
            "construction": self.construction,
            "split": [self.m, self.n],
            "workers": self.workers,
            "thresholds": {"forward": self.forward_threshold, "backward": self.backward_threshold},
            "erasure_budget": self._erasures,
            "false_alarm": self.false_alarm,
            "worst_condition": {name: cert.worst for name, cert in self.certificates.items()},
        }

    # -- shapes and packing -----------------------------------------------------------------
    def _pair(self) -> int:
        return 2 if self.complex_pieces else 1

    def _check_weight_shape(self, rows: int, cols: int) -> None:
        if rows % self.m or cols % (self.n * self._pair()):
            raise ShapeMismatchError(
                f"W of shape {rows}x{cols} does not split into {self.m}x{self.n} blocks"
                + (" of an even number of columns" if self.complex_pieces else "")
                + f": rows must be a multiple of {self.m} and columns of {self.n * self._pair()} (pad W)"
            )

    def _field(self, dtype: np.dtype) -> np.dtype:
        real = require_real_float(dtype, "operand")
        if not self.complex_pieces:
            return real
        return np.dtype(np.complex64 if real == np.float32 else np.complex128)

    def _pack(self, columns_split: np.ndarray) -> np.ndarray:
        """Last-but-one axis halves [A; B] of column pieces -> A + iB (circle) or unchanged."""
        if not self.complex_pieces:
            return columns_split
        half = columns_split.shape[-2] // 2
        return columns_split[..., :half, :] + 1j * columns_split[..., half:, :]

    def _x_pieces(self, x: np.ndarray) -> np.ndarray:
        """X (cols x B) -> n packed pieces (n, cols / (n q), B)."""
        cols = x.shape[0]
        if cols % (self.n * self._pair()):
            raise ShapeMismatchError(f"X has {cols} rows; W's split needs a multiple of {self.n * self._pair()}")
        return self._pack(x.reshape(self.n, cols // self.n, -1))

    def _powers(self, exponents: np.ndarray, workers: Sequence[int] | None = None) -> np.ndarray:
        table = power_table(self.workers, self.construction, exponents)
        return table if workers is None else table[list(workers)]

    # -- encoding ---------------------------------------------------------------------------
    def encode_weights(self, w: np.ndarray, workers: Sequence[int] | None = None) -> np.ndarray:
        """The P stored pieces ``W~_p = sum_ij W[i, j] a_p^(n i + j)`` (once, at initialisation).

        ``workers``: only those workers' pieces, in that order (each encode function takes it, so a
        worker can encode its own share).
        """
        rows, cols = w.shape
        self._check_weight_shape(rows, cols)
        field_dtype = self._field(w.dtype)
        blocks = w.reshape(self.m, rows // self.m, self.n, cols // self.n).transpose(0, 2, 3, 1)
        packed = self._pack(blocks).transpose(0, 1, 3, 2).reshape(self.blocks, rows // self.m, -1)
        coeffs = self._powers(np.arange(self.blocks), workers).astype(field_dtype)
        return np.tensordot(coeffs, packed.astype(field_dtype), axes=1)

    def encoding_drift(self, w: np.ndarray) -> np.ndarray:
        """Per worker, a bound on the roundoff sd of any entry of its freshly encoded piece.

        A piece entry is a sum of mn terms ``a_p^t W_t``: u sqrt(mn) times the root-sum-square of
        the terms (largest over the piece). What :meth:`forward_scale` needs as ``drift`` at step 0.
        """
        rows, cols = w.shape
        self._check_weight_shape(rows, cols)
        blocks = np.abs(w.astype(np.float64)).reshape(self.m, rows // self.m, self.n, cols // self.n) ** 2
        peak = blocks.transpose(0, 2, 1, 3).reshape(self.blocks, -1).max(axis=1)  # per block, largest square
        spread = np.abs(self._powers(np.arange(self.blocks))) ** 2 @ peak
        return unit_roundoff(w.dtype) * math.sqrt(self.blocks + 1) * np.sqrt(spread)

    def encode_forward_input(self, x: np.ndarray, workers: Sequence[int] | None = None) -> np.ndarray:
        """Each worker's ``X~_p = sum_k conj(X[k]) a_p^(n - 1 - k)`` (P, cols / (n q), B)."""
        pieces = self._x_pieces(np.asarray(x)).conj()
        coeffs = self._powers(self.n - 1 - np.arange(self.n), workers).astype(self._field(x.dtype))
        return np.tensordot(coeffs, pieces.astype(coeffs.dtype), axes=1)

    def encode_backward_input(self, delta: np.ndarray, workers: Sequence[int] | None = None) -> np.ndarray:
        """Each worker's ``D~_p = sum_l D[l] a_p^(n (m - 1 - l))`` (P, rows / m, B)."""
        rows = delta.shape[0]
        if rows % self.m:
            raise ShapeMismatchError(f"D has {rows} rows; W's split needs a multiple of {self.m}")
        pieces = delta.reshape(self.m, rows // self.m, -1)
        coeffs = self._powers(self.n * (self.m - 1 - np.arange(self.m)), workers).astype(self._field(delta.dtype))
        return np.tensordot(coeffs, pieces.astype(coeffs.dtype), axes=1)

    def encode_update_factors(
        self, delta: np.ndarray, x: np.ndarray, workers: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each worker's ``U_p = sum_i D[i] a_p^(n i)`` and ``V_p = sum_j X[j] a_p^j`` for the update."""
        rows = delta.shape[0]
        if rows % self.m:
            raise ShapeMismatchError(f"D has {rows} rows; W's split needs a multiple of {self.m}")
        field_dtype = self._field(delta.dtype)
        u = np.tensordot(
            self._powers(self.n * np.arange(self.m), workers).astype(field_dtype),
            delta.reshape(self.m, rows // self.m, -1).astype(field_dtype),
            axes=1,
        )
        v = np.tensordot(
            self._powers(np.arange(self.n), workers).astype(field_dtype),
            self._x_pieces(np.asarray(x)).astype(field_dtype),
            axes=1,
        )
        return u, v

    # -- what each worker computes (p-th slice of the stacked arrays) -----------------------
    @staticmethod
    def forward(pieces: np.ndarray, x_pieces: np.ndarray) -> np.ndarray:
        """Worker p's forward result ``W~_p X~_p`` (stacked over the leading worker axis)."""
        return np.matmul(pieces, x_pieces)

    @staticmethod
    def backward(pieces: np.ndarray, delta_pieces: np.ndarray) -> np.ndarray:
        """Worker p's backward result ``W~_pᵀ D~_p`` (transpose, not conjugate)."""
        return np.matmul(np.swapaxes(pieces, -1, -2), delta_pieces)

    @staticmethod
    def update(pieces: np.ndarray, u: np.ndarray, v: np.ndarray, lr: float) -> np.ndarray:
        """Worker p's new piece ``W~_p - lr U_p V_pᵀ``: the new W's evaluation, no re-encode."""
        return pieces - np.asarray(lr, dtype=pieces.real.dtype) * np.matmul(u, np.swapaxes(v, -1, -2))

    # -- noise scales of the results --------------------------------------------------------
    def forward_scale(
        self, pieces: np.ndarray, x_pieces: np.ndarray, results: np.ndarray, drift: float | np.ndarray = 0.0
    ) -> np.ndarray:
        """Per-entry roundoff scale of forward results; ``drift``: per-worker sd of a piece's entries."""
        scale = product_scale(pieces, x_pieces, results, extra_terms=self.n)
        return scale + np.reshape(drift, (-1, 1, 1)) * np.linalg.norm(x_pieces, axis=-2, keepdims=True)

    def backward_scale(
        self, pieces: np.ndarray, delta_pieces: np.ndarray, results: np.ndarray, drift: float | np.ndarray = 0.0
    ) -> np.ndarray:
        """Per-entry roundoff scale of backward results (see :meth:`forward_scale`)."""
        scale = product_scale(np.swapaxes(pieces, -1, -2), delta_pieces, results, extra_terms=self.m)
        return scale + np.reshape(drift, (-1, 1, 1)) * np.linalg.norm(delta_pieces, axis=-2, keepdims=True)

    def forward_bound(self, pieces: np.ndarray, x_pieces: np.ndarray) -> np.ndarray:
        """Per entry, a magnitude no right forward result exceeds: Cauchy–Schwarz plus roundoff."""
        return _cauchy_schwarz(pieces, x_pieces)

    def backward_bound(self, pieces: np.ndarray, delta_pieces: np.ndarray) -> np.ndarray:
        """Per entry, a magnitude no right backward result exceeds."""
        return _cauchy_schwarz(np.swapaxes(pieces, -1, -2), delta_pieces)

    # -- decoding ---------------------------------------------------------------------------
    def _decode(
        self,
        direction: Direction,
        results: np.ndarray,
        scale: np.ndarray,
        erased: Iterable[int],
        wanted: list[int],
        bound: np.ndarray | None,
    ) -> tuple[PolyDotCheck, np.ndarray | None, np.ndarray | None, tuple[int, ...]]:
        results = np.asarray(results)
        if results.shape[0] != self.workers:
            raise ShapeMismatchError(f"expected {self.workers} results (one per worker), got {results.shape[0]}")
        shape = results.shape[1:]
        wide = np.complex128 if np.iscomplexobj(results) else np.float64
        z = results.reshape(self.workers, -1).astype(wide)
        sigma = np.broadcast_to(np.asarray(scale, dtype=np.float64), results.shape).reshape(self.workers, -1)
        code = self.code(direction)
        if bound is not None:
            bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), results.shape).reshape(self.workers, -1)
        check = code.locate(z, sigma, erased, wide=np.finfo(results.dtype).bits == 64, bound=bound)
        if check.status == "uncorrectable":
            return check, None, None, shape
        used = [a for a in range(self.workers) if a not in check.bad]
        values, out_scale = code.solve(z, sigma, used, wanted)
        return check, values, out_scale, shape

    def decode_forward(
        self, results: np.ndarray, scale: np.ndarray, erased: Iterable[int] = (), bound: np.ndarray | None = None
    ) -> PolyDotDecode:
        """``S = W X`` (rows x B, real) from the P forward results, wrong ones located and dropped.

        ``scale``: per-entry roundoff sd bound (:meth:`forward_scale`); ``erased``: results known
        bad or missing; ``bound``: per-entry magnitude no right result exceeds (:meth:`forward_bound`).
        """
        wanted = [self.n * i + self.n - 1 for i in range(self.m)]
        check, values, out_scale, shape = self._decode("forward", results, scale, erased, wanted, bound)
        if values is None or out_scale is None:
            return PolyDotDecode(None, check)
        real = np.finfo(results.dtype).dtype
        s = values.real.reshape(self.m * shape[0], *shape[1:]).astype(real)
        return PolyDotDecode(s, check, out_scale.reshape(self.m * shape[0], *shape[1:]))

    def decode_backward(
        self, results: np.ndarray, scale: np.ndarray, erased: Iterable[int] = (), bound: np.ndarray | None = None
    ) -> PolyDotDecode:
        """``C = Wᵀ D`` (cols x B, real) from the P backward results.

        ``scale``: per-entry roundoff sd bound (:meth:`backward_scale`); ``erased``: results known
        bad or missing; ``bound``: per-entry magnitude no right result exceeds (:meth:`backward_bound`).
        """
        wanted = [self.n * (self.m - 1) + j for j in range(self.n)]
        check, values, out_scale, shape = self._decode("backward", results, scale, erased, wanted, bound)
        if values is None or out_scale is None:
            return PolyDotDecode(None, check)
        real = np.finfo(results.dtype).dtype
        blocks = values.reshape(self.n, *shape)
        scales = out_scale.reshape(self.n, *shape)
        if self.complex_pieces:
            blocks = np.concatenate([blocks.real, blocks.imag], axis=1)
            scales = np.concatenate([scales, scales], axis=1)
        return PolyDotDecode(blocks.reshape(-1, *shape[1:]).astype(real), check, scales.reshape(-1, *shape[1:]))

    def check_weights(self, pieces: np.ndarray, scale: np.ndarray, erased: Iterable[int] = ()) -> PolyDotCheck:
        """Scrub: whether the stored pieces are one codeword of the ``[P, mn]`` weight code."""
        z = np.asarray(pieces).reshape(self.workers, -1).astype(np.complex128 if self.complex_pieces else np.float64)
        sigma = np.broadcast_to(np.asarray(scale, dtype=np.float64), np.shape(pieces)).reshape(self.workers, -1)
        return self.code("weights").locate(z, sigma, erased, wide=np.finfo(np.asarray(pieces).dtype).bits == 64)

    def rebuild_pieces(self, pieces: np.ndarray, bad: Sequence[int]) -> np.ndarray:
        """Pieces with positions ``bad`` recomputed from the others (repair after a scrub)."""
        pieces = np.array(pieces, copy=True)
        bad = sorted(set(bad))
        good = [a for a in range(self.workers) if a not in bad]
        if len(good) < self.blocks:
            raise CodeParameterError(f"rebuilding needs {self.blocks} good pieces, got {len(good)}")
        g = self.code("weights").generator()
        coeffs = g[bad] @ np.linalg.pinv(g[good])
        flat = pieces.reshape(self.workers, -1)
        flat[bad] = (coeffs @ flat[good].astype(coeffs.dtype)).astype(flat.dtype)
        return pieces

    def decode_weights(self, pieces: np.ndarray, rows: int, cols: int, bad: Sequence[int] = ()) -> np.ndarray:
        """W (rows x cols, real) back from good stored pieces (export, checks)."""
        self._check_weight_shape(rows, cols)
        good = [a for a in range(self.workers) if a not in set(bad)]
        flat = np.asarray(pieces).reshape(self.workers, -1)
        g = self.code("weights").generator()
        blocks = np.linalg.pinv(g[good]) @ flat[good].astype(np.complex128 if self.complex_pieces else np.float64)
        blocks = blocks.reshape(self.m, self.n, rows // self.m, -1)
        if self.complex_pieces:
            blocks = np.concatenate([blocks.real, blocks.imag], axis=-1)
        real = np.finfo(np.asarray(pieces).dtype).dtype
        return blocks.transpose(0, 2, 1, 3).reshape(rows, cols).astype(real)


@lru_cache(maxsize=256)
def polydot_code(
    m: int, n: int, workers: int, construction: Construction = "circle", max_erasures: int | None = None
) -> PolyDotCode:
    """A certified GPD code, built once per process (certification inverts many subsets)."""
    return PolyDotCode(m=m, n=n, workers=workers, construction=construction, max_erasures=max_erasures)


#: Splits offered: up to this many blocks along each side (like the product code's grids).
MAX_SPLIT = 4


def offered_splits(workers: int, construction: Construction = "circle") -> list[tuple[int, int]]:
    """Every ``m x n`` split (m, n <= 4, mn >= 2) on this many workers that corrects an error, certified."""
    splits = []
    for m in range(1, MAX_SPLIT + 1):
        for n in range(1, MAX_SPLIT + 1):
            if m * n < 2 or workers - max(m * n + n - 1, 2 * m * n - n) < 2:
                continue
            try:
                polydot_code(m, n, workers, construction)
            except IllConditionedCodeError:
                continue
            splits.append((m, n))
    return splits

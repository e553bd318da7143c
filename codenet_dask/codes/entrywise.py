"""Entry-by-entry decoding of one codeword of results from its full-resolution syndrome.

A codeword of ``n`` results (each an array of ``N`` entries; flattened here) has syndrome
``s = H y`` (``p x N``), zero for an exact codeword. Each entry is decoded on its own: its ``p``
syndrome values either lie within their noise thresholds ``tau`` (the entry is clean), or are
explained by errors at a unique smallest set of positions (erasures, known in advance, cost one
parity each; unknown positions two), whose sizes the least-squares fit gives; or they are not
(the entry is *uncorrectable*), including the *ambiguous* case where two sets of the same size
explain them equally well. Nothing ambiguous is ever accepted: the caller recomputes.

Working per entry rather than on projections of whole results keeps the detector's noise floor
at one entry's roundoff: a single wrong entry is not diluted among the others.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .mds import SystematicMDSCode
from .roundoff import gamma


@dataclass(frozen=True)
class EntryDecode:
    """The verdict on every entry of one codeword that is not clean.

    ``entries``: flat indices of those entries (sorted); ``bad[a, i]``: position ``a`` is wrong at
    entry ``entries[i]`` (erased or located); ``errors[a, i]``: the estimated error ``y - exact``
    there (0 where not bad); ``failed[i]``: the entry is uncorrectable; ``ambiguous[i]``: of those,
    the ones two error sets explained equally well.
    """

    entries: np.ndarray
    bad: np.ndarray
    errors: np.ndarray
    failed: np.ndarray
    ambiguous: np.ndarray

    @property
    def clean(self) -> bool:
        return self.entries.size == 0


def _empty(n: int) -> EntryDecode:
    return EntryDecode(
        np.zeros(0, np.int64),
        np.zeros((n, 0), bool),
        np.zeros((n, 0)),
        np.zeros(0, bool),
        np.zeros(0, bool),
    )


@lru_cache(maxsize=4096)
def _fit(check: bytes, p: int, n: int, support: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, pinv)`` of the error support ``S``: ``Q`` (rows: an orthonormal basis of the complement
    of range(H_S)) maps a syndrome to what no error on S can produce; ``pinv = H_S^+`` gives the
    errors on S that explain a syndrome best."""
    h = np.frombuffer(check, dtype=np.float64).reshape(p, n)
    hs = h[:, list(support)]
    q_full, _ = np.linalg.qr(hs, mode="complete") if support else (np.eye(p), None)
    return q_full[:, len(support) :].T, (np.linalg.pinv(hs) if support else np.zeros((0, p)))


def decode_entries(
    code: SystematicMDSCode,
    syndrome: np.ndarray,
    tau: np.ndarray,
    erased: dict[int, np.ndarray] | None = None,
) -> EntryDecode:
    """Decode every entry of one codeword; see the module docstring.

    ``syndrome`` and ``tau`` are ``p x N`` (``tau >= 0`` bounds each syndrome value's noise);
    ``erased`` maps a position to the flat indices of its entries known to be wrong (their values
    must have been left out of ``syndrome``, i.e. counted as 0).
    """
    n, p = code.n, code.p
    syndrome = np.asarray(syndrome, dtype=np.float64).reshape(p, -1)
    tau = np.asarray(tau, dtype=np.float64).reshape(p, -1)
    erased = {int(a): np.asarray(idx, dtype=np.int64) for a, idx in (erased or {}).items() if len(idx)}
    size = syndrome.shape[1]
    with np.errstate(invalid="ignore"):
        loud = ~np.all(np.abs(syndrome) <= tau, axis=0) if p else np.zeros(size, bool)
    marks = np.zeros(size, np.int64)
    for a, idx in erased.items():
        marks[idx] |= 1 << a
    entries = np.flatnonzero(loud | (marks != 0))
    if entries.size == 0:
        return _empty(n)
    s, t, pattern = syndrome[:, entries], tau[:, entries], marks[entries]
    bad = np.zeros((n, entries.size), bool)
    errors = np.zeros((n, entries.size))
    failed = np.zeros(entries.size, bool)
    ambiguous = np.zeros(entries.size, bool)
    h = code.check_matrix
    check = h.tobytes()
    slack = gamma(2 * p + 2, np.float64)
    for mark in np.unique(pattern):
        group = np.flatnonzero(pattern == mark)
        known = tuple(a for a in range(n) if mark >> a & 1)
        if len(known) > p:
            failed[group] = True
            continue
        candidates = [a for a in range(n) if a not in known]
        undecided = group
        for extra in range((p - len(known)) // 2 + 1):
            if undecided.size == 0:
                break
            fits, first = np.zeros(undecided.size, np.int64), np.full(undecided.size, -1)
            supports = [tuple(sorted(known + located)) for located in itertools.combinations(candidates, extra)]
            for k, support in enumerate(supports):
                q, _ = _fit(check, p, n, support)
                if q.shape[0] == 0:  # no redundancy left to test with: every support fits
                    ok = np.ones(undecided.size, bool)
                else:
                    # Noise, plus the float64 roundoff of computing q @ s itself (a huge error
                    # would otherwise leave a residual of its own size times eps).
                    sub = s[:, undecided]
                    allowed = np.abs(q) @ (t[:, undecided] + slack * np.abs(sub))
                    ok = np.all(np.abs(q @ sub) <= allowed, axis=0)
                first = np.where(ok & (fits == 0), k, first)
                fits += ok
            unique = fits == 1
            for k in np.unique(first[unique]):
                chosen = undecided[unique & (first == k)]
                support = supports[k]
                _, pinv = _fit(check, p, n, support)
                rows = np.ix_(list(support), chosen)
                bad[rows] = True
                errors[rows] = pinv @ s[:, chosen]
            several = fits > 1
            failed[undecided[several]] = True
            ambiguous[undecided[several]] = True
            undecided = undecided[fits == 0]
        failed[undecided] = True  # nothing within capacity explains them
    return EntryDecode(entries, bad, errors, failed, ambiguous)

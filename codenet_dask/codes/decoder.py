"""Detect, locate and correct wrong blocks in one codeword of computed results.

The decoder works on *projections*: each block of a codeword is summarised by a few random linear
combinations of its entries (shape ``(n, L)``), with a rigorous bound on how far each projection
may sit from the exact value through roundoff alone (``noise``, same shape). A syndrome entry
beyond the bound is proof that some block is wrong. Positions known to be wrong (NaN/Inf, or a
magnitude no correct result can have) come in as erasures and cost one parity each; unknown wrong
positions cost two. The decoder never guesses: if more than one error pattern within capacity
explains the syndrome, or none does, the codeword is reported uncorrectable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from .mds import SystematicMDSCode
from .roundoff import gamma

Status = Literal["clean", "corrected", "uncorrectable"]


@dataclass(frozen=True)
class CodewordCheck:
    """The verdict on one codeword.

    ``erased``: positions known bad before decoding; ``located``: wrong positions found from the
    syndrome; ``status``: clean, corrected (``bad`` positions must be rebuilt) or uncorrectable.
    ``excess`` is the largest ``|syndrome| / threshold`` seen (<= 1 means clean).
    """

    erased: tuple[int, ...]
    located: tuple[int, ...]
    status: Status
    excess: float

    @property
    def bad(self) -> tuple[int, ...]:
        """All positions whose values must not be used (erased or located)."""
        return tuple(sorted(self.erased + self.located))


@lru_cache(maxsize=4096)
def _support_fit(check: bytes, p: int, n: int, support: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, leak)`` for testing whether errors on support S explain a syndrome.

    ``Q`` (rows: an orthonormal basis of the complement of range(H_S)) maps a syndrome to the
    part no error on S can produce; ``leak`` bounds how much of ``|s|`` roundoff in computing
    ``Q s`` can leak into it: ``|Q| (I + |H_S| |H_S^+|)``.
    """
    h = np.frombuffer(check, dtype=np.float64).reshape(p, n)
    hs = h[:, list(support)]
    q_full, _ = np.linalg.qr(hs, mode="complete")
    complement = q_full[:, len(support) :].T
    leak = np.abs(complement) @ (np.eye(p) + np.abs(hs) @ np.abs(np.linalg.pinv(hs)))
    return complement, leak


def benign_slack(code: SystematicMDSCode) -> float:
    """How far above its noise bound a syndrome may be and still fit two error supports.

    For a single error ``e`` at position a, another support S also explains the syndrome while
    ``|Q_S H_a e| <= |Q_S| tau``, i.e. up to an excess of ``|H_a| |Q_S| / |Q_S H_a|``: the
    real-valued analogue of minimum distance. A deviation that small and that ambiguous is
    accepted as roundoff-level (benign); twice the worst such excess is the slack.
    """
    return _benign_slack(code.check_matrix.tobytes(), code.p, code.n)


@lru_cache(maxsize=256)
def _benign_slack(check: bytes, p: int, n: int) -> float:
    h = np.frombuffer(check, dtype=np.float64).reshape(p, n)
    worst = 1.0
    for t in range(1, p // 2 + 1):
        for support in itertools.combinations(range(n), t):
            complement, _ = _support_fit(check, p, n, support)
            for a in set(range(n)) - set(support):
                visible = np.max(np.abs(complement @ h[:, a]))
                worst = max(worst, np.max(np.abs(h[:, a])) * np.max(np.abs(complement).sum(axis=1)) / visible)
    return 2.0 * worst


def _syndrome_without(
    h: np.ndarray, z: np.ndarray, bound: np.ndarray, support: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Syndrome of the codeword with ``support`` blanked, and its rigorous noise bound.

    Blanking the suspects keeps a huge error at one position from drowning, in roundoff, a
    smaller one elsewhere: only the remaining positions' magnitudes enter the bound.
    """
    keep = np.ones(h.shape[1], dtype=bool)
    keep[list(support)] = False
    hk, zk = h[:, keep], z[keep]
    abs_hk = np.abs(hk)
    tau = abs_hk @ bound[keep] + gamma(h.shape[1] + 1, np.float64) * (abs_hk @ np.abs(zk))
    return hk @ zk, np.maximum(tau, np.finfo(np.float64).tiny)


def _fits(h: np.ndarray, z: np.ndarray, bound: np.ndarray, support: tuple[int, ...], slack: float = 1.0) -> bool:
    """Whether the positions outside ``support`` form a consistent (punctured) codeword.

    For the true support the syndrome of the rest is ``H_S e + noise``, so its component outside
    range(H_S), ``Q s = Q noise``, is bounded by ``|Q| tau`` (plus roundoff of computing it).
    """
    if len(support) >= h.shape[0]:
        return True  # any p columns of an MDS check matrix span everything: nothing to test
    syndrome, tau = _syndrome_without(h, z, bound, support)
    tau = tau * slack
    if not support:
        return bool(np.all(np.abs(syndrome) <= tau))
    complement, leak = _support_fit(h.tobytes(), h.shape[0], h.shape[1], support)
    outside = complement @ syndrome
    allowed = np.abs(complement) @ tau + gamma(2 * h.shape[0] + 2, np.float64) * (leak @ np.abs(syndrome))
    return bool(np.all(np.abs(outside) <= allowed))


def check_codeword(
    code: SystematicMDSCode,
    projections: np.ndarray,
    noise: np.ndarray,
    erased: Sequence[int] = (),
) -> CodewordCheck:
    """Classify one codeword from its block projections.

    ``projections[a]`` summarises block a; ``noise[a]`` bounds its roundoff elementwise (>= 0).
    Erased positions' projections are ignored (they may be NaN).
    """
    n, p = code.n, code.p
    erased = tuple(sorted({int(a) for a in erased}))
    if len(erased) > p:
        return CodewordCheck(erased, (), "uncorrectable", float("inf"))
    z = np.array(projections, dtype=np.float64, copy=True).reshape(n, -1)
    bound = np.array(noise, dtype=np.float64).reshape(n, -1)
    z[list(erased)] = 0.0
    bound[list(erased)] = 0.0
    h = code.check_matrix
    syndrome, tau = _syndrome_without(h, z, bound, erased)
    excess = float(np.max(np.abs(syndrome) / tau)) if p else 0.0

    candidates = [a for a in range(n) if a not in erased]
    for t in range((p - len(erased)) // 2 + 1):
        fits = []
        for located in itertools.combinations(candidates, t):
            if _fits(h, z, bound, tuple(sorted(erased + located))):
                fits.append(located)
                if len(fits) > 1:
                    break
        if len(fits) == 1:
            located = fits[0]
            status: Status = "clean" if not (located or erased) else "corrected"
            return CodewordCheck(erased, located, status, excess)
        if len(fits) > 1:
            break  # two explanations within capacity: refuse to pick one
    if _fits(h, z, bound, erased, slack=benign_slack(code)):
        # Ambiguous only because the deviation is barely above roundoff: it is benign (it moves
        # the result by at most benign_slack times the noise bound), not worth a recomputation.
        return CodewordCheck(erased, (), "corrected" if erased else "clean", excess)
    return CodewordCheck(erased, (), "uncorrectable", excess)


def rebuild_blocks(
    code: SystematicMDSCode,
    blocks: Sequence[np.ndarray | None],
    bad: Sequence[int],
    wanted: Sequence[int],
) -> dict[int, np.ndarray]:
    """Recompute ``wanted`` positions of a codeword from every position not in ``bad``.

    Only the good positions' blocks are read, so ``blocks[a]`` may be None for a bad ``a``.
    """
    bad_set = set(bad)
    known = [a for a in range(code.n) if a not in bad_set]
    coeffs = code.rebuild_matrix(known, list(wanted))
    out: dict[int, np.ndarray] = {}
    for row, position in zip(coeffs, wanted):
        acc = None
        for c, a in zip(row, known):
            block = blocks[a]
            assert block is not None
            term = block * block.dtype.type(c)
            acc = term if acc is None else acc + term
        assert acc is not None  # known holds at least k >= 1 positions
        out[position] = acc
    return out

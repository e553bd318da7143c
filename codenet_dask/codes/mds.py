"""Systematic real-valued MDS codes over blocks.

A code ``[n = k + p, k]`` maps k message blocks to n codeword blocks: the first k are the message
itself (systematic), the last p are parities ``P_q = sum_i A[q, i] * M_i``. Every k of the n
blocks determine the message (MDS), so up to p erased blocks can be rebuilt, up to p wrong blocks
are detected and up to floor(p / 2) located. Symbols are whole numpy blocks of any shape: the code
acts linearly along a leading axis of length n.

Real arithmetic has no field to hide in: how many digits a rebuild loses is the condition number of
the k x k generator submatrix it inverts. Construction therefore picks well-spread Chebyshev
points and the code certifies the worst case over *every* k-subset before it can be used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from ..errors import CodeParameterError, IllConditionedCodeError

Construction = Literal["chebyshev", "orthogonal"]

#: Refuse codes whose worst decoding submatrix would lose more than ~6 decimal digits in float64.
MAX_CONDITION = 1e6
#: Certifying the worst case inverts every k-subset; beyond this many subsets we refuse.
MAX_SUBSETS_TO_CERTIFY = 50_000


def _chebyshev_generator(k: int, n: int) -> np.ndarray:
    """Systematic generator from a Chebyshev-basis Vandermonde matrix at Chebyshev points.

    The message positions take points spread over [-1, 1] (not the first k in order): that keeps
    the worst k-subset 10-100x better conditioned than the naive ordering.
    """
    points = np.cos((2 * np.arange(n) + 1) * np.pi / (2 * n))
    message = np.round(np.linspace(0, n - 1, k)).astype(int)
    parity = np.setdiff1d(np.arange(n), message)
    ordered = np.concatenate([points[message], points[parity]])
    vander = np.polynomial.chebyshev.chebvander(ordered, k - 1)
    return vander @ np.linalg.inv(vander[:k])


def _orthogonal_generator(k: int, n: int, seed: int) -> np.ndarray:
    """Systematic generator spanning the first k columns of a seeded random orthogonal matrix."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    basis = q[:, :k]
    return basis @ np.linalg.inv(basis[:k])


@dataclass(frozen=True)
class SystematicMDSCode:
    """A systematic ``[k + p, k]`` real MDS code; see the module docstring.

    >>> code = SystematicMDSCode(k=4, p=2)
    >>> code.n, code.correctable_errors
    (6, 1)
    >>> round(code.worst_condition)  # of every 4 x 4 generator submatrix a decoder may invert
    34
    >>> word = code.encode(np.arange(4.0))  # 4 message entries, then 2 parities
    >>> word[1] = word[4] = np.nan  # two erasures, one of them a parity
    >>> code.rebuild(word, erased=[1, 4])[:4].round(12)
    array([0., 1., 2., 3.])
    """

    k: int
    p: int
    construction: Construction = "chebyshev"
    seed: int = 0
    max_condition: float = MAX_CONDITION
    _generator: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.k, int) and self.k >= 1):
            raise CodeParameterError(f"k must be a positive integer, got {self.k!r}")
        if not (isinstance(self.p, int) and self.p >= 0):
            raise CodeParameterError(f"parity p must be a non-negative integer, got {self.p!r}")
        n = self.k + self.p
        if self.construction == "chebyshev":
            generator = _chebyshev_generator(self.k, n)
        elif self.construction == "orthogonal":
            generator = _orthogonal_generator(self.k, n, self.seed)
        else:
            raise CodeParameterError(f"unknown construction {self.construction!r}; use 'chebyshev' or 'orthogonal'")
        generator[: self.k] = np.eye(self.k)  # exactly systematic, not just to roundoff
        object.__setattr__(self, "_generator", generator)
        if self.worst_condition > self.max_condition:
            raise IllConditionedCodeError(
                f"a [{n}, {self.k}] {self.construction} code has worst-case decoding condition "
                f"number {self.worst_condition:.3g} > {self.max_condition:.0e} (would lose more than "
                f"{math.log10(self.max_condition):.0f} digits); use fewer blocks or less parity"
            )

    # -- parameters -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Codeword length (message + parity blocks)."""
        return self.k + self.p

    @property
    def correctable_errors(self) -> int:
        """Wrong blocks at unknown positions that can be located and corrected."""
        return self.p // 2

    @property
    def generator(self) -> np.ndarray:
        """``G`` (n x k), ``codeword = G @ message``; its top k rows are the identity."""
        return self._generator.copy()

    @property
    def parity_matrix(self) -> np.ndarray:
        """``A`` (p x k): parity q is ``sum_i A[q, i] * message_i``."""
        return self._generator[self.k :].copy()

    @cached_property
    def check_matrix(self) -> np.ndarray:
        """``H = [A, -I]`` (p x n): ``H @ codeword = 0`` exactly for an exact codeword."""
        return np.hstack([self._generator[self.k :], -np.eye(self.p)])

    @cached_property
    def worst_condition(self) -> float:
        """Largest 2-norm condition number over all k x k submatrices of the generator."""
        subsets = math.comb(self.n, self.k)
        if subsets > MAX_SUBSETS_TO_CERTIFY:
            raise CodeParameterError(
                f"cannot certify a [{self.n}, {self.k}] code: {subsets} decoding subsets exceed "
                f"{MAX_SUBSETS_TO_CERTIFY}; use a smaller block grid"
            )
        if self.p == 0:
            return 1.0
        return max(
            float(np.linalg.cond(self._generator[list(rows)])) for rows in itertools.combinations(range(self.n), self.k)
        )

    # -- linear maps ------------------------------------------------------------------------
    def encode(self, message: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Stack of n codeword blocks from k message blocks (stacked along axis 0)."""
        stacked = self._stack(message, self.k, "message")
        parity = np.tensordot(self._generator[self.k :].astype(stacked.dtype), stacked, axes=1)
        return np.concatenate([stacked, parity], axis=0)

    def parity(self, message: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Only the p parity blocks of ``encode(message)``."""
        stacked = self._stack(message, self.k, "message")
        return np.tensordot(self._generator[self.k :].astype(stacked.dtype), stacked, axes=1)

    def syndrome(self, codeword: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """``H @ codeword`` (p blocks): zero up to roundoff iff no block is wrong."""
        stacked = self._stack(codeword, self.n, "codeword")
        return np.tensordot(self.check_matrix.astype(stacked.dtype), stacked, axes=1)

    def rebuild_matrix(self, known: Sequence[int], wanted: Sequence[int]) -> np.ndarray:
        """Coefficients ``R`` with ``codeword[wanted] = R @ codeword[known]``.

        ``known`` must hold at least k positions; more are used in a least-squares fit, which
        only averages roundoff (the known blocks are consistent).
        """
        known, wanted = list(known), list(wanted)
        if len(known) < self.k:
            raise CodeParameterError(f"rebuilding needs at least k={self.k} known blocks, got {len(known)}")
        return self._generator[wanted] @ np.linalg.pinv(self._generator[known])

    def rebuild(self, codeword: Sequence[np.ndarray] | np.ndarray, erased: Sequence[int]) -> np.ndarray:
        """Codeword with the ``erased`` positions recomputed from all the others."""
        stacked = self._stack(codeword, self.n, "codeword").copy()
        erased = sorted(set(erased))
        if len(erased) > self.p:
            raise CodeParameterError(f"{len(erased)} erasures exceed parity p={self.p}")
        if erased:
            known = [i for i in range(self.n) if i not in erased]
            coeffs = self.rebuild_matrix(known, erased).astype(stacked.dtype)
            stacked[erased] = np.tensordot(coeffs, stacked[known], axes=1)
        return stacked

    @staticmethod
    def _stack(blocks: Sequence[np.ndarray] | np.ndarray, count: int, what: str) -> np.ndarray:
        stacked = blocks if isinstance(blocks, np.ndarray) else np.stack(list(blocks))
        if stacked.shape[0] != count:
            raise CodeParameterError(f"expected {count} {what} blocks, got {stacked.shape[0]}")
        return stacked

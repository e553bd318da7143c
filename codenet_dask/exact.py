"""Matrix products in long double at the speed of float64 BLAS: the judge's reference products.

``np.longdouble`` matmul runs without BLAS (~100x slower than float64: 22 ms for the default
network's 128x784 @ 784x64 on this machine, five of them per training step). :func:`matmul`
computes the same product from float64 GEMMs that are *exact* (Ozaki, Ogita, Oishi, Rump, "Error-free
transformations of matrix multiplication by using fast routines of matrix multiplication and its
applications", Numer. Algorithms 59, 2012):

- every row of ``a`` (column of ``b``) is cut into slices on a grid fixed by its largest entry, each
  slice holding at most ``53 - beta`` significant bits with ``beta = ceil((53 + log2 k) / 2)``, so
  the product of two slices summed over the ``k`` inner terms never needs more than 53 bits: float64
  BLAS computes it without a rounding error, whatever order it sums in;
- the exact slice products are summed in long double, largest first; slice pairs whose products lie
  below ``2**-(BITS)`` of the row-times-column scale are left out.

The result's error is at most a few long double units of ``|a| @ |b|`` plus ``k 2**-BITS`` of
the row's largest entry times the column's (property-tested against exact rational arithmetic in
``tests/test_exact.py``): as good as the long double matmul it replaces, whose own error grows
with ``k``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BITS", "matmul"]

#: Relative accuracy kept, in bits of the row-times-column scale (long double has 64).
BITS = 72


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in long double (2-D operands of any real float dtype). Operands holding NaN or Inf
    take the plain long double product, so the result shows them as that would."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs (m, k) @ (k, n) matrices, got {a.shape} @ {b.shape}")
    k = a.shape[1]
    if k == 0 or a.shape[0] * b.shape[1] == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return a.astype(np.longdouble) @ b.astype(np.longdouble)
    bits = (53 - (k - 1).bit_length()) // 2  # 2 bits + log2(k) <= 53: slice products are exact
    reach = math.ceil(BITS / bits)  # slices on levels s + t beyond this lie below 2**-BITS of the scale
    row_exp, col_exp = _exponent(a, axis=1), _exponent(b, axis=0)
    rows = _slices(a, -row_exp, bits, reach)
    cols = _slices(b, -col_exp, bits, reach)
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.longdouble)
    for s, row_slice in rows:
        for t, col_slice in cols:
            if s + t <= reach:
                out += row_slice @ col_slice
    return np.ldexp(out, row_exp + col_exp)


def _exponent(x: np.ndarray, axis: int) -> np.ndarray:
    """Per line of ``x`` along ``axis``, the power of two bringing its largest entry into [1/2, 1)."""
    return np.frexp(np.max(np.abs(x), axis=axis, keepdims=True).astype(np.float64))[1].astype(np.int32)


def _slices(x: np.ndarray, shift: np.ndarray, bits: int, reach: int) -> list[tuple[int, np.ndarray]]:
    """``x * 2**shift`` (entries below 1) as float64 slices ``(level, slice)`` summing to it up to
    ``2**-(bits (reach + 1))``; a slice of level ``s`` holds integers of at most ``bits`` + 1
    digits times ``2**-(bits (s + 1))``. A long double ``x`` is first cut into float64 parts (its
    64 digits: 53 and the rest), each sliced on the same levels: all arithmetic stays float64."""
    first = x.astype(np.float64)
    parts = [first, (x - first).astype(np.float64)] if x.dtype.itemsize > 8 else [first]
    slices: list[tuple[int, np.ndarray]] = []
    for part in parts:
        rest = np.ldexp(part, shift)  # exact: a power of two
        for level in range(reach + 1):
            if not rest.any():
                break
            step = math.ldexp(1.0, -bits * (level + 1))
            piece = np.rint(rest / step) * step  # exact scaling and rounding; rest - piece is exact too
            if piece.any():
                rest = rest - piece
                slices.append((level, piece))
    return slices

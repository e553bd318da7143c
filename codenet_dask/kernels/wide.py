"""Sums in long double that cross between workers: shipped as float64 (head, tail) pairs.

Checks of float64 data need their sums far below float64's own rounding: formed in
``np.longdouble`` (11 more bits on x86) their rounding is 2,000x smaller. Long double is not a
portable wire format (80-bit on x86, 128-bit elsewhere, 64-bit on Windows), so what a worker
ships is the pair ``(head, tail)`` of float64s whose sum is the long double value exactly.
"""

from __future__ import annotations

import numpy as np

from ..codes.roundoff import SAFETY

#: The precision checks sum in.
WIDE = np.longdouble
#: Its unit roundoff.
U_WIDE = float(np.finfo(WIDE).eps) / 2


def gamma_wide(terms: int) -> float:
    """``gamma`` (``codes.roundoff``) of a ``terms``-term sum in :data:`WIDE`."""
    mu = terms * U_WIDE
    return SAFETY * mu / (1 - mu)


def pair(x: np.ndarray) -> np.ndarray:
    """A long double array as float64 (head, tail), stacked on a first axis: exact (64 digits)."""
    head = x.astype(np.float64)
    return np.stack([head, (x - head).astype(np.float64)])


def unpair(pair: np.ndarray) -> np.ndarray:
    """The long double array a :func:`pair` holds."""
    return pair[0].astype(WIDE) + pair[1]

"""Floating-point error bounds (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3).

Detection thresholds are built from these, never guessed: a sum or dot product of length m computed
in floating point is within ``gamma(m) * sum|terms|`` of the exact value.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedDtypeError

#: A margin over the worst-case bound, so BLAS blocking/FMA orderings never push a clean result out.
SAFETY = 2.0


def require_real_float(dtype: np.dtype | type, what: str = "array") -> np.dtype:
    """The dtype, if it is float32 or float64; a clear error otherwise."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UnsupportedDtypeError(
            f"{what} has dtype {dtype}; coded products need float32 or float64 (cast with .astype('float64'))"
        )
    return dtype


def unit_roundoff(dtype: np.dtype | type) -> float:
    """u = eps / 2 of a real float dtype."""
    return float(np.finfo(require_real_float(dtype)).eps) / 2


def gamma(m: int, dtype: np.dtype | type) -> float:
    """``gamma_m = m u / (1 - m u)``: relative error bound of an m-term sum, times SAFETY."""
    mu = m * unit_roundoff(dtype)
    if mu >= 0.5:
        raise ValueError(f"a {m}-term sum in {np.dtype(dtype)} has no useful error bound")
    return SAFETY * mu / (1 - mu)

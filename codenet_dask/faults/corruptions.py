"""Elementary ways a soft error changes a block of numbers. Pure numpy; each returns a new array."""

from __future__ import annotations

import numpy as np

_UINT: dict[np.dtype, type[np.unsignedinteger]] = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def bits_of(dtype: np.dtype) -> int:
    """Bit width of a float dtype (32 or 64)."""
    return np.dtype(dtype).itemsize * 8


def flip_bit(values: np.ndarray, index: tuple[int, ...], bit: int) -> np.ndarray:
    """Flip bit ``bit`` (0 = lowest mantissa bit, top = sign) of one entry."""
    out = np.array(values, copy=True)
    width = bits_of(out.dtype)
    if not 0 <= bit < width:
        raise ValueError(f"bit must be in [0, {width}) for {out.dtype}, got {bit}")
    raw = out.view(_UINT[out.dtype])
    raw[index] ^= _UINT[out.dtype](1) << _UINT[out.dtype](bit)
    return out


def add_relative(values: np.ndarray, index: tuple[int, ...], relative: float) -> np.ndarray:
    """Add ``relative * max|values|`` (or ``relative`` if the block is zero) to one entry."""
    out = np.array(values, copy=True)
    scale = float(np.max(np.abs(out), initial=0.0)) or 1.0
    with np.errstate(over="ignore"):
        out[index] = out[index] + out.dtype.type(relative * scale)
    return out


def set_value(values: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    """Overwrite one entry (NaN, +-Inf, or any number)."""
    out = np.array(values, copy=True)
    out[index] = value
    return out


def stuck_at_zero(values: np.ndarray) -> np.ndarray:
    """The whole block reads as zeros (a dead unit)."""
    return np.zeros_like(values)

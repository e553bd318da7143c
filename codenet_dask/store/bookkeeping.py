"""One stored record per coded block: its roundoff bookkeeping and a digest of its values.

The record (float64) is ``[digest_hi, digest_lo, max_abs, err, updates, row_norms..., col_norms...]``:
everything a :class:`CodedBlock` carries besides its values, so blocks round-trip exactly, plus a
64-bit content digest (two exact 32-bit halves). The digest lets a write skip unchanged blocks by
comparing with what the store holds (not with what the caller believes it holds), and lets a read
tell a block whose chunk decodes fine but holds other bytes than were written (an overwritten or
stale chunk object) from a good one: such a block is an erasure, which costs one parity instead of
the two an unlocated error costs. Pure numpy: no I/O.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..kernels.blocks import CodedBlock

FIELDS = ("digest_hi", "digest_lo", "max_abs", "err", "updates")
_HEADER = len(FIELDS)


def record_length(bh: int, bw: int) -> int:
    """Floats in one block's record."""
    return _HEADER + bh + bw


def digest(values: np.ndarray) -> int:
    """64-bit BLAKE2b of the values' bytes, shape and dtype."""
    values = np.ascontiguousarray(values)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{values.dtype.str}{values.shape}".encode())
    h.update(values.tobytes())
    return int.from_bytes(h.digest(), "big")


def pack(block: CodedBlock) -> np.ndarray:
    """The record of ``block`` (values digested, not copied)."""
    d = digest(block.values)
    return np.concatenate(
        [
            np.array([d >> 32, d & 0xFFFFFFFF, block.max_abs, block.err, block.updates], dtype=np.float64),
            np.asarray(block.row_norms, dtype=np.float64),
            np.asarray(block.col_norms, dtype=np.float64),
        ]
    )


def record_digest(record: np.ndarray) -> int | None:
    """The digest a record names, or None if those fields are not two 32-bit integers."""
    hi, lo = record[0], record[1]
    for part in (hi, lo):
        if not (np.isfinite(part) and part == int(part) and 0 <= part < 2**32):
            return None
    return (int(hi) << 32) | int(lo)


def unpack(values: np.ndarray, record: np.ndarray) -> CodedBlock:
    """The CodedBlock stored as ``values`` + ``record``; ValueError naming what does not fit."""
    bh, bw = values.shape
    record = np.asarray(record, dtype=np.float64)
    if record.shape != (record_length(bh, bw),):
        raise ValueError(f"bookkeeping record has shape {record.shape}, expected ({record_length(bh, bw)},)")
    if not np.all(np.isfinite(record)):
        raise ValueError("bookkeeping record holds NaN or Inf (missing or damaged)")
    stored = record_digest(record)
    if stored is None:
        raise ValueError("bookkeeping digest fields are not 32-bit integers")
    if stored != digest(values):
        raise ValueError("values do not match their digest (chunk overwritten or stale)")
    max_abs, err, updates = float(record[2]), float(record[3]), record[4]
    row_norms, col_norms = record[_HEADER : _HEADER + bh], record[_HEADER + bh :]
    if (
        err < 0
        or max_abs < 0
        or updates < 0
        or updates != int(updates)
        or (row_norms < 0).any()
        or (col_norms < 0).any()
    ):
        raise ValueError("bookkeeping holds negative bounds or a fractional update count")
    return CodedBlock(
        values=values,
        row_norms=row_norms.copy(),
        col_norms=col_norms.copy(),
        max_abs=max_abs,
        err=err,
        updates=int(updates),
    )

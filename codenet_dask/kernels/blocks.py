"""One coded weight block and the bookkeeping that makes its results checkable.

A block carries, besides its values, cheap upper bounds that the checks need: the 2-norm of each
row and column (how large a product with it can be, hence how much roundoff it can carry) and
``err``, how far the stored values may be from the exact codeword after encoding and all updates
(floating-point encoding is never exact). The bounds are updated with each rank-B update by the
triangle inequality in O((rows + cols) * B) work, and recomputed exactly only by a scrub that
verified the values (``kernels.scrub``): refreshed from unverified values, a stored error would
enter the very bounds that are meant to expose it. A block may also carry a ``suspect`` mark: rows
and columns that a wrong update factor touched (``kernels.factors``), known wrong until a scrub
rebuilds them.
Pure numpy: this runs inside worker tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg.blas import get_blas_funcs

from ..codes import gamma, unit_roundoff


@dataclass(frozen=True, eq=False)
class Suspect:
    """Rows and columns of one block that a wrong update factor touched (``kernels.factors``).

    They are known to be wrong, so every check takes them as erasures, never as values: a
    product leaves the output entries they feed out of its sums, a scrub rebuilds them from their
    codewords (and the rebuilt block carries no mark).
    """

    rows: np.ndarray  # bool, one per block row
    cols: np.ndarray  # bool, one per block column

    def union(self, other: Suspect | None) -> Suspect:
        return self if other is None else Suspect(self.rows | other.rows, self.cols | other.cols)

    def stored(self) -> np.ndarray:
        """Flat indices of the block's entries in a marked row or column."""
        grid = np.zeros((self.rows.size, self.cols.size), bool)
        grid[self.rows, :] = True
        grid[:, self.cols] = True
        return np.flatnonzero(grid)

    def output(self, transpose: bool, batch: int) -> np.ndarray:
        """Flat indices of the entries of the block's product with a ``batch``-column operand
        (``W @ x``, or ``W.T @ d`` with ``transpose``) that marked entries feed: a marked row of
        ``W`` spoils that row of ``W @ x`` and every entry of ``W.T @ d``, a column the reverse."""
        own, other = (self.cols, self.rows) if transpose else (self.rows, self.cols)
        grid = np.zeros((own.size, batch), bool)
        grid[own, :] = True
        if other.any():
            grid[:] = True
        return np.flatnonzero(grid)


@dataclass(frozen=True)
class CodedBlock:
    """A coded weight block with its roundoff bookkeeping (see the module docstring)."""

    values: np.ndarray
    row_norms: np.ndarray
    col_norms: np.ndarray
    max_abs: float
    err: float
    updates: int = 0
    #: Entries a wrong update factor touched, not rebuilt yet (``None``: none).
    suspect: Suspect | None = None

    @classmethod
    def from_values(cls, values: np.ndarray, err: float = 0.0, updates: int = 0) -> CodedBlock:
        """Measure the norms of ``values`` exactly; ``err`` is inherited from how they were made."""
        values = np.ascontiguousarray(values)
        grow = 1 + gamma(max(values.shape) + 1, values.dtype)
        return cls(
            values=values,
            row_norms=np.linalg.norm(values, axis=1).astype(np.float64) * grow,
            col_norms=np.linalg.norm(values, axis=0).astype(np.float64) * grow,
            max_abs=float(np.max(np.abs(values), initial=0.0)) * grow,
            err=float(err),
            updates=updates,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def refreshed(self) -> CodedBlock:
        """Same values and ``err``, exact norms (and no mark: only a scrub that verified the values
        refreshes a block)."""
        return CodedBlock.from_values(self.values, self.err, self.updates)

    @classmethod
    def erased(cls, shape: tuple[int, int], dtype: np.dtype) -> CodedBlock:
        """A block whose values are lost (its worker was quarantined or left): every entry NaN, so
        provably wrong, and no bounds of its own, so the next scrub rebuilds it from its codewords."""
        rows, cols = shape
        return cls(np.full(shape, np.nan, dtype=dtype), np.zeros(rows), np.zeros(cols), 0.0, 0.0)


def encoding_error(terms: int, abs_combination_max: float, dtype: np.dtype) -> float:
    """Bound on max |fl(sum_i c_i B_i) - sum_i c_i B_i| given max of ``sum_i |c_i| |B_i|``."""
    return gamma(terms + 1, dtype) * abs_combination_max


@dataclass(frozen=True)
class Factor:
    """One encoded update factor (rows x B) with the statistics every block update reuses.

    Computed once per worker and factor, so a block update costs its GEMM plus O((rows + cols) B).
    """

    values: np.ndarray
    err: float
    abs_values: np.ndarray  # |values| in float64
    col_max: np.ndarray  # per batch column: max |values|
    col_norms: np.ndarray  # per batch column: 2-norm

    @classmethod
    def of(cls, values: np.ndarray, err: float = 0.0) -> Factor:
        abs_values = np.abs(values).astype(np.float64, copy=False)
        return cls(
            values,
            float(err),
            abs_values,
            abs_values.max(axis=0, initial=0.0),
            np.linalg.norm(values, axis=0).astype(np.float64),
        )


def apply_update(block: CodedBlock, delta: Factor, inputs: Factor, lr: float, *, in_place: bool = False) -> CodedBlock:
    """``block - lr * delta @ inputs.T`` with updated bounds.

    ``delta`` (rows x B) and ``inputs`` (cols x B) are this block's encoded factors; their ``err``
    bounds how far each may be from its exact encoding (zero for systematic pieces). With
    ``in_place`` the block's own array is overwritten (the caller must never read the old block
    again): no copy pass, no second block in memory.
    """
    dtype = block.dtype
    flags = block.values.flags
    reusable = in_place and flags.c_contiguous and flags.writeable and flags.aligned
    values = block.values if reusable else np.array(block.values, order="C", copy=True)
    gemm = get_blas_funcs("gemm", (values,))
    # values^T (Fortran view of the C array) += -lr * inputs @ delta^T: the update in place, one pass.
    # The factors go in as their transposes' Fortran views (no copies); BLAS transposes them back.
    out = gemm(-lr, inputs.values.T, delta.values.T, beta=1.0, c=values.T, trans_a=True, overwrite_c=True)
    values = out.T  # BLAS wrote into ``values`` itself unless f2py had to copy it (its result, then)
    batch = delta.values.shape[1]
    product_max = float(delta.col_max @ inputs.col_max)  # >= max |delta @ inputs.T|
    step = abs(lr) * product_max
    new_max = block.max_abs + step
    err = (
        block.err
        + abs(lr)
        * (
            gamma(batch + 2, dtype) * product_max
            + delta.err * float(inputs.col_max.sum())
            + inputs.err * float(delta.col_max.sum())
            + delta.err * inputs.err * batch
        )
        + 2 * unit_roundoff(dtype) * new_max
    )
    updates = block.updates + 1
    grow = 1 + gamma(batch + 2, dtype)
    row_step = abs(lr) * (delta.abs_values @ inputs.col_norms)
    col_step = abs(lr) * (inputs.abs_values @ delta.col_norms)
    return replace(
        block,
        values=values,
        row_norms=(block.row_norms + row_step) * grow + err * np.sqrt(values.shape[1]),
        col_norms=(block.col_norms + col_step) * grow + err * np.sqrt(values.shape[0]),
        max_abs=new_max * grow + err,
        err=err,
        updates=updates,
    )

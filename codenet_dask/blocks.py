"""One coded weight block and the bookkeeping that makes its results checkable.

A block carries, besides its values, cheap upper bounds that the checks need: the 2-norm of each
row and column (how large a product with it can be, hence how much roundoff it can carry) and
``err``, how far the stored values may be from the exact codeword after encoding and all updates
(floating-point encoding is never exact). The bounds are updated with each rank-B update by the
triangle inequality in O((rows + cols) * B) work, and recomputed exactly every
``REFRESH_EVERY`` updates, so no step needs an extra pass over the block.
Pure numpy: this runs inside worker tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .codes.roundoff import gamma, unit_roundoff

#: Recompute the exact row/column norms every this many updates (bounds only loosen in between).
REFRESH_EVERY = 16


@dataclass(frozen=True)
class CodedBlock:
    """A coded weight block with its roundoff bookkeeping (see the module docstring)."""

    values: np.ndarray
    row_norms: np.ndarray
    col_norms: np.ndarray
    max_abs: float
    err: float
    updates: int = 0

    @classmethod
    def from_values(cls, values: np.ndarray, err: float = 0.0, updates: int = 0) -> "CodedBlock":
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

    def refreshed(self) -> "CodedBlock":
        """Same values and ``err``, exact norms."""
        return CodedBlock.from_values(self.values, self.err, self.updates)


def encoding_error(terms: int, abs_combination_max: float, dtype: np.dtype) -> float:
    """Bound on max |fl(sum_i c_i B_i) - sum_i c_i B_i| given max of ``sum_i |c_i| |B_i|``."""
    return gamma(terms + 1, dtype) * abs_combination_max


def apply_update(
    block: CodedBlock,
    delta: np.ndarray,
    delta_err: float,
    inputs: np.ndarray,
    inputs_err: float,
    lr: float,
) -> CodedBlock:
    """``block - lr * delta @ inputs.T`` with updated bounds.

    ``delta`` (rows x B) and ``inputs`` (cols x B) are this block's encoded factors; ``*_err``
    bound how far each may be from its exact encoding (zero for systematic pieces).
    """
    dtype = block.dtype
    lr_c = dtype.type(lr)
    values = block.values - (lr_c * delta) @ inputs.T
    batch = delta.shape[1]
    delta_abs, inputs_abs = np.abs(delta), np.abs(inputs)
    d_max = delta_abs.max(axis=0, initial=0.0).astype(np.float64)  # per batch column
    x_max = inputs_abs.max(axis=0, initial=0.0).astype(np.float64)
    product_max = float(d_max @ x_max)  # >= max |delta @ inputs.T|
    step = abs(lr) * product_max
    new_max = block.max_abs + step
    err = (
        block.err
        + abs(lr) * (gamma(batch + 2, dtype) * product_max + delta_err * float(x_max.sum())
                     + inputs_err * float(d_max.sum()) + delta_err * inputs_err * batch)
        + 2 * unit_roundoff(dtype) * new_max
    )
    updates = block.updates + 1
    if updates % REFRESH_EVERY == 0:
        return CodedBlock.from_values(values, err, updates)
    grow = 1 + gamma(batch + 2, dtype)
    row_step = abs(lr) * (delta_abs.astype(np.float64) @ np.linalg.norm(inputs, axis=0).astype(np.float64))
    col_step = abs(lr) * (inputs_abs.astype(np.float64) @ np.linalg.norm(delta, axis=0).astype(np.float64))
    return replace(
        block,
        values=values,
        row_norms=(block.row_norms + row_step) * grow + err * np.sqrt(values.shape[1]),
        col_norms=(block.col_norms + col_step) * grow + err * np.sqrt(values.shape[0]),
        max_abs=new_max * grow + err,
        err=err,
        updates=updates,
    )

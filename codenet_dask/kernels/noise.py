"""How far a correct block product may be from its exact value: the detection thresholds' model.

Every check compares a full-resolution syndrome entry with ``LAMBDA`` times its modelled standard
deviation. The variance of one block result's entry ``R[r, b] = w_r . x_b`` (inner length ``m``,
unit roundoff ``u``) is modelled for recursive summation with rounding errors independent and
uniform in ``[-u, u]`` (Higham and Mary's probabilistic model), which bounds what blocked and
fused (FMA) BLAS kernels do:

    var ~= (u^2 / 3) * ( (m / 3) R^2  +  (m / 2 + 1) Q ),
    Q = sum_k w_rk^2 x_kb^2 <= min(|w_r|^2 max_k x_kb^2, max_k w_rk^2 |x_b|^2)

(``Q`` itself, a second small GEMM, where the inner length is at most ``EXACT_SPREAD``: there the
bound is loosest relative to the product's tiny roundoff, and the GEMM cheapest).

(the first term is the partial sums' mean growing, the second their random walk), plus the
stored block's distance from an exact codeword (encoding and every update round each entry once,
independently: a random walk of ``updates + 1`` roundings of the row's magnitude), seen through
``x_b``: ``drift_r * |x_b|^2``. The sums a worker forms in float64 add their own (tiny) rounding.
``LAMBDA = 6`` puts a false alarm of a check beyond 1e-9 per entry if the model were exact; the
model overestimates the real roundoff, which the test suite measures (README: detection).

Independently of the model, an entry no correct product can have (non-finite, or beyond the
Cauchy-Schwarz bound ``|w_r| |x_b| (1 + gamma) + err |x_b|_1`` with the block's rigorous ``err``) is
*provably* wrong: an erasure at a known position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..codes import gamma, unit_roundoff

if TYPE_CHECKING:
    from .blocks import CodedBlock

#: Thresholds are this many modelled standard deviations.
LAMBDA = 6.0
#: Inner lengths up to this get the exact ``Q`` (a GEMM of squares) instead of its bound.
EXACT_SPREAD = 64
#: Margin on the drift model, which already overestimates the measured drift 2-6x (README: detection).
DRIFT_MARGIN = 1.0


@dataclass(frozen=True)
class BlockStats:
    """What the noise model needs of one block product (``kernels.noise``), kept to re-evaluate it
    at a few entries in an attribution round."""

    row_norms: np.ndarray
    row_max: np.ndarray  # per row: the largest magnitude
    inner: int
    drift: np.ndarray  # per row: variance of the stored values' distance from the exact codeword
    bound: np.ndarray  # per row: the Cauchy-Schwarz magnitude bound's row factor (with the block's err)
    err: float
    u: float  # unit roundoff of the product's dtype


@dataclass(frozen=True)
class PieceStats:
    """Per batch column of an operand piece: 2-norm, 1-norm and largest magnitude."""

    norms2: np.ndarray
    norms1: np.ndarray
    maxima: np.ndarray

    @classmethod
    def of(cls, piece: np.ndarray) -> PieceStats:
        magnitudes = np.abs(piece).astype(np.float64, copy=False)
        return cls(
            np.sqrt(np.einsum("ij,ij->j", magnitudes, magnitudes)),
            magnitudes.sum(axis=0),
            magnitudes.max(axis=0, initial=0.0),
        )


def block_stats(block: CodedBlock, transpose: bool, inner: int, dtype: np.dtype) -> BlockStats:
    """What the model needs of one block as used in a product (its transpose for backprop)."""
    norms = block.col_norms if transpose else block.row_norms
    with np.errstate(invalid="ignore"):
        magnitudes = np.where(
            np.isfinite(block.values), np.abs(block.values), 0
        )  # a wrong entry's row is erased anyway
    row_max = magnitudes.max(axis=0 if transpose else 1, initial=0.0).astype(np.float64)
    u = unit_roundoff(dtype)
    drift = DRIFT_MARGIN * (block.updates + 1) * (u * u / 3) * norms**2 / max(inner, 1)
    return BlockStats(norms, row_max, inner, drift, norms * (1 + gamma(inner + 2, dtype)), float(block.err), u)


def entry_drift(block: CodedBlock, values: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The variance of each stored entry's distance from the exact codeword (``values``: the block's
    entries, or those at flat positions of ``rows``): ``updates + 1`` roundings of the entry's own
    magnitude, never less than its row's mean square (a row's large entries round with large
    errors; the row average of ``block_stats`` is right only for a product's sum over the row)."""
    u = unit_roundoff(block.dtype)
    mean_square = block.row_norms**2 / max(block.shape[1], 1)
    floor = mean_square[:, None] if rows is None else mean_square[rows]
    with np.errstate(invalid="ignore", over="ignore"):
        squared = np.where(np.isfinite(values), values.astype(np.float64) ** 2, 0.0)
    return DRIFT_MARGIN * (block.updates + 1) * (u * u / 3) * np.maximum(squared, floor)


def screen(values: np.ndarray, stats: BlockStats, piece: PieceStats) -> tuple[np.ndarray, np.ndarray]:
    """``values`` in float64 with provably wrong entries zeroed, and those entries' flat indices."""
    contribution = values.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        limit = np.outer(stats.bound, piece.norms2) + stats.err * piece.norms1[None, :]
        wrong = ~(np.abs(contribution) <= limit * (1 + 1e-12) + np.finfo(np.float64).tiny)
    flat = np.flatnonzero(wrong)
    if flat.size:
        contribution.flat[flat] = 0.0
    return contribution, flat


def dead(values: np.ndarray, stats: BlockStats, piece: PieceStats) -> bool:
    """Whether a block result reads all zeros although its operands are not zero (some row of the
    block and some column of the piece as computed have a nonzero norm): a dead unit or a dropped
    message, the fault that looks most like a codeword. Several such blocks in one codeword (the
    zero codeword beside one right block) would be read as one error at the right block, and
    corrected into zeros: so such a result is taken as a known erasure, like a mark (a legitimately
    zero result, which needs exact cancellation over the whole block, only costs a parity)."""
    return not values.any() and bool(np.any(stats.row_norms > 0)) and bool(np.any(piece.norms2 > 0))


def exact_spread(weights: np.ndarray, piece: np.ndarray) -> np.ndarray | None:
    """``Q = (W o W) @ (X o X)`` where the inner length is small enough (else None: use the bound)."""
    if weights.shape[1] > EXACT_SPREAD:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        w = np.where(np.isfinite(weights), weights, 0).astype(np.float64)
        x = piece.astype(np.float64)
        return (w * w) @ (x * x)


def product_variance(
    contribution: np.ndarray, stats: BlockStats, piece: PieceStats, sums: int, spread: np.ndarray | None = None
) -> np.ndarray:
    """The modelled variance of every entry of one block result (``contribution``: its float64 values,
    wrong ones zeroed), plus the rounding of ``sums`` float64 additions it goes through afterwards;
    ``spread``: the exact ``Q`` if known."""
    u, m = stats.u, stats.inner
    squared = contribution * contribution
    if spread is None:
        spread = np.minimum(np.outer(stats.row_norms**2, piece.maxima**2), np.outer(stats.row_max**2, piece.norms2**2))
    variance = (u * u / 3) * ((m / 3) * squared + (m / 2 + 1) * spread)
    variance += np.outer(stats.drift, piece.norms2**2)
    u64 = unit_roundoff(np.float64)
    variance += (u64 * u64 / 3) * sums * squared
    return variance


def at_entries(
    values: np.ndarray,
    flat: np.ndarray,
    shape: tuple[int, int],
    stats: BlockStats,
    piece: PieceStats,
    spread: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For a block result's ``values`` (float64) at flat entries ``flat``: which are provably wrong,
    and every entry's modelled variance (:func:`product_variance` restricted to those entries)."""
    rows, cols = np.unravel_index(flat, shape)
    with np.errstate(invalid="ignore", over="ignore"):
        limit = stats.bound[rows] * piece.norms2[cols] + stats.err * piece.norms1[cols]
        wrong = ~(np.abs(values) <= limit * (1 + 1e-12) + np.finfo(np.float64).tiny)
    clean = np.where(wrong, 0.0, values)
    u, m = stats.u, stats.inner
    if spread is None:
        at = np.minimum(
            stats.row_norms[rows] ** 2 * piece.maxima[cols] ** 2, stats.row_max[rows] ** 2 * piece.norms2[cols] ** 2
        )
    else:
        at = spread.reshape(-1)[flat]
    variance = (u * u / 3) * ((m / 3) * clean**2 + (m / 2 + 1) * at)
    variance += stats.drift[rows] * piece.norms2[cols] ** 2
    variance[wrong] = 0.0  # left out: the decoder treats these as erasures
    return wrong, variance

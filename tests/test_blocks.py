"""The rank-B update of one coded block: exact arithmetic whatever memory the block arrives in.

Blocks reach a worker from the network or the store, so their arrays may be read-only, unaligned
or not C-ordered; an in-place update must still land in the block it returns (BLAS wrappers copy
such arrays silently, and an update written into a discarded copy would be lost).
"""

from __future__ import annotations

import numpy as np
import pytest

from codenet_dask.kernels.blocks import CodedBlock, Factor, apply_update


def unaligned(values: np.ndarray) -> np.ndarray:
    """A copy of ``values`` whose data starts one byte off any alignment."""
    raw = np.zeros(values.nbytes + 1, dtype=np.uint8)
    out = raw[1:].view(values.dtype).reshape(values.shape)
    out[...] = values
    assert not out.flags.aligned
    return out


def read_only(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out.flags.writeable = False
    return out


LAYOUTS = {
    "plain": lambda v: v.copy(),
    "unaligned": unaligned,
    "read-only": read_only,
    "fortran": np.asfortranarray,
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("in_place", [False, True])
def test_update_is_exact_for_every_memory_layout(layout, in_place, dtype):
    rng = np.random.default_rng(7)
    start = rng.standard_normal((48, 40)).astype(dtype)
    delta, inputs = rng.standard_normal((48, 5)).astype(dtype), rng.standard_normal((40, 5)).astype(dtype)
    block = CodedBlock.from_values(start)
    block = CodedBlock(LAYOUTS[layout](start), block.row_norms, block.col_norms, block.max_abs, block.err)

    updated = apply_update(block, Factor.of(delta), Factor.of(inputs), 0.25, in_place=in_place)

    expected = start.astype(np.float64) - 0.25 * delta.astype(np.float64) @ inputs.astype(np.float64).T
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(updated.values, expected, rtol=tolerance, atol=tolerance)
    assert updated.values.flags.c_contiguous
    # Bounds stay bounds: every row and column norm, and the largest magnitude, still cover the values.
    assert np.all(np.linalg.norm(updated.values, axis=1) <= updated.row_norms)
    assert np.all(np.linalg.norm(updated.values, axis=0) <= updated.col_norms)
    assert np.max(np.abs(updated.values)) <= updated.max_abs
    reusable = layout == "plain"
    assert np.shares_memory(updated.values, block.values) == (in_place and reusable)
    if not (in_place and reusable):
        np.testing.assert_array_equal(np.asarray(block.values), start)  # the input block is untouched

"""Bad input gets a clear, typed error that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

import codenet_dask
from codenet_dask import (
    CodedLayer,
    CodeParameterError,
    IllConditionedCodeError,
    NonFiniteInputError,
    ShapeMismatchError,
    UnsupportedDtypeError,
)


def test_mismatched_shapes():
    with pytest.raises(ShapeMismatchError, match=r"\(4, 3\) and \(4, 2\) do not align"):
        codenet_dask.matmul(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ShapeMismatchError, match="two matrices"):
        codenet_dask.matmul(np.ones(4), np.ones((4, 2)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.complex128, np.bool_])
def test_integer_complex_and_bool_dtypes_are_refused(dtype):
    with pytest.raises(UnsupportedDtypeError, match="float32 or float64"):
        codenet_dask.matmul(np.ones((4, 3), dtype=dtype), np.ones((3, 2)))


def test_non_finite_inputs_are_user_errors_not_soft_errors():
    a = np.ones((6, 6))
    a[2, 3] = np.nan
    with pytest.raises(NonFiniteInputError, match="NaN or Inf"):
        codenet_dask.matmul(a, np.ones((6, 2)), grid=(2, 2)).compute(scheduler="sync")
    b = np.ones((6, 2))
    b[1, 1] = np.inf
    with pytest.raises(NonFiniteInputError, match="NaN or Inf"):
        codenet_dask.matmul(np.ones((6, 6)), b, grid=(2, 2)).compute(scheduler="sync")


def test_parity_the_grid_cannot_hold_and_unsafe_codes():
    with pytest.raises(CodeParameterError, match="parity must be a non-negative integer"):
        codenet_dask.matmul(np.ones((8, 8)), np.ones((8, 2)), parity=-1)
    with pytest.raises(IllConditionedCodeError, match="condition number"):
        codenet_dask.matmul(np.ones((100, 8)), np.ones((8, 2)), grid=(12, 1), parity=6)


def test_grid_finer_than_the_matrix():
    with pytest.raises(CodeParameterError, match="finer than the 3x8 matrix"):
        codenet_dask.matmul(np.ones((3, 8)), np.ones((8, 2)), grid=(4, 2))


def test_layer_input_errors(client):
    with pytest.raises(CodeParameterError, match="finer than"):
        CodedLayer.encode(client, np.ones((3, 10)), grid=(4, 2), parity=(1, 1))
    with pytest.raises(UnsupportedDtypeError):
        CodedLayer.encode(client, np.ones((8, 8), dtype=np.int32), grid=(2, 2))
    w = np.ones((8, 8))
    w[0, 0] = np.inf
    with pytest.raises(NonFiniteInputError):
        CodedLayer.encode(client, w, grid=(2, 2))
    layer = CodedLayer.encode(client, np.eye(8), grid=(2, 2), parity=(1, 1), name="badin")
    with pytest.raises(ShapeMismatchError, match=r"shape \(8, batch\)"):
        layer.forward(np.ones((7, 2)))
    with pytest.raises(ShapeMismatchError, match="dtype float32 but the layer is float64"):
        layer.forward(np.ones((8, 2), dtype=np.float32))
    with pytest.raises(NonFiniteInputError):
        layer.forward(np.full((8, 2), np.nan))
    with pytest.raises(CodeParameterError, match="learning rate"):
        layer.update(np.ones((8, 2)), np.ones((8, 2)), lr=0)
    with pytest.raises(ShapeMismatchError, match="batch"):
        layer.update(np.ones((8, 2)), np.ones((8, 3)), lr=0.1)

"""The judge's long double products (``exact.matmul``) against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codenet_dask import exact

U_LD = float(np.finfo(np.longdouble).eps) / 2


def _rational(x: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: Fraction(*v.as_integer_ratio()), otypes=[object])(x)


def _errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The worst error of ``exact.matmul`` and of the plain long double matmul, each in units of
    the documented bound: a long double unit of ``|a| @ |b|`` plus ``k 2**-BITS`` of the row's
    largest entry times the column's (what the slices leave out)."""
    truth = _rational(a) @ _rational(b)
    big_a, big_b = np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)
    cut = a.shape[1] * 2.0**-exact.BITS * big_a.max(axis=1, keepdims=True) * big_b.max(axis=0, keepdims=True)
    unit = np.maximum(U_LD * (big_a @ big_b) + cut, np.finfo(np.float64).tiny)

    def worst(got: np.ndarray) -> float:
        return float(np.max(np.abs((_rational(got) - truth).astype(np.float64)) / unit))

    return worst(exact.matmul(a, b)), worst(a.astype(np.longdouble) @ b.astype(np.longdouble))


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 6),
    k=st.integers(1, 300),
    n=st.integers(1, 5),
    spread=st.integers(0, 60),
    long_double=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_products_are_accurate_to_a_few_long_double_units_whatever_the_sizes_and_ranges(
    m: int, k: int, n: int, spread: int, long_double: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)) * np.exp2(rng.integers(-spread, spread + 1, (m, k)))
    b = rng.standard_normal((k, n)) * np.exp2(rng.integers(-spread, spread + 1, (k, n)))
    a[rng.random((m, k)) < 0.1] = 0.0
    if long_double:  # 64-digit entries, as the judge's shadow weights have
        a = a.astype(np.longdouble) * (1 + np.longdouble(2.0**-60) * rng.standard_normal((m, k)))
    ours, plain = _errors(a, b)
    assert ours <= 4.0, f"{ours:.2f} units of the bound (plain long double matmul: {plain:.2f})"


def test_the_default_networks_products_are_as_accurate_as_the_long_double_matmul() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 784)).astype(np.longdouble) * np.longdouble(0.05)
    x = np.maximum(rng.standard_normal((784, 3)), 0)
    ours, plain = _errors(w, x)
    assert ours <= max(plain, 2.0)


def test_products_long_double_holds_exactly_come_out_exact_and_zero_lines_zero() -> None:
    a = np.array([[0.0, 0.0], [3.0, -(2.0**-40)]])
    b = np.array([[1.0 + 2.0**-52], [2.0**30]])
    want = _rational(a) @ _rational(b)
    assert (_rational(exact.matmul(a, b)) == want).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_show_in_the_product_as_in_a_plain_one(bad: float) -> None:
    a = np.ones((2, 3))
    a[1, 2] = bad
    got = exact.matmul(a, np.ones((3, 2)))
    want = a.astype(np.longdouble) @ np.ones((3, 2), dtype=np.longdouble)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got[0]).all() and not np.isfinite(got[1]).any()


def test_mismatched_shapes_are_refused_with_both_shapes_named() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(2, 2\)"):
        exact.matmul(np.ones((2, 3)), np.ones((2, 2)))

"""Codes and codeword checks over many error patterns (exhaustive for small codes, hypothesis beyond)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from codeword_lab import corrupt, decode_all, make_codeword, relative_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codenet_dask.codes import MAX_CONDITION, ProductCode, SystematicMDSCode, gamma, mds_code
from codenet_dask.codes.decoder import benign_slack
from codenet_dask.errors import CodeParameterError, IllConditionedCodeError
from codenet_dask.faults.hook import Corruption
from codenet_dask.kernels import checks

SMALL_CODES = [(1, 1), (2, 1), (2, 2), (3, 2), (4, 2), (4, 3), (5, 4), (6, 2)]


# -- construction ---------------------------------------------------------------------------
@pytest.mark.parametrize("k,p", [*SMALL_CODES, (8, 4), (10, 4)])
@pytest.mark.parametrize("construction", ["chebyshev", "orthogonal"])
def test_code_is_systematic_and_checks_its_codewords(k, p, construction):
    code = SystematicMDSCode(k, p, construction=construction)
    g = code.generator
    assert np.array_equal(g[:k], np.eye(k))
    assert np.max(np.abs(code.check_matrix @ g)) < 1e-12 * max(1.0, np.max(np.abs(g)))
    assert 1.0 <= code.worst_condition <= MAX_CONDITION
    # Every k-subset decodes (MDS): the worst case is finite and certified.
    for rows in itertools.combinations(range(code.n), k):
        assert np.linalg.matrix_rank(g[list(rows)]) == k


def test_interleaved_chebyshev_is_much_better_conditioned_than_naive_bound():
    # The certificate is a real number we can compare: 4+2 loses fewer than 2 digits.
    assert mds_code(4, 2).worst_condition < 100
    assert mds_code(8, 4).worst_condition < 2e4


def test_unsafe_codes_are_refused_with_the_reason():
    with pytest.raises(IllConditionedCodeError, match=r"condition number 4\.4"):
        SystematicMDSCode(12, 6)
    with pytest.raises(CodeParameterError, match="cannot certify"):
        SystematicMDSCode(16, 8)
    with pytest.raises(CodeParameterError, match="k must be a positive integer"):
        SystematicMDSCode(0, 2)
    with pytest.raises(CodeParameterError, match="parity p"):
        SystematicMDSCode(3, -1)
    with pytest.raises(CodeParameterError, match="construction"):
        SystematicMDSCode(3, 1, construction="vandermonde")  # type: ignore[arg-type]


@pytest.mark.parametrize("k,p", SMALL_CODES)
def test_every_erasure_pattern_up_to_p_is_rebuilt(k, p):
    rng = np.random.default_rng(k * 10 + p)
    code = mds_code(k, p)
    codeword = code.encode(rng.standard_normal((k, 5, 3)))
    for count in range(1, p + 1):
        for erased in itertools.combinations(range(code.n), count):
            damaged = codeword.copy()
            damaged[list(erased)] = np.nan
            rebuilt = code.rebuild(damaged, erased)
            assert relative_error(rebuilt, codeword) < 1e-12, erased


def test_product_code_grid_is_codeword_in_both_directions():
    pc = ProductCode(3, 4, 2, 1)
    grid = pc.encode_grid(np.random.default_rng(0).standard_normal((3, 4, 5, 6)))
    assert grid.shape == (5, 5, 5, 6)
    for b in range(5):
        assert np.max(np.abs(pc.row_code.syndrome(grid[:, b]))) < 1e-12
    for a in range(5):
        assert np.max(np.abs(pc.col_code.syndrome(grid[a]))) < 1e-12
    assert pc.flop_ratio == pytest.approx((5 / 3 + 5 / 4 + 25 / 12) / 3)


# -- checks: helpers ------------------------------------------------------------------------
def exact_products(word):
    """Systematic results in float64 from the same operands (the reference)."""
    return [r.values.astype(np.float64) for r in word.clean[: word.code.k]]


def benign_bound(word, position: int, index: tuple[int, int]) -> float:
    """Largest error at ``index`` of ``position`` that the check may miss (the tests' stated bound).

    Detection is guaranteed once ``|e| |H[q, a]| |V[c, v]|`` exceeds the syndrome noise bound
    ``tau[q, r, v]`` for some q, v, times the code's ``benign_slack`` (a barely-detected error that
    no single position explains uniquely is accepted as roundoff) and 2 (the noise the error adds).
    """
    code = word.code
    proj = [checks.project(r, word.v) for r in word.clean]
    abs_h = np.abs(code.check_matrix)
    z = np.stack([p.z for p in proj])
    noise = np.stack([p.noise for p in proj])
    tau = np.tensordot(abs_h, noise, axes=1) + gamma(code.n, np.float64) * np.tensordot(abs_h, np.abs(z), axes=1)
    r, c = index
    ratios = [
        2 * benign_slack(code) * tau[q, r, v] / (abs_h[q, position] * abs(word.v[c, v]))
        for q in range(code.p)
        for v in range(word.v.shape[1])
        if abs_h[q, position] > 0
    ]
    return min(ratios)


def result_bound(word) -> float:
    """Roundoff bound (max over entries) of a decoded systematic result vs the exact product."""
    code = word.code
    worst = 0.0
    for r in word.clean:
        g = gamma(r.inner + 2, r.values.dtype)
        worst = max(
            worst,
            float(np.max(np.outer(r.operand_norms, r.input_norms2) * g + r.operand_err * r.input_norms1[None, :])),
        )
    amplification = float(np.max(np.abs(code.generator) @ np.abs(np.linalg.pinv(code.generator[: code.k]))))
    return worst * (1 + amplification * code.worst_condition)


def assert_decodes_to_clean(word, tolerance: float) -> None:
    verdict, decoded = decode_all(word)
    assert verdict.status != "uncorrectable", verdict
    for got, want in zip(decoded, exact_products(word)):
        assert relative_error(got, want) < tolerance


# -- single errors: every position, every bit ---------------------------------------------------
@pytest.mark.parametrize("dtype,bits", [(np.float64, 64), (np.float32, 32)])
def test_every_single_bit_flip_is_corrected_or_benign(dtype, bits):
    base = make_codeword(4, 2, rows=6, inner=64, batch=8, dtype=dtype, seed=1)
    reference = exact_products(base)
    missed = caught = 0
    for position in range(base.code.n):
        for bit in range(bits):
            word = make_codeword(4, 2, rows=6, inner=64, batch=8, dtype=dtype, seed=1)
            index = (bit % 6, bit % 8)
            corrupt(word, position, Corruption("block-forward", kind="bitflip", bit=bit, index=index))
            with np.errstate(invalid="ignore"):
                delta = np.abs(word.results[position].values.astype(np.float64) - word.clean[position].values)
            verdict, decoded = decode_all(word)
            assert verdict.status != "uncorrectable", (position, bit)
            if verdict.bad:
                assert verdict.bad == (position,), (position, bit, verdict)
                caught += 1
                limit = result_bound(word)
            else:
                missed += 1
                benign = benign_bound(word, position, index)
                assert np.nanmax(delta) <= benign, (position, bit, np.nanmax(delta), benign)
                limit = result_bound(word) + benign
            for got, want in zip(decoded, reference):
                assert np.max(np.abs(got - want)) <= limit, (position, bit)
            if dtype == np.float64 and verdict.bad:
                assert max(relative_error(g, w) for g, w in zip(decoded, reference)) < 1e-10
    # The exponent, sign and upper mantissa bits are always caught.
    assert caught >= base.code.n * (bits - (40 if bits == 64 else 20))
    assert missed + caught == base.code.n * bits


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf", "zero"])
@pytest.mark.parametrize("k,p", [(2, 1), (4, 2), (3, 3)])
def test_nonfinite_and_stuck_blocks_are_corrected_at_every_position(kind, k, p):
    """NaN/Inf are erasures (one parity each); a stuck-at-zero block is an unknown error (two)."""
    for position in range(k + p):
        word = make_codeword(k, p, rows=5, inner=32, batch=6, dtype=np.float64, seed=position)
        corrupt(word, position, Corruption("block-forward", kind=kind, index=(2, 3)))
        if kind == "zero" and p < 2:
            assert decode_all(word)[0].status == "uncorrectable"  # detected, not locatable
        else:
            assert_decodes_to_clean(word, 1e-10)


@pytest.mark.parametrize("k,p", [(2, 2), (4, 2), (3, 4), (5, 4)])
def test_every_pattern_within_capacity_is_corrected_exhaustively(k, p):
    """All combinations of e unknown errors and s erasures with 2e + s <= p, at every position set."""
    n = k + p
    for errors in range(p // 2 + 1):
        for erasures in range(p - 2 * errors + 1):
            for positions in itertools.combinations(range(n), errors + erasures):
                word = make_codeword(k, p, rows=4, inner=16, batch=5, dtype=np.float64, seed=sum(positions))
                for i, position in enumerate(positions):
                    kind = "add" if i < errors else "nan"
                    corrupt(word, position, Corruption("block-forward", kind=kind, relative=0.5 + i, index=(i, i)))
                assert_decodes_to_clean(word, 1e-10)


@pytest.mark.parametrize("k,p", [(2, 2), (4, 2), (3, 3), (4, 4)])
def test_patterns_beyond_correction_are_never_returned_wrong(k, p):
    """Between floor(p/2)+1 and p moderate unknown errors: reported uncorrectable, never miscorrected."""
    n = k + p
    reports = 0
    for count in range(p // 2 + 1, p + 1):
        for positions in itertools.combinations(range(n), count):
            word = make_codeword(k, p, rows=4, inner=16, batch=5, dtype=np.float64, seed=7 + sum(positions))
            for i, position in enumerate(positions):
                corrupt(
                    word, position, Corruption("block-forward", kind="add", relative=0.3 * (i + 1), index=(i, 2 * i))
                )
            verdict, decoded = decode_all(word)
            if verdict.status == "uncorrectable":
                reports += 1
            else:  # only acceptable if it is actually right
                for got, want in zip(decoded, exact_products(word)):
                    assert relative_error(got, want) < 1e-10, (positions, verdict)
    assert reports > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(1, 6),
    p=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    magnitudes=st.lists(st.floats(-6, 300), min_size=1, max_size=4),
    data=st.data(),
)
def test_random_patterns_within_capacity_decode_exactly(k, p, seed, magnitudes, data):
    n = k + p
    word = make_codeword(k, p, rows=3, inner=24, batch=4, dtype=np.float64, seed=seed)
    kinds = data.draw(
        st.lists(
            st.sampled_from(["add", "nan", "inf", "bitflip-exp"]), min_size=len(magnitudes), max_size=len(magnitudes)
        )
    )
    budget, chosen = p, []
    positions = data.draw(st.permutations(range(n)))
    for kind, magnitude, position in zip(kinds, magnitudes, positions):
        cost = 1 if kind in ("nan", "inf") else 2
        if cost > budget:
            continue
        budget -= cost
        chosen.append(position)
        if kind == "bitflip-exp":
            c = Corruption("block-forward", kind="bitflip", bit=62 - int(magnitude) % 3, index=(1, 1))
        else:
            c = Corruption("block-forward", kind=kind, relative=10.0**magnitude, index=(position % 3, 1))
        corrupt(word, position, c)
    assert_decodes_to_clean(word, 1e-10)


# -- false alarms ---------------------------------------------------------------------------------
def test_no_false_alarm_on_1000_clean_products():
    rng = np.random.default_rng(2024)
    for trial in range(1000):
        k, p = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        dtype = np.float32 if trial % 2 else np.float64
        word = make_codeword(
            k,
            p,
            rows=int(rng.integers(1, 9)),
            inner=int(rng.integers(1, 300)),
            batch=int(rng.integers(1, 9)),
            dtype=dtype,
            seed=trial,
            scale=float(10.0 ** rng.uniform(-8, 8)),
        )
        verdict = checks.check_projections(word.code, [checks.project(r, word.v) for r in word.results])
        assert verdict.status == "clean", (trial, verdict)

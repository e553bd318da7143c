"""Generalized PolyDot codes: thresholds, certified conditioning, decoding over error patterns.

Every accepted output is judged against the same product computed in long double, never against
the code's own thresholds: it must lie within 20x the error of the fault-free decoded output (the
project's detection standard, issue 13). Exhaustive over error patterns for small P, hypothesis
for larger, float32 and float64, errors from barely above roundoff to 1e300, NaN and Inf.
"""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codenet_dask.codes import (
    MAX_CONDITION,
    PolyDotCode,
    PolyDotLayer,
    offered_splits,
    polydot,
    polydot_code,
    polydot_layer,
)
from codenet_dask.codes.polydot import power_table
from codenet_dask.errors import CodeParameterError, IllConditionedCodeError, ShapeMismatchError, UncorrectableError

STANDARD = 20.0  # an accepted output may be at most this many times the clean output's error
DTYPES = [np.float32, np.float64]


# -- helpers ---------------------------------------------------------------------------------
class Product:
    """One coded product (forward or backward) of random operands, with its long-double reference."""

    def __init__(
        self, code: PolyDotCode, direction: str, dtype, seed: int, scale: float = 1.0, batch: int = 3, inner: int = 2
    ):
        rng = np.random.default_rng(seed)
        pair = 2 if code.complex_pieces else 1
        rows, cols = inner * code.m, inner * code.n * pair
        self.code, self.direction = code, direction
        self.w = (rng.standard_normal((rows, cols)) * scale).astype(dtype)
        pieces = code.encode_weights(self.w)
        drift = code.encoding_drift(self.w)
        wide = self.w.astype(np.longdouble)
        if direction == "forward":
            x = (rng.standard_normal((cols, batch)) * scale).astype(dtype)
            operand = code.encode_forward_input(x)
            self.results = code.forward(pieces, operand)
            self.scale = code.forward_scale(pieces, operand, self.results, drift)
            self.bound = code.forward_bound(pieces, operand)
            self.reference = wide @ x.astype(np.longdouble)
        else:
            d = (rng.standard_normal((rows, batch)) * scale).astype(dtype)
            operand = code.encode_backward_input(d)
            self.results = code.backward(pieces, operand)
            self.scale = code.backward_scale(pieces, operand, self.results, drift)
            self.bound = code.backward_bound(pieces, operand)
            self.reference = wide.T @ d.astype(np.longdouble)
        clean = self.decode(self.results)
        assert clean.check.status == "clean", clean.check
        self.clean_error = self.error(clean.values)

    def decode(self, results, erased=()):
        decode = self.code.decode_forward if self.direction == "forward" else self.code.decode_backward
        return decode(results, self.scale, erased, self.bound)

    def error(self, values) -> float:
        return float(np.max(np.abs(values.astype(np.longdouble) - self.reference)))

    @property
    def k(self) -> int:
        return self.code.forward_threshold if self.direction == "forward" else self.code.backward_threshold

    def corrupted(self, errors: dict[int, float], erasures: dict[int, float]) -> np.ndarray:
        """Results with entry (0, 0) of each error position moved by value x that result's max |entry|."""
        results = self.results.copy()
        for position, relative in errors.items():
            results[position].flat[0] += results.dtype.type(relative * float(np.max(np.abs(results[position]))))
        for position, value in erasures.items():
            results[position].flat[-1] = value
        return results

    def judge(self, decoded) -> float:
        """The accepted output's error over the fault-free one's (0 when nothing was accepted).

        Fault-free means the same decode of the clean results with the same results left out: a
        decode from fewer results amplifies roundoff by up to the certified condition number,
        whether they were left out for a fault or a straggler.
        """
        if decoded.values is None:
            return 0.0
        clean = self.clean_error
        if decoded.check.bad:
            clean = max(clean, self.error(self.decode(self.results, erased=decoded.check.bad).values))
        return self.error(decoded.values) / max(clean, np.finfo(np.float64).tiny)


def overflowed(results: np.ndarray, positions, bound: np.ndarray) -> set[int]:
    """The positions whose result the error pushed to Inf/NaN or past any right value: known bad."""
    with np.errstate(invalid="ignore"):
        return {a for a in positions if not np.all(np.isfinite(results[a])) or np.any(np.abs(results[a]) > bound[a])}


# -- construction, thresholds, conditioning ---------------------------------------------------
def test_module_examples_run():
    for module in (polydot, polydot_layer):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize("m,n", [(1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (3, 3), (4, 2)])
def test_recovery_thresholds_are_the_number_of_distinct_exponents_and_tight(m, n):
    """Forward needs mn + n - 1 results (the paper's K), backward 2mn - n, from the same W encoding.

    Worker p's result is a fixed linear combination of the products W[i, j] x[k] (or D[l]ᵀ W[i, j]):
    its coefficient row is a_p^(exponent). The rank of those rows over many workers is the number of
    results any decoder needs; with one fewer, the wanted sums are not in their span.
    """
    workers = 60
    code_w = np.array([n * i + j for i in range(m) for j in range(n)])
    for name, other, wanted, k in (
        ("forward", n - 1 - np.arange(n), lambda i, j, kk: j == kk, m * n + n - 1),
        ("backward", n * (m - 1 - np.arange(m)), lambda i, j, ll: i == ll, 2 * m * n - n),
    ):
        exponents = np.add.outer(code_w, other).ravel()  # one per product (block t, input piece)
        rows = power_table(workers, "circle", exponents)
        assert np.linalg.matrix_rank(rows) == k, name
        # The wanted functionals (S[i] or C[j]: sums of products) are in the span of any k rows ...
        targets = []
        for out in range(m if name == "forward" else n):
            pick = []
            for i, j in itertools.product(range(m), range(n)):
                for piece in range(len(other)):
                    hit = wanted(i, j, piece) and (i == out if name == "forward" else j == out)
                    pick.append(1.0 if hit else 0.0)
            targets.append(pick)
        targets = np.array(targets)
        for subset in (range(k), range(workers - k, workers), range(0, 2 * k, 2)):
            sub = rows[list(subset)]
            assert np.linalg.matrix_rank(np.vstack([sub, targets])) == k, (name, subset)
        # ... and not of k - 1 rows (the threshold is tight).
        sub = rows[: k - 1]
        assert np.linalg.matrix_rank(np.vstack([sub, targets])) > k - 1, name
    assert PolyDotCode(m, n, m * n * 2 + 2).forward_threshold == m * n + n - 1


@pytest.mark.parametrize("construction", ["circle", "chebyshev"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_worker_products_and_update_match_long_double(construction, dtype):
    code = PolyDotCode(2, 2, 9, construction, max_erasures=1)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 16)).astype(dtype)
    x, d = rng.standard_normal((16, 5)).astype(dtype), rng.standard_normal((8, 5)).astype(dtype)
    wide = {name: a.astype(np.longdouble) for name, a in (("w", w), ("x", x), ("d", d))}
    pieces = code.encode_weights(w)
    xp, dp = code.encode_forward_input(x), code.encode_backward_input(d)
    forward = code.decode_forward(code.forward(pieces, xp), code.forward_scale(pieces, xp, code.forward(pieces, xp)))
    backward = code.decode_backward(
        code.backward(pieces, dp), code.backward_scale(pieces, dp, code.backward(pieces, dp))
    )
    u, v = code.encode_update_factors(d, x)
    updated = code.decode_weights(code.update(pieces, u, v, 0.25), 8, 16)
    # A worker can encode its own share: its rows of the full encoding (up to summation order).
    mine = [3, 7]
    close = lambda a, b: np.allclose(a, b, rtol=0, atol=8 * np.finfo(dtype).eps * float(np.max(np.abs(b))))
    assert close(code.encode_weights(w, mine), pieces[mine])
    assert close(code.encode_forward_input(x, mine), xp[mine])
    assert close(code.encode_backward_input(d, mine), dp[mine])
    assert all(close(a, b[mine]) for a, b in zip(code.encode_update_factors(d, x, mine), (u, v)))
    cases = [
        (forward.values, wide["w"] @ wide["x"], w @ x),
        (backward.values, wide["w"].T @ wide["d"], w.T @ d),
        (updated, wide["w"] - 0.25 * wide["d"] @ wide["x"].T, w - dtype(0.25) * (d @ x.T)),
    ]
    for got, reference, plain in cases:
        assert got.dtype == dtype
        plain_error = float(np.max(np.abs(plain - reference))) + np.finfo(dtype).eps * float(np.max(np.abs(reference)))
        limit = (STANDARD if construction == "circle" else 1e4) * plain_error  # chebyshev loses digits
        assert float(np.max(np.abs(got - reference))) <= limit


def test_certified_conditioning_for_every_offered_split():
    """P = 9..36: every offered split certifies <= 1e6 over every decoding its decoder may run."""
    offered = 0
    for workers in range(9, 37):
        splits = offered_splits(workers)
        assert (2, 2) in splits or workers < 7
        for m, n in splits:
            code = polydot_code(m, n, workers)
            assert code.worst_condition <= MAX_CONDITION
            assert 0 <= code.erasure_budget <= workers - max(code.forward_threshold, code.backward_threshold)
            for cert in code.certificates.values():
                assert cert.exhaustive or cert.checked >= 4000
            offered += 1
    assert offered > 300


def test_certificate_is_the_true_worst_over_subsets_when_exhaustive():
    code = PolyDotCode(2, 2, 10)
    g = code.code("backward").generator()
    cert = code.certificates["backward"]
    assert cert.exhaustive
    worst = max(
        np.linalg.norm(g, 2) / np.linalg.svd(g[list(rows)], compute_uv=False)[-1]
        for rows in itertools.combinations(range(10), cert.subset_size)
    )
    assert cert.worst == pytest.approx(worst, rel=1e-9)


def test_ill_conditioned_parameters_are_refused_with_the_fix():
    with pytest.raises(IllConditionedCodeError, match=r"max_erasures=\d+ \(the most that certify\)"):
        PolyDotCode(2, 4, 36, max_erasures=36 - 12)
    assert PolyDotCode(2, 4, 36).erasure_budget < 36 - 12  # the default takes what certifies
    with pytest.raises(IllConditionedCodeError, match=r"chebyshev.*construction=.circle."):
        PolyDotCode(4, 3, 24, "chebyshev")
    with pytest.raises(CodeParameterError, match="needs more than 6 workers"):
        PolyDotCode(2, 2, 6)
    with pytest.raises(CodeParameterError, match="m must be a positive integer"):
        PolyDotCode(0, 2, 9)
    with pytest.raises(CodeParameterError, match="construction"):
        PolyDotCode(2, 2, 9, "vandermonde")  # type: ignore[arg-type]
    with pytest.raises(CodeParameterError, match="max_erasures"):
        PolyDotCode(2, 2, 9, max_erasures=4)
    with pytest.raises(ShapeMismatchError, match="pad W"):
        polydot_code(2, 2, 9).encode_weights(np.zeros((4, 6)))


# -- decoding over error patterns ------------------------------------------------------------
BIG = [1e-3, 1.0, 1e6, 1e300]
ERASED = [np.nan, np.inf, -np.inf, None]  # None: the result is missing (declared erased)


def _patterns(code, workers: int):
    """Every (errors, erasures) placement within capacity: 2e + s <= P - K, an erasure past the
    certified budget costing two."""
    for s in range(workers + 1):
        for erased in itertools.combinations(range(workers), s):
            rest = [a for a in range(workers) if a not in erased]
            for e in range(code.capacity(s) + 1):
                for errors in itertools.combinations(rest, e):
                    yield errors, erased


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,workers,direction", [(2, 2, 10, "forward"), (2, 2, 10, "backward"), (1, 2, 7, "forward")])
def test_every_error_and_erasure_pattern_within_capacity_is_corrected(m, n, workers, direction, dtype):
    code = PolyDotCode(m, n, workers)
    product = Product(code, direction, dtype, seed=workers + m)
    assert code.erasure_budget == workers - max(code.forward_threshold, code.backward_threshold)
    count = 0
    for index, (errors, erased) in enumerate(_patterns(code.code(direction), workers)):
        faults = {a: BIG[(index + i) % len(BIG)] for i, a in enumerate(errors)}
        marks = {a: ERASED[(index + i) % len(ERASED)] for i, a in enumerate(erased)}
        results = product.corrupted(faults, {a: v for a, v in marks.items() if v is not None})
        decoded = product.decode(results, erased=[a for a, v in marks.items() if v is None])
        assert decoded.check.status != "uncorrectable", (errors, erased, decoded.check)
        # An error that overflowed, or is larger than any right result, is known bad: an erasure.
        assert decoded.check.bad == tuple(sorted(errors + erased)), (errors, erased, decoded.check)
        assert set(errors) - set(decoded.check.located) <= overflowed(results, errors, product.bound)
        assert product.judge(decoded) <= STANDARD, (errors, erased)
        count += 1
    assert count > 250


@pytest.mark.parametrize("dtype", DTYPES)
def test_errors_barely_above_roundoff_are_corrected_or_harmless(dtype):
    """Every single error from 1e-9 of a result's max up: detected or within the standard, never worse."""
    code = PolyDotCode(2, 2, 10)
    for direction in ("forward", "backward"):
        product = Product(code, direction, dtype, seed=11, batch=6)
        unit = float(np.finfo(dtype).eps)
        located = 0
        for relative in unit * 10.0 ** np.arange(0, 8, 0.25):
            for position in range(code.workers):
                decoded = product.decode(product.corrupted({position: relative}, {}))
                assert product.judge(decoded) <= STANDARD, (direction, relative, position, decoded.check)
                if decoded.check.status == "uncorrectable":
                    assert decoded.values is None
                located += decoded.check.located == (position,)
        assert located > 0


def test_an_ambiguous_pattern_is_reported_never_resolved_silently():
    """An error just above the noise: removing it fits, and so does removing another result.

    Both explanations are within capacity, so the decoder must report the product uncorrectable
    (ambiguous) rather than pick one; at every size the accepted output meets the standard.
    """
    code = PolyDotCode(1, 2, 5)  # forward K = 3: one error correctable, two detected
    product = Product(code, "forward", np.float64, seed=5, batch=1)
    sigma = float(np.max(product.scale))
    ambiguous = 0
    for level in np.geomspace(1, 100, 80):
        for position in range(code.workers):
            results = product.results.copy()
            results[position].flat[0] += level * sigma
            decoded = product.decode(results)
            if decoded.check.ambiguous:
                ambiguous += 1
                assert decoded.check.status == "uncorrectable" and decoded.values is None
            assert product.judge(decoded) <= STANDARD
    assert ambiguous > 0


HYPOTHESIS_CODES = [(2, 2, 16), (3, 2, 20), (2, 3, 24), (1, 4, 18), (4, 2, 30), (2, 2, 36)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(HYPOTHESIS_CODES) - 1),
    dtype=st.sampled_from(DTYPES),
    direction=st.sampled_from(["forward", "backward"]),
    data=st.data(),
)
def test_random_error_patterns_on_larger_codes(which, dtype, direction, data):
    code = polydot_code(*HYPOTHESIS_CODES[which])
    product = Product(code, direction, dtype, seed=which, inner=12)
    redundancy = code.workers - product.k
    erasures = data.draw(st.integers(0, min(code.erasure_budget, redundancy)), label="erasures")
    errors = data.draw(st.integers(0, (redundancy - erasures) // 2), label="errors")
    order = data.draw(st.permutations(range(code.workers)), label="positions")
    sizes = data.draw(st.lists(st.floats(-3, 300), min_size=errors, max_size=errors), label="log10 sizes")
    faults = {a: 10.0**s * (1 if i % 2 else -1) for i, (a, s) in enumerate(zip(order[:errors], sizes))}
    marks = {a: ERASED[i % len(ERASED)] for i, a in enumerate(order[errors : errors + erasures])}
    results = product.corrupted(faults, {a: v for a, v in marks.items() if v is not None})
    decoded = product.decode(results, erased=[a for a, v in marks.items() if v is None])
    assert decoded.check.status != "uncorrectable", decoded.check
    assert decoded.check.bad == tuple(sorted([*faults, *marks])), decoded.check
    assert set(faults) - set(decoded.check.located) <= overflowed(results, faults, product.bound)
    assert product.judge(decoded) <= STANDARD


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_errors_of_mixed_sizes_are_located_algebraically(dtype):
    """Ten wrong results on 36 workers (too many patterns to try): peeling and Prony place them."""
    code = polydot_code(2, 2, 36)
    for seed in range(6):
        product = Product(code, "backward", dtype, seed=seed, inner=16)
        rng = np.random.default_rng(seed)
        wrong = rng.choice(code.workers, 10, replace=False)
        faults = {int(a): float(10.0 ** rng.uniform(-4, 0.5)) * rng.choice([-1, 1]) for a in wrong}
        results = product.corrupted(faults, {})
        decoded = product.decode(results)
        assert decoded.check.status == "corrected" and decoded.check.search == "algebraic", decoded.check
        assert decoded.check.bad == tuple(sorted(faults))
        known = overflowed(results, faults, product.bound)
        assert set(faults) - set(decoded.check.located) <= known and len(known) < 6
        assert product.judge(decoded) <= STANDARD


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_false_alarms_over_clean_products(dtype):
    """Random shapes, scales 1e-8..1e8, random-sign and same-signed data, every code family member."""
    rng = np.random.default_rng(7)
    codes = [polydot_code(*c) for c in [(2, 2, 9), (2, 2, 16), (3, 2, 12), (1, 3, 10), (2, 3, 20), (4, 1, 12)]]
    alarms, products = 0, 0
    for trial in range(150):
        code = codes[trial % len(codes)]
        pair = 2 if code.complex_pieces else 1
        rows = code.m * int(rng.integers(1, 40))
        cols = code.n * pair * int(rng.integers(1, 40))
        batch = int(rng.integers(1, 20))
        scale = 10.0 ** rng.uniform(-8, 8)
        kind = trial % 3
        draw = (lambda *s: rng.uniform(0, 1, s)) if kind == 1 else (lambda *s: rng.standard_normal(s))
        w = (draw(rows, cols) * scale * (10.0 ** rng.uniform(-3, 3, (rows, 1)) if kind == 2 else 1)).astype(dtype)
        x, d = (draw(cols, batch) * scale).astype(dtype), (draw(rows, batch) * scale).astype(dtype)
        pieces, drift = code.encode_weights(w), code.encoding_drift(w)
        xp, dp = code.encode_forward_input(x), code.encode_backward_input(d)
        fr, br = code.forward(pieces, xp), code.backward(pieces, dp)
        for decoded in (
            code.decode_forward(fr, code.forward_scale(pieces, xp, fr, drift)),
            code.decode_backward(br, code.backward_scale(pieces, dp, br, drift)),
        ):
            alarms += decoded.check.status != "clean"
            products += 1
        alarms += code.check_weights(pieces, drift[:, None, None]).status != "clean"
    assert products == 300 and alarms == 0


# -- the reference layer ---------------------------------------------------------------------
def _run_layer(dtype, steps: int, fault=None, scrub_every: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    code = polydot_code(2, 2, 12)
    rows, cols, batch, lr = 32, 48, 8, 0.01
    w0 = rng.standard_normal((rows, cols)).astype(dtype)
    layer = PolyDotLayer.encode(w0, code, fault=fault)
    reference, plain = w0.astype(np.longdouble), w0.copy()
    worst = 0.0
    for step in range(steps):
        x = rng.standard_normal((cols, batch)).astype(dtype)
        d = (0.1 * rng.standard_normal((rows, batch))).astype(dtype)
        outputs = (layer.forward(x), layer.backward(d))
        references = (reference @ x.astype(np.longdouble), reference.T @ d.astype(np.longdouble))
        plains = (plain @ x, plain.T @ d)
        for got, want, base in zip(outputs, references, plains):
            floor = float(np.max(np.abs(base - want))) + np.finfo(dtype).eps * float(np.max(np.abs(want)))
            worst = max(worst, float(np.max(np.abs(got - want))) / floor)
        layer.update(d, x, lr)
        reference = reference - lr * d.astype(np.longdouble) @ x.astype(np.longdouble).T
        plain = plain - dtype(lr) * (d @ x.T)
        if step % scrub_every == scrub_every - 1:
            layer.scrub()
    weight_error = float(np.max(np.abs(layer.weights() - reference)))
    plain_error = float(np.max(np.abs(plain - reference))) + np.finfo(dtype).eps * float(np.max(np.abs(reference)))
    return layer, worst, weight_error / plain_error


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_tracks_numpy_over_many_steps_without_reencoding(dtype):
    layer, worst, weights = _run_layer(dtype, steps=400)
    assert layer.encode_count == 1
    assert worst <= STANDARD and weights <= STANDARD
    assert {check.status for _, check in layer.checks} == {"clean"}
    assert len(layer.checks) == 2 * 400 + 4  # every product and every scrub checked


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_corrects_faults_in_every_step_kind(dtype):
    """Wrong results in forward and backward, a wrong update that persists until a scrub rebuilds it."""
    rng = np.random.default_rng(1)
    log = []

    def fault(kind, stacked):
        if rng.random() < 0.3:
            worker = int(rng.integers(stacked.shape[0]))
            value = [np.nan, 1e30, 1e-2 * float(np.max(np.abs(stacked[worker])))][len(log) % 3]
            stacked[worker].flat[int(rng.integers(stacked[worker].size))] += value
            log.append((kind, worker))
        return stacked

    layer, worst, weights = _run_layer(dtype, steps=60, fault=fault, scrub_every=5, seed=3)
    kinds = {kind for kind, _ in log}
    assert kinds == {"forward", "backward", "update"}
    assert worst <= STANDARD and weights <= STANDARD
    assert layer.encode_count == 1
    scrubs = [check for kind, check in layer.checks if kind == "scrub"]
    assert any(check.located or check.erased for check in scrubs)  # a bad stored piece was rebuilt
    assert all(check.status != "uncorrectable" for _, check in layer.checks)


def test_layer_refuses_what_it_cannot_correct():
    def fault(kind, stacked):
        if kind == "forward":  # four wrong results: beyond the 3 a 2x2 code on 12 workers corrects
            for worker in range(4):
                stacked[worker].flat[0] += 1e-2 * np.max(np.abs(stacked[worker]))
        return stacked

    rng = np.random.default_rng(0)
    layer = PolyDotLayer.encode(rng.standard_normal((8, 8)), polydot_code(2, 2, 12), fault=fault)
    with pytest.raises(UncorrectableError, match="recompute"):
        layer.forward(rng.standard_normal((8, 2)))
    verdict = layer.checks[-1][1]
    assert verdict.status == "uncorrectable" and math.isfinite(verdict.excess) and verdict.excess > 1

"""The completion-time model: codeword outcomes, closed form vs Monte Carlo, optimal interval, strategies, plot."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from codenet_dask.checkpointing import (
    Codeword,
    Product,
    RunModel,
    StepModel,
    codenet,
    expected_time,
    expected_times,
    optimal_interval,
    plot_expected_time,
    replication,
    simulate,
    uncoded,
    young_daly_interval,
)
from codenet_dask.codes import ProductCode
from codenet_dask.errors import CodeNetError, ModelParameterError

T, C, R = 0.3, 0.5, 2.0


# --- codewords and steps ---------------------------------------------------------------------------


@pytest.mark.parametrize("codeword", [Codeword(6, 1, 6), Codeword(6, 1, 2), Codeword(3, 1, 1), Codeword(1, 0, 0)])
def test_codeword_outcomes_match_direct_sampling_of_wrong_blocks(codeword):
    q, draws = 0.15, 200_000
    wrong = np.random.default_rng(7).binomial(1, q, size=(draws, codeword.n)).sum(axis=1)
    sampled = [
        np.mean(wrong <= codeword.correct),
        np.mean((wrong > codeword.correct) & (wrong <= codeword.detect)),
        np.mean(wrong > codeword.detect),
    ]
    outcomes = codeword.outcomes(q)
    assert math.isclose(sum(outcomes), 1.0)
    for model, seen in zip(outcomes, sampled, strict=True):
        assert abs(model - seen) <= 4 * math.sqrt(model * (1 - model) / draws) + 1e-12


def test_replica_votes_in_closed_form():
    q = 0.01
    one_codeword = Codeword(3, 1, 3).outcomes(q)
    assert one_codeword.ok == pytest.approx((1 - q) ** 3 + 3 * q * (1 - q) ** 2)
    assert one_codeword.silent == 0.0
    forward = replication(q, 3, base_time=T).products[0]
    assert forward.reject == pytest.approx(1 - (1 - one_codeword.retry) ** 16)  # 4x4 grid: 16 voted blocks
    worst = Codeword(3, 1, 1).outcomes(q)  # two wrong copies may agree and outvote the right one
    assert worst.silent == pytest.approx(3 * q**2 * (1 - q) + q**3)
    always_wrong = Product.checked(1.0, [(Codeword(3, 1, 3), 0), (Codeword(1, 0, 0), 2)], time=1.0)
    assert (always_wrong.reject, always_wrong.silent) == (0.0, 1.0)  # empty kinds are skipped, not divided by


def test_codenet_step_costs_the_product_code_flop_ratio_and_fails_as_retries_run_out():
    step = codenet(0.01, base_time=T, grid=(4, 4), parity=(2, 2), layers=2, max_attempts=3)
    assert step.base_time == pytest.approx(T * ProductCode(4, 4, 2, 2).flop_ratio) == pytest.approx(T * 1.75)
    forward = step.products[0]
    column_retry = Codeword(6, 1, 6).outcomes(0.01).retry
    assert forward.reject == pytest.approx(1 - (1 - column_retry) ** 4)
    fails = [p.reject**3 for p in step.products]
    assert step.p_fail == pytest.approx(1 - np.prod([1 - f for f in fails]))
    assert step.p_fail < codenet(0.01, base_time=T, layers=2, max_attempts=2).p_fail
    assert step.recompute_overhead > 0
    assert step.step_time == pytest.approx(step.base_time + step.recompute_overhead, rel=1e-3)  # failures rare


def test_strategies_with_faults_only_uncoded_fails_silently():
    q = 1e-3
    assert uncoded(q, base_time=T).p_fail == 0.0
    assert uncoded(q, base_time=T).p_silent == pytest.approx(1 - (1 - q) ** 32)  # 16 blocks forward + 16 backward
    for rate in (q, 0.3):  # 0.3: every pattern up to all-wrong is likely enough to show in float
        for step in (codenet(rate, base_time=T), replication(rate, 3, base_time=T), replication(rate, 2, base_time=T)):
            assert step.p_silent == 0.0, step.name
            assert RunModel(step, 1000, C, R).silent_probability == 0.0
    # Under worst-case (agreeing) errors the guarantee shrinks to capacity, and it shows.
    assert 0 < codenet(q, base_time=T, errors="worst").p_silent < uncoded(q, base_time=T).p_silent
    assert replication(q, 3, base_time=T, errors="worst").p_silent > 0


def test_codenet_beats_triple_replication_exactly_when_its_flop_ratio_is_lower():
    q = 1e-3

    def best(step: StepModel) -> float:
        run = RunModel(step, 1000, C, R)
        return expected_time(run.with_interval(optimal_interval(run)))

    r3 = best(replication(q, 3, base_time=T))
    assert best(codenet(q, base_time=T)) < r3  # flop ratio 1.75 < 3
    assert best(codenet(q, base_time=T, grid=(1, 1), parity=(2, 2))) > r3  # 1x1 + 2x2 parity: ratio 5 > 3
    assert best(uncoded(q, base_time=T)) < best(codenet(q, base_time=T))  # speed bought with silent errors


# --- closed form vs Monte Carlo ----------------------------------------------------------------------

CASES = {
    "codenet, rare failures": RunModel(codenet(1e-3, base_time=T), 300, C, R, 50),
    "uncoded, p_fail = 0, last segment short": RunModel(uncoded(0.01, base_time=T), 250, C, R, 40),
    "measured, p_fail = 0.1": RunModel(StepModel.measured("flaky", T, 0.1), 200, C, R, 15),
    "replication r=2, retries and rollbacks": RunModel(
        replication(0.05, 2, base_time=T, grid=(2, 2), layers=2), 300, C, R, 7
    ),
    "codenet 2x2+1x1, p_fail ~ 0.2": RunModel(
        codenet(0.08, base_time=T, grid=(2, 2), parity=(1, 1), layers=2), 200, C, 3.0, 10
    ),
    "checkpoint every step": RunModel(StepModel.measured("flaky", T, 0.02), 100, 0.2, 1.0, 1),
    "interval longer than the run": RunModel(StepModel.measured("flaky", T, 0.01), 100, 0.2, 1.0, 500),
}


@pytest.mark.parametrize("name", CASES)
def test_closed_form_lies_in_the_monte_carlo_interval(name):
    run = CASES[name]
    mc = simulate(run, replicates=4000, seed=11, confidence=0.999)
    assert mc.contains(expected_time(run)), (name, expected_time(run), mc)


@pytest.mark.parametrize("name", [n for n, run in CASES.items() if run.step.p_fail > 0.01])
def test_monte_carlo_rejects_a_closed_form_that_forgets_the_restart_cost(name):
    run = CASES[name]
    mc = simulate(run, replicates=4000, seed=11, confidence=0.999)
    assert not mc.contains(expected_time(replace(run, restart_cost=0.0)))


def test_monte_carlo_rejects_a_step_time_that_ignores_where_a_failing_step_stops():
    run = CASES["codenet 2x2+1x1, p_fail ~ 0.2"]
    step = run.step
    untruncated = sum(p.time * p.attempts(step.max_attempts) for p in step.products)
    assert untruncated > step.step_time * 1.05
    p, k = step.p_fail, run.interval
    wrong = run.steps // k * ((untruncated + p * run.restart_cost) * ((1 - p) ** -k - 1) / p + run.checkpoint_cost)
    right = run.steps // k * ((step.step_time + p * run.restart_cost) * ((1 - p) ** -k - 1) / p + run.checkpoint_cost)
    assert expected_time(run) == pytest.approx(right)
    mc = simulate(run, replicates=4000, seed=11)
    assert mc.contains(right) and not mc.contains(wrong)


def test_no_failures_means_steps_plus_checkpoints():
    run = RunModel(uncoded(0.2, base_time=T), 250, C, R, 40)
    assert expected_time(run) == pytest.approx(250 * T + math.ceil(250 / 40) * C)


def test_monte_carlo_silent_fraction_matches_the_model():
    run = RunModel(codenet(0.02, base_time=T, errors="worst"), 300, C, R, 25)
    mc = simulate(run, replicates=4000, seed=5)
    p = run.silent_probability
    assert 0.05 < p < 0.95
    assert abs(mc.silent_fraction - p) <= 4 * math.sqrt(p * (1 - p) / 4000)


def test_monte_carlo_is_reproducible_with_a_seed():
    run = CASES["measured, p_fail = 0.1"]
    assert simulate(run, 500, seed=3) == simulate(run, 500, seed=3)
    assert simulate(run, 500, seed=3) != simulate(run, 500, seed=4)


# --- optimal interval -------------------------------------------------------------------------------


@pytest.mark.parametrize("p_fail", [1e-5, 1e-4, 1e-3, 0.02, 0.1])
def test_exact_optimum_is_never_worse_than_young_daly(p_fail):
    run = RunModel(StepModel.measured("s", T, p_fail), 5000, C, R)
    best, yd = optimal_interval(run), young_daly_interval(run)
    times = [expected_time(run.with_interval(k)) for k in range(1, run.steps + 1)]
    assert expected_time(run.with_interval(best)) == pytest.approx(min(times), rel=1e-12)
    assert expected_time(run.with_interval(best)) <= expected_time(run.with_interval(yd))


def test_young_daly_is_close_for_small_p_fail_and_worse_for_large():
    small = RunModel(StepModel.measured("s", T, 1e-4), 20_000, C, R)
    k_yd, k_best = young_daly_interval(small), optimal_interval(small)
    assert k_yd == round(math.sqrt(2 * C / (1e-4 * T)))
    assert abs(k_yd - k_best) / k_best < 0.05
    assert expected_time(small.with_interval(k_yd)) / expected_time(small.with_interval(k_best)) - 1 < 1e-4
    large = RunModel(StepModel.measured("s", T, 0.2), 2000, 5.0, R)
    assert expected_time(large.with_interval(young_daly_interval(large))) > 1.01 * expected_time(
        large.with_interval(optimal_interval(large))
    )


def test_intervals_at_the_edges():
    never = RunModel(uncoded(0.01, base_time=T), 300, C, R)
    assert young_daly_interval(never) == 300 and optimal_interval(never) == 300
    free = RunModel(StepModel.measured("s", T, 0.05), 300, 0.0, R)
    assert young_daly_interval(free) == 1 and optimal_interval(free) == 1
    doomed = RunModel(StepModel.measured("s", T, 1.0), 10, C, R)
    assert np.all(np.isinf(expected_times(doomed, [1, 5, 20])))
    with pytest.raises(ModelParameterError, match="simulate"):
        simulate(doomed)


# --- plot and errors --------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path):
    import matplotlib.image

    runs = [
        RunModel(s, 1000, C, R)
        for s in (codenet(0.02, base_time=T), replication(0.02, 3, base_time=T), replication(0.02, 2, base_time=T))
    ]
    path = plot_expected_time(runs, tmp_path / "expected.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 200 and width > 300


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: RunModel(uncoded(0.1, base_time=T), 100, -1.0, R), "checkpoint cost"),
        (lambda: RunModel(uncoded(0.1, base_time=T), 100, C, -0.5), "restart cost"),
        (lambda: RunModel(uncoded(0.1, base_time=T), 100, C, R, 0), "interval"),
        (lambda: RunModel(uncoded(0.1, base_time=T), 0, C, R), "steps"),
        (lambda: expected_times(RunModel(uncoded(0.1, base_time=T), 10, C, R), [0, 3]), "interval"),
        (lambda: codenet(1.5, base_time=T), "probability"),
        (lambda: codenet(-0.1, base_time=T), "probability"),
        (lambda: codenet(0.1, base_time=-T), "base_time"),
        (lambda: codenet(0.1, base_time=T, max_attempts=0), "max_attempts"),
        (lambda: codenet(0.1, base_time=T, errors="maybe"), "errors"),
        (lambda: replication(0.1, 1, base_time=T), "replicas"),
        (lambda: Codeword(3, 2, 1), "correct <= detect"),
        (lambda: Product(1.0, reject=0.7, silent=0.5), "exceeds 1"),
        (lambda: StepModel.measured("s", T, 2.0), "probability"),
        (lambda: simulate(RunModel(uncoded(0.1, base_time=T), 10, C, R), confidence=1.0), "confidence"),
    ],
)
def test_bad_parameters_raise_a_clear_value_error(build, match):
    with pytest.raises(ModelParameterError, match=match) as caught:
        build()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, CodeNetError)


def test_binomial_helper_agrees_with_scipy_for_tiny_q():
    # the survival-function form keeps precision where 1 - cdf would cancel
    retry = Codeword(6, 1, 6).outcomes(1e-7).retry
    assert retry == pytest.approx(stats.binom.sf(1, 6, 1e-7), rel=1e-9) and retry > 0

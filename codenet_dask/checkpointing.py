"""Expected completion time of a training run on unreliable workers, with checkpoints and rollback.

What it answers: given a per-task soft-error probability ``q``, how long does a run of ``N`` steps take
with each strategy (uncoded, replication, CodeNet), how often does it end silently wrong, and how often
should it checkpoint? Pure numpy/scipy; ``plot_expected_time`` imports matplotlib only when called.

Assumptions
-----------
1. A *block task* (one block product in one attempt) returns a wrong result with probability ``q``,
   independently of every other task and attempt (a recomputation uses new keys and new draws).
   Faults in encode/decode/verify tasks are not modelled separately: fold them into ``q``.
2. A *codeword* is ``n`` block results checked together (a coded block-column or block-row, or the
   ``r`` replicas of one block). With ``e`` wrong results: ``e <= correct`` is fixed in place,
   ``correct < e <= detect`` is noticed and the product is recomputed, ``e > detect`` passes silently.
   ``errors="random"``: wrong results are random reals, so two never coincide and no error pattern is
   itself a codeword; every wrong result is then noticed by CodeNet and by replication
   (``detect = n``). ``errors="worst"``: only the guaranteed capacity holds (``detect = pr`` for a
   code with ``pr`` parities; two replicas may agree on the same wrong value).
3. A *product* (one layer's forward or backward) is retried as a whole until it is accepted, at most
   ``max_attempts`` times. If it is still rejected the step fails at once and the run rolls back.
   A *step* runs the forward products, then the backward products, then the update; the update is
   not checked here (CodeNet repairs a wrong stored block by scrubbing, without a rollback).
4. Each attempt of a product costs a fixed time proportional to its FLOPs (the uncoded step time
   ``base_time`` split in equal thirds over forward, backward and update, times the redundancy of
   that phase). In-place correction is a small constant cost, included in that time.
5. A rollback costs ``R`` (restart and reload) and loses the work since the last checkpoint.
   Checkpoints are reliable (the store writes them atomically), cost ``C``, and are taken after
   every ``k`` kept steps and at the end of the run. The initial state is a free checkpoint.

Derivation of the closed form
-----------------------------
A *step run* is one execution of a step, ending either kept or failed. Step runs are i.i.d.:
fail with probability ``p`` and take ``tau`` seconds on average (failed runs included). Let
``s = 1 - p``. A segment of ``k`` steps is tried until ``k`` step runs in a row are kept; each failure
costs ``R`` and restarts the segment from its checkpoint. Tries are geometric with success
probability ``s**k``, so ``E[tries] = s**-k``, and a try makes on average
``sum_{i<k} s**i = (1 - s**k) / p`` step runs. The number of step runs ``T`` in the segment is a
stopping time, so by Wald's identity the time spent in them is ``E[T] * tau``, and the number of
failures is ``p * E[T]``::

    E[T]         = (s**-k - 1) / p                        (-> k as p -> 0)
    E[T_seg(k)]  = (tau + p * R) * (s**-k - 1) / p + C
    E[T_run]     = floor(N / k) * E[T_seg(k)] + E[T_seg(N mod k)]      (E[T_seg(0)] = 0)

Per step, product ``u`` (attempt time ``t_u``, rejected with probability ``rho_u``) fails with
``f_u = rho_u**A`` and runs ``(1 - rho_u**A) / (1 - rho_u)`` attempts on average; it is reached only
if every product before it was accepted (``reach_u = prod_{v<u} (1 - f_v)``)::

    p   = 1 - prod_u (1 - f_u)
    tau = sum_u reach_u * t_u * (1 - rho_u**A) / (1 - rho_u)

A product is rejected if any of its codewords is noticed beyond correction, and carries a silent
error if it is accepted with some codeword past ``detect`` (binomial tails in ``n`` and ``q``).

Young/Daly: per kept step the cost is about ``tau + C/k + p*k*tau/2``, minimal at
``k* = sqrt(2 C / (p tau))`` steps, i.e. ``sqrt(2 C M)`` seconds with ``M = tau / p`` the mean time
between failures. :func:`optimal_interval` instead minimises the exact expression over integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from scipy import stats

from .errors import ModelParameterError

Errors = Literal["random", "worst"]

#: Step runs per replicate beyond which :func:`simulate` refuses (use the closed form instead).
MAX_SIMULATED_STEP_RUNS = 200_000


def _probability(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ModelParameterError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ModelParameterError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _log1m(x: float) -> float:
    """``log(1 - x)`` accurate for tiny ``x``, and ``-inf`` (not a domain error) at ``x = 1``."""
    return math.log1p(-x) if x < 1.0 else -math.inf


def _count(name: str, value: int, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ModelParameterError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


class Outcomes(NamedTuple):
    """Probabilities that one codeword is fine (clean or fixed in place), recomputed, or silently wrong."""

    ok: float
    retry: float
    silent: float


@dataclass(frozen=True)
class Codeword:
    """``n`` block results checked together: ``correct`` wrong ones fixed in place, ``detect`` noticed."""

    n: int
    correct: int
    detect: int

    def __post_init__(self) -> None:
        _count("n", self.n)
        _count("correct", self.correct, least=0)
        _count("detect", self.detect, least=0)
        if not self.correct <= self.detect <= self.n:
            raise ModelParameterError(
                f"a codeword needs correct <= detect <= n, got correct={self.correct}, detect={self.detect}, n={self.n}"
            )

    def outcomes(self, q: float) -> Outcomes:
        """Binomial tails of the number of wrong results (survival functions: no 1 - (1 - tiny) loss)."""
        q = _probability("q", q)
        beyond_correct, beyond_detect = stats.binom.sf([self.correct, self.detect], self.n, q)
        return Outcomes(
            float(stats.binom.cdf(self.correct, self.n, q)), float(beyond_correct - beyond_detect), float(beyond_detect)
        )


@dataclass(frozen=True)
class Product:
    """One checked product, retried as a whole: seconds per attempt and what an attempt risks."""

    time: float
    reject: float = 0.0
    silent: float = 0.0

    def __post_init__(self) -> None:
        _non_negative("product time", self.time)
        _probability("reject", self.reject)
        _probability("silent", self.silent)
        if self.reject + self.silent > 1.0 + 1e-12:
            raise ModelParameterError(f"reject + silent exceeds 1 ({self.reject} + {self.silent})")

    @classmethod
    def checked(cls, q: float, codewords: Sequence[tuple[Codeword, int]], time: float) -> Product:
        """A product whose attempt holds ``count`` codewords of each kind (kinds independent)."""
        log_accept = log_clean_given_accept = 0.0
        for codeword, count in codewords:
            if not _count("codeword count", count, least=0):
                continue
            _, retry, silent = codeword.outcomes(q)
            if retry >= 1.0:
                return cls(time, 1.0, 0.0)
            log_accept += count * math.log1p(-retry)
            log_clean_given_accept += count * _log1m(silent / (1.0 - retry))
        accept = math.exp(log_accept)
        return cls(time, -math.expm1(log_accept), accept * -math.expm1(log_clean_given_accept))

    def attempts(self, max_attempts: int) -> float:
        """Expected attempts per run of this product, ``sum_{i<A} rho**i`` (the last may be a rejection)."""
        if self.reject >= 1.0:
            return float(max_attempts)
        return (1.0 - self.reject**max_attempts) / (1.0 - self.reject)


@dataclass(frozen=True)
class StepModel:
    """One training step of one strategy: its products in order, retried up to ``max_attempts``."""

    name: str
    products: tuple[Product, ...]
    max_attempts: int = 3

    def __post_init__(self) -> None:
        _count("max_attempts", self.max_attempts)
        if not self.products or sum(p.time for p in self.products) <= 0:
            raise ModelParameterError("a step needs at least one product and a positive time")

    @classmethod
    def measured(cls, name: str, step_time: float, p_fail: float) -> StepModel:
        """A step known only by its time and failure rate (e.g. from measured runs): no retries."""
        return cls(name, (Product(step_time, _probability("p_fail", p_fail)),), max_attempts=1)

    def _fails(self) -> list[float]:
        return [p.reject**self.max_attempts for p in self.products]

    def _reached(self) -> list[tuple[float, float]]:
        """Per product: attempt time x chance a step run gets to it, and its mean attempts there."""
        reach = np.concatenate([[1.0], np.cumprod([1.0 - f for f in self._fails()])[:-1]])
        return [(r * p.time, p.attempts(self.max_attempts)) for r, p in zip(reach, self.products, strict=True)]

    @property
    def base_time(self) -> float:
        """Seconds of one attempt of every product (no faults): base step time x FLOP ratio."""
        return sum(p.time for p in self.products)

    @property
    def p_fail(self) -> float:
        """Probability that a step run fails (some product rejected ``max_attempts`` times): rollback."""
        return float(0.0 - math.expm1(sum(_log1m(f) for f in self._fails())))

    @property
    def step_time(self) -> float:
        """Mean seconds of one step run, recomputations included, a failing run cut at its failure."""
        return float(sum(seconds * attempts for seconds, attempts in self._reached()))

    @property
    def recompute_overhead(self) -> float:
        """Mean seconds per step run spent on attempts after the first (in-place recomputation)."""
        return float(sum(seconds * (attempts - 1) for seconds, attempts in self._reached()))

    @property
    def p_silent(self) -> float:
        """Probability that a kept step carries an undetected wrong result."""
        clean = [1.0 - p.silent / (1.0 - p.reject) for p in self.products if p.reject < 1.0]
        return float(1.0 - np.prod(clean))


def _phases(base_time: float, layers: int) -> float:
    """Seconds of one phase (forward, backward or update) of one layer, uncoded: thirds of a step."""
    return _non_negative("base_time", base_time) / (3 * _count("layers", layers))


def _grid(grid: tuple[int, int]) -> tuple[int, int]:
    kr, kc = grid
    return _count("grid rows", kr), _count("grid columns", kc)


def _errors(errors: str) -> str:
    if errors not in ("random", "worst"):
        raise ModelParameterError(f"errors must be 'random' or 'worst', got {errors!r}")
    return errors


def _step(name: str, forward: Product, backward: Product, update: Product, layers: int, max_attempts: int) -> StepModel:
    return StepModel(name, (forward,) * layers + (backward,) * layers + (update,) * layers, max_attempts)


def uncoded(q: float, *, base_time: float, grid: tuple[int, int] = (4, 4), layers: int = 1) -> StepModel:
    """No redundancy: nothing is ever rejected (p_fail = 0); every wrong block passes silently."""
    kr, kc = _grid(grid)
    t = _phases(base_time, layers)
    single = [(Codeword(1, 0, 0), kr * kc)]
    return _step("uncoded", Product.checked(q, single, t), Product.checked(q, single, t), Product(t), layers, 1)


def replication(
    q: float,
    r: int,
    *,
    base_time: float,
    grid: tuple[int, int] = (4, 4),
    layers: int = 1,
    errors: Errors = "random",
    max_attempts: int = 3,
) -> StepModel:
    """``r`` copies of every block product; two agreeing copies win (r >= 3), a disagreement recomputes.

    Random errors: a wrong copy agrees with nothing, so up to ``r - 2`` wrong copies are outvoted and
    more are noticed. Worst case: two wrong copies may agree, so only one wrong copy is safe.
    """
    r = _count("replicas", r, least=2)
    kr, kc = _grid(grid)
    codeword = Codeword(r, r - 2, r) if _errors(errors) == "random" else Codeword(r, min(1, r - 2), 1)
    t = _phases(base_time, layers) * r
    product = Product.checked(q, [(codeword, kr * kc)], t)
    return _step(f"replication r={r}", product, product, Product(t), layers, max_attempts)


def codenet(
    q: float,
    *,
    base_time: float,
    grid: tuple[int, int] = (4, 4),
    parity: tuple[int, int] = (2, 2),
    layers: int = 1,
    errors: Errors = "random",
    max_attempts: int = 3,
) -> StepModel:
    """The coded grid: forward checks ``kc`` block-columns of ``kr + pr``, backward ``kr`` block-rows.

    Each codeword corrects ``p // 2`` wrong blocks (what the decoder locates); random errors are all
    noticed, worst-case errors only up to ``p``. The FLOP ratio comes out as in
    ``ProductCode.flop_ratio`` (1.75 for a 4x4 grid with 2+2 parity).
    """
    kr, kc = _grid(grid)
    pr, pc = (_count("parity", p, least=0) for p in parity)
    random = _errors(errors) == "random"
    t = _phases(base_time, layers)
    column = Codeword(kr + pr, pr // 2, kr + pr if random else pr)
    row = Codeword(kc + pc, pc // 2, kc + pc if random else pc)
    forward = Product.checked(q, [(column, kc)], t * (kr + pr) / kr)
    backward = Product.checked(q, [(row, kr)], t * (kc + pc) / kc)
    update = Product(t * (kr + pr) * (kc + pc) / (kr * kc))
    return _step(f"codenet {kr}x{kc}+{pr}x{pc}", forward, backward, update, layers, max_attempts)


@dataclass(frozen=True)
class RunModel:
    """A run of ``steps`` steps of ``step``, a checkpoint (cost C) every ``interval`` steps, rollback cost R."""

    step: StepModel
    steps: int
    checkpoint_cost: float
    restart_cost: float
    interval: int = 1

    def __post_init__(self) -> None:
        _count("steps", self.steps)
        _count("checkpoint interval k", self.interval)
        _non_negative("checkpoint cost C", self.checkpoint_cost)
        _non_negative("restart cost R", self.restart_cost)

    def with_interval(self, interval: int) -> RunModel:
        return replace(self, interval=interval)

    @property
    def silent_probability(self) -> float:
        """Probability that the finished run kept at least one silently wrong step (rolled-back work is gone)."""
        return float(0.0 - math.expm1(self.steps * _log1m(self.step.p_silent)))


def expected_times(run: RunModel, intervals: Sequence[int] | np.ndarray) -> np.ndarray:
    """Closed-form expected completion time (seconds) for each checkpoint interval (module docstring)."""
    k = np.asarray(intervals, dtype=np.int64)
    if k.size and k.min() < 1:
        raise ModelParameterError(f"checkpoint interval k must be >= 1, got {int(k.min())}")
    p = run.step.p_fail
    if p >= 1.0:
        return np.full(k.shape, math.inf)
    full, rest = np.divmod(run.steps, k)
    return full * _segment_times(run, k, p) + np.where(rest > 0, _segment_times(run, rest, p), 0.0)


def _step_runs(p: float, k: np.ndarray | int) -> np.ndarray:
    """Expected step runs to keep ``k`` steps in a row, ``(s**-k - 1) / p`` (``k`` when ``p = 0``)."""
    k = np.asarray(k)
    with np.errstate(over="ignore"):
        return np.expm1(-k * math.log1p(-p)) / p if p > 0 else k.astype(float)


def _segment_times(run: RunModel, k: np.ndarray, p: float) -> np.ndarray:
    """``(tau + p R) (s**-k - 1) / p + C``: each step run costs tau, and R when it fails; then the checkpoint."""
    return (run.step.step_time + p * run.restart_cost) * _step_runs(p, k) + run.checkpoint_cost


def expected_time(run: RunModel) -> float:
    """Closed-form expected completion time of ``run`` at its own interval."""
    return float(expected_times(run, [run.interval])[0])


def young_daly_interval(run: RunModel) -> int:
    """Young/Daly's ``sqrt(2 C / (p tau))`` steps, rounded and kept within ``[1, steps]``."""
    p, tau = run.step.p_fail, run.step.step_time
    k = math.sqrt(2 * run.checkpoint_cost / (p * tau)) if p > 0 else math.inf
    return int(min(max(round(k), 1), run.steps)) if math.isfinite(k) else run.steps


def optimal_interval(run: RunModel) -> int:
    """The integer interval in ``[1, steps]`` with the least expected time (exact scan, smallest on ties)."""
    return int(np.argmin(expected_times(run, np.arange(1, run.steps + 1)))) + 1


@dataclass(frozen=True)
class MonteCarlo:
    """Sample mean of the completion time with its confidence interval, and the silent-run fraction."""

    mean: float
    low: float
    high: float
    replicates: int
    silent_fraction: float

    def contains(self, value: float) -> bool:
        """Inside the interval, allowing float rounding (a deterministic run has a zero-width one)."""
        slack = 1e-9 * abs(self.mean)
        return self.low - slack <= value <= self.high + slack


def simulate(run: RunModel, replicates: int = 2000, seed: int = 0, confidence: float = 0.999) -> MonteCarlo:
    """Simulate the process attempt by attempt (not from the closed form) for many independent runs."""
    _count("replicates", replicates, least=2)
    if not 0.0 < confidence < 1.0:
        raise ModelParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    full, rest = divmod(run.steps, run.interval)
    p = run.step.p_fail
    if p >= 1.0 or full * _step_runs(p, run.interval) + _step_runs(p, rest) > MAX_SIMULATED_STEP_RUNS:
        raise ModelParameterError("that run needs too many step runs to simulate; use expected_time")
    rng = np.random.default_rng(seed)
    times, silent = _simulate_runs(run, replicates, rng)
    half = stats.norm.ppf(0.5 + confidence / 2) * times.std(ddof=1) / math.sqrt(replicates)
    mean = float(times.mean())
    return MonteCarlo(mean, mean - half, mean + half, replicates, float(silent.mean()))


def _simulate_step_runs(step: StepModel, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` step runs: seconds, failed, silently wrong. Products run in order; a failure stops the run."""
    seconds, failed, silent = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    a = step.max_attempts
    for product in step.products:
        alive = ~failed
        tries = rng.geometric(1.0 - product.reject, n) if product.reject < 1 else np.full(n, a + 1)
        seconds += alive * np.minimum(tries, a) * product.time
        rejected = alive & (tries > a)
        accepted = alive & ~rejected
        if product.silent:
            silent |= accepted & (rng.random(n) < product.silent / (1.0 - product.reject))
        failed |= rejected
    return seconds, failed, silent


def _simulate_runs(run: RunModel, replicates: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Advance every unfinished run by one step run per pass; roll back on failure, checkpoint on a full segment."""
    time = np.zeros(replicates)
    committed, position = np.zeros(replicates, np.int64), np.zeros(replicates, np.int64)
    segment_silent, run_silent = np.zeros(replicates, bool), np.zeros(replicates, bool)
    active = np.arange(replicates)
    while active.size:
        seconds, failed, silent = _simulate_step_runs(run.step, active.size, rng)
        time[active] += seconds + failed * run.restart_cost
        position[active] = np.where(failed, 0, position[active] + 1)
        segment_silent[active] = ~failed & (segment_silent[active] | silent)
        done = position[active] == np.minimum(run.interval, run.steps - committed[active])
        ends = active[done]
        time[ends] += run.checkpoint_cost
        committed[ends] += position[ends]
        position[ends] = 0
        run_silent[ends] |= segment_silent[ends]
        segment_silent[ends] = False
        active = active[committed[active] < run.steps]
    return time, run_silent


def plot_expected_time(runs: Sequence[RunModel], path: str | Path, intervals: Sequence[int] | None = None) -> Path:
    """Write a PNG of expected time vs checkpoint interval, one curve per run, Young/Daly and optimum marked.

    Log-log, clipped a little above the slowest run's optimum: times grow exponentially in ``k``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise ModelParameterError("plot_expected_time needs at least one run")
    longest = max(r.steps for r in runs)
    ks = np.unique(
        np.asarray(intervals if intervals is not None else np.geomspace(1, longest, 200).round(), dtype=np.int64)
    )
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    best_times = []
    for run in runs:
        best, daly = optimal_interval(run), young_daly_interval(run)
        best_times.append(expected_time(run.with_interval(best)))
        (line,) = axes.plot(
            ks, expected_times(run, ks), label=f"{run.step.name} (optimum k={best}, Young/Daly k={daly})"
        )
        colour = line.get_color()
        axes.plot([daly], [expected_time(run.with_interval(daly))], "o", color=colour, markerfacecolor="none", ms=10)
        axes.plot([best], [best_times[-1]], "*", color=colour, ms=10)
    axes.plot([], [], "o", color="grey", markerfacecolor="none", label="Young/Daly interval")
    axes.plot([], [], "*", color="grey", label="exact optimum")
    axes.set(
        xscale="log",
        yscale="log",
        xlabel="checkpoint interval k (steps)",
        ylabel="expected completion time (s)",
        title="Expected completion time vs checkpoint interval",
    )
    finite = [t for t in best_times if math.isfinite(t)]
    if finite:  # a run that never completes has no optimum to frame
        axes.set_ylim(0.8 * min(finite), 4 * max(finite))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    path = Path(path)
    figure.savefig(path, format="png", dpi=110)
    return path


__all__ = [
    "Codeword",
    "MonteCarlo",
    "Outcomes",
    "Product",
    "RunModel",
    "StepModel",
    "codenet",
    "expected_time",
    "expected_times",
    "optimal_interval",
    "plot_expected_time",
    "replication",
    "simulate",
    "uncoded",
    "young_daly_interval",
]

"""The accuracy–runtime experiment: strategies × fault rates × seeds, each a :class:`Trainer` run.

Every run of one comparison shares the data, the batches (they depend only on seed and epoch) and
the injector seed, so the injector — a pure function of seed and task site — draws the same faults
wherever the task sites of two strategies coincide. Nothing here changes training: test accuracy
is read between steps from the ``progress`` callback (the evaluation time is excluded from the
clock), and a run that does not complete (an uncoded run whose weights went non-finite is
``diverged``, rollbacks beyond ``MAX_ROLLBACKS`` ``gave-up``, any other error ``failed``) is
recorded with NaN accuracy and a status instead of ending the experiment.

The fault spec for rate ``r`` is ``MODEL:r[:OPTIONS]`` from ``fault_model`` (``MODEL[:OPTIONS]``),
with ``steps=block-forward+block-backward+update`` added unless it names its own steps; rate 0 is
``none``. The default flips one exponent bit: the errors that break uncoded training (a mantissa
flip is usually harmless), e.g. rate 0.01 gives ``bitflip:0.01:field=exponent:steps=...``.
"""

from __future__ import annotations

import csv
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from distributed import Client

from .checkpointing import RunModel, StepModel, expected_time, plot_expected_time
from .codes import ProductCode
from .data import Dataset
from .errors import CodeNetError, CodeParameterError, UncorrectableError
from .faults import parse_fault_spec
from .observe import DashboardPublisher
from .training import TrainConfig, Trainer

DEFAULT_FAULT_MODEL = "bitflip:field=exponent"
DEFAULT_STEPS = "block-forward+block-backward+update"
DEFAULT_STRATEGIES = ("uncoded", "replication-2", "replication-3", "codenet-2x2+2x2", "codenet-4x4+2x2")
LEDGER_COUNTS = ("injected", "detected", "corrected", "recomputed", "rollbacks", "rolled_back", "benign", "undetected")
PLOTS = ("accuracy_vs_time.png", "accuracy_vs_fault_rate.png", "redundancy_vs_tolerance.png", "expected_time.png")
_CODENET = re.compile(r"codenet-(\d+)x(\d+)\+(\d+)x(\d+)")
_REPLICATION = re.compile(r"replication-(\d+)")


@dataclass(frozen=True)
class Variant:
    """One labelled strategy: ``uncoded``, ``replication-R`` or ``codenet-KxK+PRxPC``."""

    label: str
    strategy: Literal["uncoded", "replication", "codenet"]
    grid: int | None = None  # codenet only; the baselines use the base config's grid
    parity: tuple[int, int] = (0, 0)
    replicas: int = 1

    @classmethod
    def parse(cls, label: str) -> Variant:
        """The variant a label names; CodeParameterError naming the valid forms otherwise."""
        text = label.strip().lower()
        if text == "uncoded":
            return cls(text, "uncoded")
        if m := _REPLICATION.fullmatch(text):
            if int(m[1]) < 2:
                raise CodeParameterError(f"replication needs at least 2 replicas, got {label!r}")
            return cls(text, "replication", replicas=int(m[1]))
        if m := _CODENET.fullmatch(text):
            kr, kc, pr, pc = map(int, m.groups())
            if kr != kc or kr < 1:
                raise CodeParameterError(f"codenet grid must be square (KxK, K >= 1) so layers chain, got {label!r}")
            ProductCode(kr, kc, pr, pc)  # certifies the code; raises on bad parameters
            return cls(text, "codenet", grid=kr, parity=(pr, pc))
        raise CodeParameterError(
            f"unknown strategy {label!r}; use uncoded, replication-R (R >= 2) "
            f"or codenet-KxK+PRxPC, e.g. {','.join(DEFAULT_STRATEGIES)}"
        )

    def config(self, base: TrainConfig) -> TrainConfig:
        replicas = self.replicas if self.strategy == "replication" else base.replicas
        return replace(base, strategy=self.strategy, grid=self.grid or base.grid, parity=self.parity, replicas=replicas)

    @property
    def flop_ratio(self) -> float:
        """Compute per training step relative to uncoded."""
        if self.strategy == "codenet":
            assert self.grid is not None  # a codenet variant names its grid
            return ProductCode(self.grid, self.grid, *self.parity).flop_ratio
        return float(self.replicas)

    @property
    def corrects(self) -> int:
        """Wrong blocks per codeword fixed in place: what the decoder locates, or what a majority outvotes."""
        if self.strategy == "codenet":
            return min(self.parity) // 2
        return max(self.replicas - 2, 0)

    @property
    def detects(self) -> int:
        """Wrong blocks per codeword always noticed, even when adversarial (two replicas may agree)."""
        if self.strategy == "codenet":
            return min(self.parity)
        return 1 if self.strategy == "replication" else 0


def fault_spec(fault_model: str, rate: float) -> str:
    """The ``--faults`` string for ``rate`` (module docstring); validated by the spec parser."""
    if not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
        raise CodeParameterError(f"fault rates are per-task probabilities in [0, 1], got {rate!r}")
    if rate == 0:
        return "none"
    model, *options = fault_model.split(":")
    if not any(o.strip().lower().startswith("steps=") for o in options):
        options.append(f"steps={DEFAULT_STEPS}")
    spec = ":".join([model, f"{rate:g}", *options])
    parse_fault_spec(spec)
    return spec


def eval_positions(steps_per_epoch: int, epochs: int, per_epoch: int) -> list[int]:
    """Step positions where test accuracy is read: the start, ``per_epoch`` points per epoch, every epoch end."""
    return sorted(
        {0}
        | {
            round(e * steps_per_epoch + i * steps_per_epoch / per_epoch)
            for e in range(epochs)
            for i in range(1, per_epoch + 1)
        }
    )


@dataclass
class RunRecord:
    """What one run produced: its curve, final numbers, ledger and measured costs."""

    accuracy: dict[int, float] = field(default_factory=dict)
    elapsed: dict[int, float] = field(default_factory=dict)
    loss: dict[int, float] = field(default_factory=dict)
    status: str = "ok"
    final_accuracy: float = math.nan
    final_loss: float = math.nan
    wall_seconds: float = math.nan
    step_runs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    step_seconds: float = math.nan
    checkpoint_seconds: float = math.nan
    restart_seconds: float = math.nan


class _Recorder:
    """The ``progress`` callback of one run: reads accuracy at chosen positions, times every step."""

    def __init__(self, trainer: Trainer, positions: Sequence[int], record: RunRecord) -> None:
        self.trainer, self.positions, self.record = trainer, set(positions), record
        self.start = time.perf_counter()
        self.paused = 0.0  # evaluation seconds, kept off the clock
        self.last, self.rollbacks = 0.0, 0
        self.intervals: list[tuple[int, float, int]] = []  # (position, seconds since the last step, rollbacks)

    def clock(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def mark(self, position: int, accuracy: float | None, loss: float) -> None:
        if accuracy is None:
            began = time.perf_counter()
            try:
                accuracy = self.trainer.test_accuracy()
            except UncorrectableError:  # weights beyond repair right now: the next step rolls back
                accuracy = math.nan
            self.paused += time.perf_counter() - began
        self.record.accuracy[position], self.record.loss[position] = accuracy, loss
        self.record.elapsed[position] = self.last = self.clock()  # the next step's interval starts here

    def __call__(self, row: dict) -> None:
        now = self.clock()
        self.intervals.append((row["position"], now - self.last, row["rollbacks"] - self.rollbacks))
        self.last, self.rollbacks = now, row["rollbacks"]
        if row["position"] in self.positions or row["test_accuracy"] is not None:
            self.mark(row["position"], row["test_accuracy"], row["loss"])

    def costs(self, checkpoint_every: int) -> tuple[float, float, float]:
        """Mean step time, checkpoint cost and restart cost, from the step intervals.

        A checkpoint is what a checkpointing step takes beyond a plain one; a restart is what an
        interval holding rollbacks takes beyond its steps (a failed step counted whole). With no
        rollback the restart cost is taken to equal the checkpoint cost (it reads what that wrote).
        """
        plain = [dt for p, dt, rb in self.intervals if not rb and p % checkpoint_every]
        step = float(np.mean(plain)) if plain else math.nan
        saving = [dt for p, dt, rb in self.intervals if not rb and not p % checkpoint_every]
        checkpoint = max(float(np.mean(saving)) - step, 0.0) if saving else 0.0
        failed = [(dt, rb) for _, dt, rb in self.intervals if rb]
        restart = (
            max(sum(dt - step * (1 + rb) for dt, rb in failed) / sum(rb for _, rb in failed), 0.0)
            if failed
            else checkpoint
        )
        return step, checkpoint, restart


def run_one(client: Client, data: Dataset, config: TrainConfig, positions: Sequence[int]) -> RunRecord:
    """Train once. A run that diverges or gives up is recorded with status ``diverged: <reason>`` or
    ``gave-up: <reason>`` and NaN accuracy; any other CodeNetError with ``failed: <error>``."""
    record = RunRecord()
    trainer = Trainer(client, data, config)
    trainer.subscribers.append(DashboardPublisher(trainer, client))
    recorder = _Recorder(trainer, positions, record)
    try:
        trainer.build()
        recorder.mark(0, None, math.nan)
        summary = trainer.run(recorder)
        record.final_accuracy, record.final_loss = summary.test_accuracy, summary.final_loss
        if summary.status != "completed":
            record.status = f"{summary.status}: {summary.reason}"
    except CodeNetError as exc:
        record.status = f"failed: {type(exc).__name__}: {exc}"
        record.final_loss = record.loss[max(record.loss)] if record.loss else math.nan
    finally:
        record.wall_seconds = recorder.clock()
        trainer.close()
    trainer.ledger.add_injected(
        trainer.executor.collect_faults(trainer.run_id)
    )  # a failed run's faults are still on the workers
    led = trainer.ledger.summary()
    record.counts = {
        "injected": led["injected"],
        "detected": sum(len(r.detected) for r in trainer.ledger.products.values()),
        "corrected": led["corrected"],
        "recomputed": led["recomputed"],
        "rollbacks": trainer.rollbacks,
        "rolled_back": led["rolled-back"],
        "benign": led["benign"],
        "undetected": led["undetected"],
    }
    record.step_runs = len(recorder.intervals) + trainer.rollbacks
    record.step_seconds, record.checkpoint_seconds, record.restart_seconds = recorder.costs(config.checkpoint_every)
    return record


def run_comparison(
    client: Client,
    data: Dataset,
    strategies: Sequence[str],
    fault_rates: Sequence[float],
    seeds: Sequence[int],
    base: TrainConfig,
    out: str | Path,
    fault_model: str = DEFAULT_FAULT_MODEL,
    progress: Callable[[dict], None] | None = None,
    fmt: Literal["zarr", "netcdf"] = "zarr",
    evals_per_epoch: int = 4,
) -> xr.Dataset:
    """Run every strategy × fault rate × seed, write ``runs.csv``, the Dataset and the plots to ``out``.

    ``progress`` gets each finished run's CSV row. Returns the Dataset (dims strategy, fault_rate,
    seed, step; ``step`` is the training position where accuracy was read).
    """
    variants = [Variant.parse(s) for s in strategies]
    specs = [fault_spec(fault_model, r) for r in fault_rates]
    for name, values in (
        ("strategies", [v.label for v in variants]),
        ("fault rates", list(fault_rates)),
        ("seeds", list(seeds)),
    ):
        if not values or len(set(values)) != len(values):
            raise CodeParameterError(f"{name} must be a non-empty list without repeats, got {values}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise CodeParameterError(f"seeds must be integers >= 0, got {list(seeds)}")
    per_epoch = -(-data.y_train.size // base.batch_size)
    positions = eval_positions(per_epoch, base.epochs, evals_per_epoch)
    rows, records = [], {}
    for variant in variants:
        for rate, spec in zip(fault_rates, specs):
            for seed in seeds:
                config = replace(variant.config(base), faults=spec, seed=seed)
                record = run_one(client, data, config, positions)
                records[variant.label, rate, seed] = record
                rows.append(_row(variant, rate, spec, seed, record, config, per_epoch * base.epochs))
                if progress:
                    progress(rows[-1])
    ds = _dataset(variants, list(fault_rates), specs, list(seeds), positions, records, base, data.name, fault_model)
    write_outputs(ds, rows, Path(out), fmt)
    return ds


def _row(
    variant: Variant, rate: float, spec: str, seed: int, record: RunRecord, config: TrainConfig, steps: int
) -> dict:
    """One CSV row; ``model_seconds`` is the checkpointing model's expected time from this run's own costs."""
    model_seconds = math.nan
    if record.status == "ok" and math.isfinite(record.step_seconds):
        p_fail = record.counts["rollbacks"] / record.step_runs
        run = RunModel(
            StepModel.measured(variant.label, record.step_seconds, p_fail),
            steps=steps,
            checkpoint_cost=record.checkpoint_seconds,
            restart_cost=record.restart_seconds,
            interval=config.checkpoint_every,
        )
        model_seconds = expected_time(run)
    return {
        "strategy": variant.label,
        "fault_rate": rate,
        "seed": seed,
        "faults": spec,
        "status": record.status,
        "final_accuracy": record.final_accuracy,
        "final_loss": record.final_loss,
        "wall_seconds": record.wall_seconds,
        "step_runs": record.step_runs,
        **record.counts,
        "flop_ratio": variant.flop_ratio,
        "corrects": variant.corrects,
        "detects": variant.detects,
        "step_seconds": record.step_seconds,
        "checkpoint_seconds": record.checkpoint_seconds,
        "restart_seconds": record.restart_seconds,
        "model_seconds": model_seconds,
    }


def _dataset(
    variants: list[Variant],
    rates: list[float],
    specs: list[str],
    seeds: list[int],
    positions: list[int],
    records: dict,
    base: TrainConfig,
    dataset: str,
    fault_model: str,
) -> xr.Dataset:
    """The runs as arrays: curves over (strategy, fault_rate, seed, step), totals over the first three."""
    shape = (len(variants), len(rates), len(seeds))
    curves: dict[str, np.ndarray] = {
        name: np.full((*shape, len(positions)), np.nan) for name in ("accuracy", "elapsed", "loss")
    }
    totals = {name: np.full(shape, np.nan) for name in ("final_accuracy", "final_loss", "wall_seconds")}
    counts = {name: np.zeros(shape, np.int64) for name in LEDGER_COUNTS}
    status = np.full(shape, "", dtype=object)
    for index in np.ndindex(shape):
        v, r, s = variants[index[0]], rates[index[1]], seeds[index[2]]
        rec: RunRecord = records[v.label, r, s]
        for name, array in curves.items():
            array[index] = [getattr(rec, name).get(p, np.nan) for p in positions]
        for name, array in totals.items():
            array[index] = getattr(rec, name)
        for name, array in counts.items():
            array[index] = rec.counts[name]
        status[index] = rec.status
    run_dims, curve_dims = ("strategy", "fault_rate", "seed"), ("strategy", "fault_rate", "seed", "step")
    ds = xr.Dataset(
        {
            **{n: (curve_dims, a) for n, a in curves.items()},
            **{n: (run_dims, a) for n, a in totals.items()},
            **{n: (run_dims, a) for n, a in counts.items()},
            "status": (run_dims, status.astype(str)),
            "flop_ratio": ("strategy", [v.flop_ratio for v in variants]),
            "corrects": ("strategy", [v.corrects for v in variants]),
            "detects": ("strategy", [v.detects for v in variants]),
        },
        coords={
            "strategy": [v.label for v in variants],
            "fault_rate": rates,
            "seed": seeds,
            "step": positions,
            "faults": ("fault_rate", specs),
        },
        attrs={
            "dataset": dataset,
            "fault_model": fault_model,
            "layers": "-".join(map(str, base.hidden)),
            "epochs": base.epochs,
            "batch_size": base.batch_size,
            "lr": base.lr,
            "dtype": base.dtype,
            "checkpoint_every": base.checkpoint_every,
        },
    )
    ds["accuracy"].attrs["description"] = "test accuracy when the run reached this step"
    ds["elapsed"].attrs.update(units="s", description="wall time at that point, test evaluation excluded")
    ds["step"].attrs["description"] = "training position (batches kept); 0 is the initial model"
    return ds


def output_paths(out: Path, fmt: Literal["zarr", "netcdf"] = "zarr") -> list[Path]:
    """Everything :func:`write_outputs` writes under ``out``: CSV, Dataset, then the PNGs in ``PLOTS`` order."""
    return [out / "runs.csv", out / ("results.zarr" if fmt == "zarr" else "results.nc"), *(out / p for p in PLOTS)]


def write_outputs(ds: xr.Dataset, rows: list[dict], out: Path, fmt: Literal["zarr", "netcdf"] = "zarr") -> list[Path]:
    """Write ``runs.csv``, ``results.zarr`` (or ``results.nc``) and the four PNGs; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    table, dataset, *pngs = paths = output_paths(out, fmt)
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if fmt == "zarr":
        shutil.rmtree(dataset, ignore_errors=True)
        ds.to_zarr(dataset, mode="w", consolidated=False)
    else:
        ds.to_netcdf(dataset)
    for path, plot in zip(pngs, (plot_accuracy_vs_time, plot_accuracy_vs_rate, plot_redundancy)):
        plot(ds, path)
    plot_expected_time(measured_runs(ds, rows), pngs[3])
    return paths


def measured_runs(ds: xr.Dataset, rows: list[dict]) -> list[RunModel]:
    """One run model per strategy from its completed runs at the highest fault rate it completed (mean over seeds).

    The failure probability per step run is the measured rollback frequency. A strategy that never
    completed a run is left out: it has no measured step to model.
    """
    steps = int(ds.step.values.max())
    models = []
    for label in ds.strategy.values:
        done = [r for r in rows if r["strategy"] == label and r["status"] == "ok"]
        if not done:
            continue
        rate = max(r["fault_rate"] for r in done)
        runs = [r for r in done if r["fault_rate"] == rate]
        mean = {
            k: float(np.mean([r[k] for r in runs])) for k in ("step_seconds", "checkpoint_seconds", "restart_seconds")
        }
        p_fail = sum(r["rollbacks"] for r in runs) / sum(r["step_runs"] for r in runs)
        models.append(
            RunModel(
                StepModel.measured(f"{label} @ {rate:g}", mean["step_seconds"], p_fail),
                steps=steps,
                checkpoint_cost=mean["checkpoint_seconds"],
                restart_cost=mean["restart_seconds"],
                interval=int(ds.attrs["checkpoint_every"]),
            )
        )
    if not models:
        raise CodeParameterError("no run completed, so there is no measured step time to model")
    return models


def _figure(title: str, xlabel: str, ylabel: str):
    """A standalone Agg figure and its axes (no pyplot: no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    return path


def plot_accuracy_vs_time(ds: xr.Dataset, path: Path) -> Path:
    """Accuracy over wall time at the highest fault rate, one colour per strategy (dotted: fault-free)."""
    top, clean = max(ds.fault_rate.values), min(ds.fault_rate.values)
    figure, axes = _figure(
        f"Test accuracy over time at fault rate {top:g}\n{ds.attrs['fault_model']}",
        "wall time (s, test evaluation excluded)",
        "test accuracy",
    )
    for n, label in enumerate(ds.strategy.values):
        colour = f"C{n}"
        for k, seed in enumerate(ds.seed.values):
            run = ds.sel(strategy=label, seed=seed)
            hit = run.sel(fault_rate=top)
            axes.plot(hit.elapsed, hit.accuracy, "-o", ms=3, color=colour, label=str(label) if k == 0 else None)
            if str(hit.status.item()) != "ok":  # failed, diverged or gave up: a cross where it stopped
                done = hit.accuracy.notnull()
                axes.plot(hit.elapsed[done][-1:], hit.accuracy[done][-1:], "x", ms=10, mew=2, color=colour)
            if top != clean:
                free = run.sel(fault_rate=clean)
                axes.plot(free.elapsed, free.accuracy, ":", color=colour, alpha=0.6)
    axes.plot([], [], "k:", alpha=0.6, label="fault-free run")
    axes.plot([], [], "kx", ms=8, mew=2, label="run failed here")
    axes.legend(fontsize=8)
    return _save(figure, path)


def plot_accuracy_vs_rate(ds: xr.Dataset, path: Path) -> Path:
    """Final accuracy (mean over seeds that completed) against the fault rate; failed runs as crosses at 0."""
    figure, axes = _figure("Final test accuracy vs fault rate", "fault rate per task", "final test accuracy")
    rates = ds.fault_rate.values
    positions = np.arange(rates.size)  # categorical axis: the rates include 0, so no log scale
    for n, label in enumerate(ds.strategy.values):
        acc = ds.final_accuracy.sel(strategy=label)
        mean = acc.mean("seed", skipna=True)
        offset = (n - (ds.strategy.size - 1) / 2) * 0.04
        axes.plot(positions + offset, mean, "-o", color=f"C{n}", label=str(label))
        failed = acc.isnull().sum("seed").values
        axes.plot(positions[failed > 0] + offset, np.zeros(int((failed > 0).sum())), "x", ms=9, mew=2, color=f"C{n}")
    axes.plot([], [], "kx", ms=8, mew=2, label="a run failed (NaN)")
    axes.set_xticks(positions, [f"{r:g}" for r in rates])
    axes.set_ylim(-0.03, 1.0)
    axes.legend(fontsize=8)
    return _save(figure, path)


def plot_redundancy(ds: xr.Dataset, path: Path) -> Path:
    """Compute redundancy against wrong blocks per codeword that are corrected (filled) or detected (hollow)."""
    figure, axes = _figure(
        "Redundancy vs errors tolerated per codeword", "FLOPs per step relative to uncoded", "wrong blocks per codeword"
    )
    for n, label in enumerate(ds.strategy.values):
        v = ds.sel(strategy=label)
        x, c, d = float(v.flop_ratio), int(v.corrects), int(v.detects)
        axes.plot([x], [c], "o", ms=10, color=f"C{n}", label=f"{label} (x{x:.2f})")
        axes.plot([x], [d], "o", ms=14, mfc="none", mew=2, color=f"C{n}")
    axes.plot([], [], "ko", label="corrected in place")
    axes.plot([], [], "ko", mfc="none", label="always detected (worst case)")
    axes.set_yticks(range(int(ds.detects.max()) + 2))
    axes.legend(fontsize=8)
    return _save(figure, path)


def markdown_table(ds: xr.Dataset) -> str:
    """Final accuracy per strategy × fault rate (mean over completed seeds, failures counted), FLOPs and
    undetected faults and wall time at the highest rate."""
    top = max(ds.fault_rate.values)
    header = [
        "strategy",
        "FLOPs",
        *(f"acc @ {r:g}" for r in ds.fault_rate.values),
        f"undetected @ {top:g}",
        f"wall s @ {top:g}",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in ds.strategy.values:
        v = ds.sel(strategy=label)
        cells = [str(label), f"{float(v.flop_ratio):.2f}"]
        for rate in ds.fault_rate.values:
            acc = v.final_accuracy.sel(fault_rate=rate)
            failed = int(acc.isnull().sum())
            text = f"{float(acc.mean(skipna=True)):.4f}" if failed < acc.size else "failed"
            cells.append(text + (f" ({failed}/{acc.size} failed)" if 0 < failed < acc.size else ""))
        hit = v.sel(fault_rate=top)
        cells += [str(int(hit.undetected.sum())), f"{float(hit.wall_seconds.mean()):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_FAULT_MODEL",
    "DEFAULT_STRATEGIES",
    "LEDGER_COUNTS",
    "PLOTS",
    "RunRecord",
    "Variant",
    "fault_spec",
    "markdown_table",
    "measured_runs",
    "output_paths",
    "run_comparison",
    "run_one",
    "write_outputs",
]

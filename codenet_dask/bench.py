"""The performance benchmark: one training step of a layer, every strategy side by side.

For each layer width and batch, every configuration (uncoded, codenet, replication r=2 and r=3
on the same systematic block grid, and one plain numpy process doing the uncoded arithmetic) runs
one full step (forward, backprop, update) in turn, A B C ... A B C ..., so drifts of the machine
hit all alike; medians and ratios are reported. ``codenet`` and replication also run with one
wrong block result per codeword (forward and backprop) that they must correct. From Dask's task
stream each step's time splits into block products, verify + decode, update, and the rest
(scheduling, transfers, waiting: ``overhead``).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, cast

import numpy as np
from distributed import Client, get_task_stream
from distributed.utils import key_split

from .codes import ProductCode
from .faults import Corruption, CorruptionHook, CorruptionPlan, NoFaults
from .layer import CodedLayer
from .strategies import build_layer

#: Task-prefix first words by phase (see ``graph``: keys read ``<step>-<layer>-...``).
PHASES = {
    "block": "products",
    "summary": "verify+decode",
    "decode": "verify+decode",
    "verdicts": "verify+decode",
    "verify": "verify+decode",
    "repair": "verify+decode",
    "update": "update",
}
LR = 1e-3
#: Pause before each timed step: OpenBLAS threads of the numpy baseline spin for up to ~0.1 s after
#: their last call (its THREAD_TIMEOUT), which would steal a core from the next configuration.
SETTLE_SECONDS = 0.3


@dataclass(frozen=True)
class Config:
    """One column of the benchmark: a strategy on a systematic ``grid x grid`` block grid."""

    name: str
    strategy: Literal["codenet", "uncoded", "replication", "numpy"]
    grid: int = 1
    parity: tuple[int, int] = (0, 0)
    replicas: int = 1
    errors: bool = False  # one wrong block result per codeword of each product

    def flop_ratio(self) -> float:
        """Arithmetic of one step relative to the uncoded step: the redundancy bound."""
        if self.strategy == "codenet":
            return ProductCode(self.grid, self.grid, *self.parity).flop_ratio
        return float(self.replicas)


def default_configs(grids: Sequence[int] = (4, 8), parity: tuple[int, int] = (2, 2)) -> list[Config]:
    configs = [Config("numpy", "numpy")]
    for g in grids:
        shape = f"{g}x{g}+{parity[0]}x{parity[1]}"
        configs += [
            Config(f"uncoded-{g}x{g}", "uncoded", g),
            Config(f"codenet-{shape}", "codenet", g, parity),
            Config(f"codenet-{shape}-errors", "codenet", g, parity, errors=True),
            Config(f"replication2-{g}x{g}", "replication", g, replicas=2),
            Config(f"replication3-{g}x{g}", "replication", g, replicas=3),
            Config(f"replication3-{g}x{g}-errors", "replication", g, replicas=3, errors=True),
        ]
    return configs


@dataclass
class Measurement:
    """Medians over repeats of one configuration at one size."""

    config: str
    strategy: str
    grid: int
    width: int
    batch: int
    dtype: str
    blocks: int
    flop_ratio: float
    seconds: float
    seconds_all: list[float]
    shares: dict[str, float] = field(default_factory=dict)
    encode_seconds: float = 0.0
    #: Largest share of the layer's coded blocks one worker holds (numpy: the whole matrix).
    resident_mib: float = 0.0
    #: Largest rise of a worker's peak RSS during one step above its RSS before it: the step's
    #: temporaries (numpy: this process's). None where the OS cannot reset the peak.
    step_peak_mib: float | None = None
    corrected: int = 0
    ratios: dict[str, float] = field(default_factory=dict)
    #: Client round trips per step (scatters, gathers, questions to the scheduler).
    round_trips: float = 0.0


def error_plan(config: Config, steps: int) -> CorruptionHook:
    """One wrong block result in every codeword of every forward and backprop of ``steps`` steps.

    Positions rotate with the step; replication's errors go to replica 0 of one block per
    codeword-equivalent (block-column / block-row), the same count codenet corrects.
    """
    if not config.errors:
        return NoFaults()
    g, n = config.grid, config.grid + config.parity[0]
    corruptions = []
    for step in range(steps):
        fwd, bwd = 1 + 3 * step, 2 + 3 * step
        for j in range(g):
            a = (j + step) % (n if config.strategy == "codenet" else g)
            fwd_block = (a, j) if config.strategy == "codenet" else (a, j, 0)
            bwd_block = (j, a) if config.strategy == "codenet" else (j, a, 0)
            corruptions.append(Corruption("block-forward", block=fwd_block, op=fwd, kind="add", relative=1e-3))
            corruptions.append(Corruption("block-backward", block=bwd_block, op=bwd, kind="add", relative=1e-3))
    return CorruptionPlan(tuple(corruptions))


class Runner:
    """One configuration at one size: builds its layer, then times single steps."""

    def __init__(self, client: Client, config: Config, width: int, batch: int, dtype: np.dtype, steps: int, seed: int):
        rng = np.random.default_rng(seed)
        self.config, self.client = config, client
        self.weights = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype)
        self.x = rng.standard_normal((width, batch)).astype(dtype)
        self.delta = (rng.standard_normal((width, batch)) / batch).astype(dtype)
        self.layer: CodedLayer | None = None
        self.corrected = 0
        start = time.perf_counter()
        if config.strategy != "numpy":
            self.layer = build_layer(
                config.strategy,
                client,
                self.weights,
                grid=(config.grid, config.grid),
                parity=config.parity,
                replicas=max(config.replicas, 2),
                name=f"bench{config.strategy}",
                hook=error_plan(config, steps),
            )
            # Resident operands, as a hidden layer's are (the previous layer's output, the next one's
            # backprop); the numpy process has them in memory too.
            self.shipped = (self.layer.ship(self.x, "x"), self.layer.ship(self.delta, "delta"))
        self.encode_seconds = time.perf_counter() - start

    def step(self) -> None:
        if self.layer is None:
            w = self.weights
            w @ self.x
            w.T @ self.delta
            w -= (LR * self.delta) @ self.x.T
            return
        # As a training step runs them: both products and the update submitted together, the
        # update gated on the products' acceptance; one gather of the verdicts, then settled.
        x, delta = self.shipped
        layer = self.layer
        forward, backward = layer.submit("forward", x), layer.submit("backward", delta)
        layer.update(delta, x, LR, after=[forward, backward])
        verdicts = layer.executor.gather([*forward.verdicts, *backward.verdicts], "bench step")
        n = len(forward.verdicts)
        results = (layer.settle(forward, verdicts[:n]), layer.settle(backward, verdicts[n:]))
        if not all(v.accepted for v in verdicts):  # the gated update was skipped: run it now
            layer.update(delta, x, LR)
        layer.executor.wait(list(layer.shards.values()), "bench step")  # the step includes its update
        self.corrected += sum(r.report.errors_corrected for r in results)

    @property
    def round_trips(self) -> int:
        """Client round trips so far (``DaskExecutor.round_trips``; 0 for numpy)."""
        return getattr(self.layer.executor, "round_trips", 0) if self.layer is not None else 0


def _shares(stream: list[dict], wall: float, workers: int) -> dict[str, float]:
    """Fractions of the workers' time (wall x workers) spent in each phase; the rest is overhead."""
    busy: dict[str, float] = {}
    for record in stream:
        phase = PHASES.get(key_split(record["key"]).split("-")[0])
        if phase is None:
            continue
        for ss in record.get("startstops", ()):
            if ss["action"] == "compute":
                busy[phase] = busy.get(phase, 0.0) + ss["stop"] - ss["start"]
    capacity = max(wall * workers, 1e-12)
    shares = {phase: busy.get(phase, 0.0) / capacity for phase in ("products", "verify+decode", "update")}
    shares["overhead"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def reset_peak_rss() -> int | None:
    """This process's RSS in bytes, after restarting the kernel's peak-RSS count from it.

    Linux resets ``VmHWM`` when "5" is written to ``/proc/self/clear_refs``; elsewhere (or without
    permission) None, and no step peak is reported.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return None


def peak_rss() -> int | None:
    """This process's peak RSS in bytes since the last :func:`reset_peak_rss`."""
    try:
        return _status_bytes("VmHWM")
    except OSError:
        return None


def _status_bytes(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field_name} not in /proc/self/status")


def _rise_mib(before: dict[str, int | None], after: dict[str, int | None]) -> float | None:
    rises = [cast(int, after[k]) - b for k, b in before.items() if b is not None and after.get(k) is not None]
    return max(rises) / 2**20 if rises else None


def resident_mib(layer: CodedLayer | None, weights: np.ndarray) -> float:
    """The largest share of a layer's coded blocks on one worker (numpy: all of ``weights``)."""
    if layer is None:
        return weights.nbytes / 2**20
    most = max(Counter(layer.placement.values()).values())
    bh, bw = layer.block_shape
    return most * bh * bw * layer.dtype.itemsize / 2**20


def run_benchmark(
    client: Client,
    widths: Sequence[int] = (1024, 2048, 4096),
    batches: Sequence[int] = (64, 256),
    configs: Sequence[Config] | None = None,
    repeats: int = 5,
    dtype: str = "float64",
    progress: Callable[[str], None] | None = None,
) -> list[Measurement]:
    """Every configuration at every size, interleaved per repeat; one Measurement each."""
    configs = list(configs or default_configs())
    workers = len(client.nthreads())
    out: list[Measurement] = []
    for width in widths:
        for batch in batches:
            runners = [
                Runner(client, c, width, batch, np.dtype(dtype), repeats + 1, seed=width + batch) for c in configs
            ]
            for r in runners:
                r.step()  # warm-up: imports, first transfers
            times: dict[str, list[float]] = {c.name: [] for c in configs}
            shares: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
            rises: dict[str, list[float]] = {c.name: [] for c in configs}
            trips = {c.name: runners[i].round_trips for i, c in enumerate(configs)}
            for _ in range(repeats):
                for r in runners:
                    time.sleep(SETTLE_SECONDS)
                    local = r.layer is None  # numpy runs here: measure this process
                    before = {"": reset_peak_rss()} if local else client.run(reset_peak_rss)
                    with get_task_stream(client) as stream:
                        start = time.perf_counter()
                        r.step()
                        wall = time.perf_counter() - start
                    rise = _rise_mib(before, {"": peak_rss()} if local else client.run(peak_rss))
                    times[r.config.name].append(wall)
                    shares[r.config.name].append(_shares(stream.data, wall, workers))
                    if rise is not None:
                        rises[r.config.name].append(rise)
            for r in runners:
                c = r.config
                median_shares = {k: statistics.median(s[k] for s in shares[c.name]) for k in shares[c.name][0]}
                blocks = len(r.layer.placement) if r.layer is not None else 1
                out.append(
                    Measurement(
                        c.name,
                        c.strategy,
                        c.grid,
                        width,
                        batch,
                        dtype,
                        blocks,
                        c.flop_ratio() if c.strategy != "numpy" else 1.0,
                        statistics.median(times[c.name]),
                        times[c.name],
                        median_shares if c.strategy != "numpy" else {},
                        r.encode_seconds,
                        resident_mib(r.layer, r.weights),
                        max(rises[c.name]) if rises[c.name] else None,
                        r.corrected,
                        round_trips=(r.round_trips - trips[c.name]) / repeats,
                    )
                )
                if progress:
                    progress(f"{width:>5} x {batch:<4} {c.name:<32} {statistics.median(times[c.name]):8.4f} s")
            del runners
    _add_ratios(out)
    return out


def _add_ratios(rows: list[Measurement]) -> None:
    """Ratios against the same size's uncoded step (same grid), numpy, and replication r=3."""
    by = {(m.width, m.batch, m.config): m for m in rows}
    for m in rows:
        size = (m.width, m.batch)
        numpy_row = by.get((*size, "numpy"))
        if numpy_row:
            m.ratios["vs_numpy"] = m.seconds / numpy_row.seconds
        uncoded = by.get((*size, f"uncoded-{m.grid}x{m.grid}"))
        if uncoded and m.strategy != "numpy":
            m.ratios["vs_uncoded"] = m.seconds / uncoded.seconds
            m.ratios["vs_uncoded_over_flop_ratio"] = m.ratios["vs_uncoded"] / m.flop_ratio
        suffix = "-errors" if m.config.endswith("-errors") else ""
        r3 = by.get((*size, f"replication3-{m.grid}x{m.grid}{suffix}"))
        if r3 and m.strategy == "codenet":
            m.ratios["vs_replication3"] = m.seconds / r3.seconds


TARGETS = {
    "coded/uncoded <= 1.05 x FLOP ratio": ("codenet", "vs_uncoded_over_flop_ratio", 1.05, False),
    "codenet/replication-r3 <= 0.60 (one error per codeword)": ("codenet", "vs_replication3", 0.60, True),
    "verify+decode <= 3% of the step": ("codenet", "verify+decode", 0.03, False),
    "uncoded Dask step >= 0.8 x numpy speed": ("uncoded", "vs_numpy", 1 / 0.8, False),
}


def check_targets(rows: list[Measurement], width: int = 4096, batch: int = 256) -> list[dict]:
    """Each target of the performance issue at ``width`` x ``batch``: value, limit, met."""
    out = []
    for name, (strategy, metric, limit, errors) in TARGETS.items():
        for m in rows:
            if (m.width, m.batch, m.strategy) != (width, batch, strategy) or m.config.endswith("-errors") != errors:
                continue
            value = m.shares.get(metric) if metric == "verify+decode" else m.ratios.get(metric)
            if value is not None:
                out.append(
                    {
                        "target": name,
                        "config": m.config,
                        "value": round(value, 4),
                        "limit": round(limit, 4),
                        "met": bool(value <= limit),
                    }
                )
    return out


def to_markdown(rows: list[Measurement]) -> str:
    """The table the README carries: one row per configuration and size."""
    head = (
        "| width | batch | config | blocks | FLOP ratio | step s | round trips | vs uncoded | vs numpy | vs r=3 "
        "| products | verify+decode | update | overhead | busy s/worker | encode s | blocks MiB/worker "
        "| step temporaries MiB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for m in rows:
        s, r = m.shares, m.ratios

        def pct(k: str, s: dict = s) -> str:
            return f"{100 * s[k]:.0f}%" if k in s else ""

        def ratio(k: str, r: dict = r) -> str:
            return f"{r[k]:.2f}" if k in r else ""

        lines.append(
            f"| {m.width} | {m.batch} | {m.config} | {m.blocks} | {m.flop_ratio:.2f} | {m.seconds:.3f} | "
            f"{m.round_trips:.0f} | "
            f"{ratio('vs_uncoded')} | {ratio('vs_numpy')} | {ratio('vs_replication3')} | {pct('products')} | "
            f"{pct('verify+decode')} | {pct('update')} | {pct('overhead')} | {_busy(m)} | {m.encode_seconds:.2f} | "
            f"{m.resident_mib:.0f} | {_mib(m.step_peak_mib)} |"
        )
    return "\n".join(lines)


def growth_markdown(rows: list[Measurement]) -> str:
    """How step time and temporaries grow with the width (at the largest batch), per configuration.

    ``x per doubling`` is the geometric mean growth of the step time when the width doubles: the
    arithmetic grows 4x, so less than 4 means fixed costs (scheduling, checks) still weigh.
    """
    batch = max(m.batch for m in rows)
    widths = sorted({m.width for m in rows})
    by = {(m.config, m.width): m for m in rows if m.batch == batch}
    configs = list(dict.fromkeys(m.config for m in rows))
    head = (
        "| config | blocks | "
        + " | ".join(f"step s @{w}" for w in widths)
        + " | x per doubling | "
        + " | ".join(f"temporaries MiB @{w}" for w in widths)
        + " |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in configs:
        cells = [by.get((name, w)) for w in widths]
        known = [(w, m) for w, m in zip(widths, cells) if m is not None]
        growth = ""
        if len(known) > 1:
            (w0, m0), (w1, m1) = known[0], known[-1]
            growth = f"{(m1.seconds / m0.seconds) ** (1 / np.log2(w1 / w0)):.2f}"
        blocks = known[-1][1].blocks if known else ""
        lines.append(
            f"| {name} | {blocks} | "
            + " | ".join(f"{m.seconds:.3f}" if m else "" for m in cells)
            + f" | {growth} | "
            + " | ".join(_mib(m.step_peak_mib) if m else "" for m in cells)
            + " |"
        )
    return "\n".join(lines)


def _busy(m: Measurement) -> str:
    """Seconds each worker spent computing tasks in one step (the step minus its overhead share):
    what the step would take with free scheduling and transfers."""
    return f"{(1 - m.shares['overhead']) * m.seconds:.3f}" if "overhead" in m.shares else ""


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def as_json(rows: list[Measurement]) -> dict:
    """Every measurement, and the targets judged at the largest width and batch measured."""
    width, batch = max(m.width for m in rows), max(m.batch for m in rows)
    return {
        "measurements": [asdict(m) for m in rows],
        "targets_at": {"width": width, "batch": batch},
        "targets": check_targets(rows, width, batch),
    }


__all__ = [
    "TARGETS",
    "Config",
    "Measurement",
    "as_json",
    "check_targets",
    "default_configs",
    "growth_markdown",
    "peak_rss",
    "reset_peak_rss",
    "resident_mib",
    "run_benchmark",
    "to_markdown",
]

"""The coded-layer demonstration: train one coded layer under soft errors, checked against numpy.

Runs ``steps`` full training steps (forward ``W X``, backprop ``W^T D``, update
``W -= lr D X^T``) of one coded layer on the cluster while a seeded fault injector corrupts block
products on the workers, and the same arithmetic in plain numpy. Reports what was injected (the
injector's ground truth, replayed), what the code detected, corrected and recomputed, and the
largest deviation from numpy, which is the honest test of "the right answer".
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from distributed import Client

from .faults import RandomFaults, Site
from .layer import CodedLayer, ProductResult

DEFAULT_FAULTS = "bitflip:0.05:steps=block-forward+block-backward,nan:0.02:steps=block-forward+block-backward"


@dataclass
class DemoSummary:
    """Plain-data outcome of :func:`run_demo` (what ``--json`` prints)."""

    size: int
    batch: int
    grid: list[int]
    parity: list[int]
    dtype: str
    steps: int
    workers: int
    faults: str
    injected: int = 0
    detected: int = 0
    corrected: int = 0
    recomputed: int = 0
    max_relative_error: float = 0.0
    encode_count: int = 0
    wall_seconds: float = 0.0
    dashboard: str | None = None
    per_step: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def run_demo(
    client: Client,
    size: int = 1024,
    batch: int = 64,
    grid: tuple[int, int] = (4, 4),
    parity: tuple[int, int] = (2, 2),
    steps: int = 5,
    faults: str = DEFAULT_FAULTS,
    seed: int = 0,
    dtype: str = "float64",
    lr: float = 0.05,
    progress: Callable[[dict], None] | None = None,
) -> DemoSummary:
    """Train one coded ``size x size`` layer for ``steps`` steps; see the module docstring."""
    rng = np.random.default_rng(seed)
    np_dtype = np.dtype(dtype)
    hook = RandomFaults.from_string(faults, seed=seed)
    w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np_dtype)
    summary = DemoSummary(size, batch, list(grid), list(parity), np_dtype.name, steps,
                          len(client.scheduler_info()["workers"]), faults,
                          dashboard=client.dashboard_link)
    start = time.perf_counter()
    layer = CodedLayer.encode(client, w, grid=grid, parity=parity, name="demo0", hook=hook, seed=seed)
    reference = w.astype(np.float64)
    for step in range(steps):
        x = rng.standard_normal((size, batch)).astype(np_dtype)
        delta = (rng.standard_normal((size, batch)) / batch).astype(np_dtype)
        forward = layer.forward(x)
        backward = layer.backward(delta)
        layer.update(delta, x, lr)
        errors = [
            _relative(forward.to_numpy(), reference @ x),
            _relative(backward.to_numpy(), reference.T @ delta),
        ]
        reference -= lr * delta.astype(np.float64) @ x.astype(np.float64).T
        row = {"step": step + 1, "max_relative_error": max(errors)}
        for result in (forward, backward):
            injected = _injected(hook, layer, result)
            row[result.report.operation] = {**result.report.as_dict(), "injected": injected}
            summary.injected += injected
            summary.detected += result.report.errors_detected
            summary.corrected += result.report.errors_corrected
            summary.recomputed += result.report.recomputed
        summary.max_relative_error = max(summary.max_relative_error, row["max_relative_error"])
        summary.per_step.append(row)
        if progress:
            progress(row)
    summary.max_relative_error = max(summary.max_relative_error, _relative(layer.gather_weights(), reference))
    summary.encode_count = layer.encode_count
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want)) / max(np.max(np.abs(want)), 1e-300))


def _injected(hook: RandomFaults, layer: CodedLayer, result: ProductResult) -> int:
    """Faults the injector put into this product's block tasks (replayed from its seed)."""
    forward = result.report.operation == "forward"
    nr, nc = layer.code.coded_shape
    rows, cols = (nr, layer.code.kc) if forward else (layer.code.kr, nc)
    step = "block-forward" if forward else "block-backward"
    op = result.report.op
    return sum(
        hook.decide(Site(step, layer.name, op, (a, b)), attempt) is not None
        for attempt in range(result.report.recomputed + 1)
        for a in range(rows) for b in range(cols)
    )

"""The layer demonstration: train one layer under soft errors, checked against numpy.

Runs ``steps`` full training steps (forward ``W X``, backprop ``W^T D``, update
``W -= lr D X^T``) of one layer (codenet, uncoded or replication) on the cluster while a seeded
fault injector corrupts block products on the workers, and the same arithmetic in plain numpy.
Reports the fault ledger (every injected fault: corrected, recomputed, benign or undetected) and
the largest deviation from numpy, which is the honest test of "the right answer".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from distributed import Client

from .faults import RandomFaults, collect_injected
from .ledger import FaultLedger
from .strategies import Strategy, build_layer

DEFAULT_FAULTS = "bitflip:0.05:steps=block-forward+block-backward,nan:0.02:steps=block-forward+block-backward"


@dataclass
class DemoSummary:
    """Plain-data outcome of :func:`run_demo` (what ``--json`` prints)."""

    strategy: str
    size: int
    batch: int
    grid: list[int]
    parity: list[int]
    replicas: int
    dtype: str
    steps: int
    workers: int
    faults: str
    detected: int = 0
    recomputed: int = 0
    ledger: dict = field(default_factory=dict)
    max_relative_error: float = 0.0
    encode_count: int = 0
    wall_seconds: float = 0.0
    dashboard: str | None = None
    per_step: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def run_demo(
    client: Client,
    strategy: Strategy = "codenet",
    size: int = 1024,
    batch: int = 64,
    grid: tuple[int, int] = (4, 4),
    parity: tuple[int, int] = (2, 2),
    replicas: int = 3,
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
    run = uuid.uuid4().hex[:12]
    hook = RandomFaults.from_string(faults, seed=seed, run=run)
    w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np_dtype)
    coded = strategy == "codenet"
    summary = DemoSummary(
        strategy,
        size,
        batch,
        list(grid),
        list(parity) if coded else [0, 0],
        replicas if strategy == "replication" else 1,
        np_dtype.name,
        steps,
        len(client.nthreads()),
        faults,
        dashboard=client.dashboard_link,
    )
    ledger = FaultLedger(dtype=np_dtype)
    start = time.perf_counter()
    layer = build_layer(
        strategy, client, w, grid=grid, parity=parity, replicas=replicas, name="demo0", hook=hook, seed=seed
    )
    if layer.encode_report is not None:
        ledger.add_scrub(layer.name, 0, layer.encode_report)
    reference = w.astype(np.float64)
    for step in range(steps):
        x = rng.standard_normal((size, batch)).astype(np_dtype)
        delta = (rng.standard_normal((size, batch)) / batch).astype(np_dtype)
        shipped_x, shipped_delta = layer.ship(x, "x"), layer.ship(delta, "delta")  # each crosses once
        forward = layer.forward(shipped_x)
        backward = layer.backward(shipped_delta)
        layer.update(shipped_delta, shipped_x, lr)
        errors = [
            _relative(forward.to_numpy(), reference @ x),
            _relative(backward.to_numpy(), reference.T @ delta),
        ]
        reference -= lr * delta.astype(np.float64) @ x.astype(np.float64).T
        row: dict[str, Any] = {"step": step + 1, "max_relative_error": max(errors)}
        for result in (forward, backward):
            row[result.report.operation] = result.report.as_dict()
            ledger.add_product(result.report)
            summary.detected += result.report.errors_detected
            summary.recomputed += result.report.recomputed
        summary.max_relative_error = max(summary.max_relative_error, row["max_relative_error"])
        summary.per_step.append(row)
        if progress:
            progress(row)
    summary.max_relative_error = max(summary.max_relative_error, _relative(layer.gather_weights(), reference))
    summary.encode_count = layer.encode_count
    summary.wall_seconds = time.perf_counter() - start
    ledger.add_injected(collect_injected(client, run))
    summary.ledger = ledger.summary()
    return summary


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    """Largest deviation relative to the largest reference value (inf if ``got`` is not finite)."""
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.max(np.abs(got.astype(np.float64) - want)) / max(np.max(np.abs(want)), 1e-300))

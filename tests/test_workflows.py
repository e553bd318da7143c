"""Smoke tests: the benchmarks under workflows/ keep running (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
#: A script's own folder is first on its sys.path, not the checkout: put the checkout under test first.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(WORKFLOWS.parent), os.environ.get("PYTHONPATH")])))


@pytest.mark.parametrize(
    "script,keys",
    [
        ("bench_matmul.py", {"coded_over_dask", "coded_over_numpy", "flop_ratio"}),
        ("bench_store.py", {"ratios"}),
        ("bench.py", {"measurements", "targets", "targets_at"}),
    ],
)
def test_benchmark_runs_at_tiny_size(script, keys):
    done = subprocess.run(
        [sys.executable, str(WORKFLOWS / script), "--tiny", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert keys <= set(result)


def test_hpc_large_layer_runs_at_tiny_size_on_a_local_cluster():
    """The HPC large-layer script with the CLI's cluster options (here --cluster local)."""
    done = subprocess.run(
        [
            sys.executable,
            str(WORKFLOWS / "hpc_large_layer.py"),
            "--tiny",
            "--check",
            "--json",
            "--cluster",
            "local",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["workers"] == 2 and len(result["steps"]) == 2 and result["encode_count"] == 1
    assert result["max_relative_error_first_forward"] < 1e-5  # float32 layer, checked against numpy
    assert all(step["step_s"] > 0 for step in result["steps"])
    assert 0 < result["blocks_mib_per_worker"] < min(result["peak_worker_mib"], result["encode_peak_worker_mib"])


def test_a_long_run_keeps_its_store_bounded():
    """--checkpoint-every 10 --keep-checkpoints 2 over 60 steps (7 checkpoints): the store, measured
    on disk while training, never exceeds 3x the coded model + 1 MB (the 1,000-step figure is in
    the README, from the same script without --tiny)."""
    done = subprocess.run(
        [sys.executable, str(WORKFLOWS / "bounded_store.py"), "--tiny", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["steps"] == 60 and result["checkpoints_written"] == 7 and result["checkpoints_kept"] == 2
    assert result["samples"] > 5  # measured while training, not only at the end
    assert result["max_store_bytes"] <= 3 * result["coded_model_bytes"] + 2**20
    assert result["final_store_bytes"] < 2 * result["coded_model_bytes"] + 2**20

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


@pytest.mark.parametrize(
    "script,keys",
    [
        ("polydot_conditioning.py", {"split", "circle_condition", "chebyshev_condition", "circle_error"}),
        ("polydot_detection.py", {"clean_error", "smallest_detected", "worst_accepted_over_clean"}),
        ("compare_codes.py", {"scheme", "storage", "flop_ratio", "adversarial", "random", "decode_clean_ms"}),
    ],
)
def test_polydot_measurements_run_at_tiny_size(script, keys):
    done = subprocess.run(
        [sys.executable, str(WORKFLOWS / script), "--tiny", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert rows and all(keys <= set(row) for row in rows if "unavailable" not in row)

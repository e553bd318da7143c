"""Smoke tests: the benchmarks under workflows/ keep running (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


@pytest.mark.parametrize("script,keys", [
    ("bench_matmul.py", {"coded_over_dask", "coded_over_numpy", "flop_ratio"}),
    ("bench_store.py", {"ratios"}),
])
def test_benchmark_runs_at_tiny_size(script, keys):
    done = subprocess.run([sys.executable, str(WORKFLOWS / script), "--tiny", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert keys <= set(result)

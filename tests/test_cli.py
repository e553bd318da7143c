"""The command line as a user runs it: a real subprocess, JSON on stdout, exit code 2 on usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codenet_dask", *args], capture_output=True, text=True, timeout=timeout
    )


def test_demo_json_reports_corrections_and_matches_numpy():
    done = run_cli(
        "demo",
        "--size",
        "96",
        "--batch",
        "8",
        "--grid",
        "3x3",
        "--parity",
        "2x2",
        "--steps",
        "3",
        "--workers",
        "2",
        "--faults",
        "bitflip:0.1:field=exponent:steps=block-forward+block-backward",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert summary["matches_numpy"] is True
    assert summary["max_relative_error"] < 1e-10
    assert summary["ledger"]["injected"] > 0 and summary["ledger"]["corrected"] > 0
    assert summary["ledger"]["undetected"] == 0
    assert summary["encode_count"] == 1
    assert "step 3/3" in done.stderr


def test_demo_uncoded_lets_errors_through_and_says_so():
    done = run_cli(
        "demo",
        "--strategy",
        "uncoded",
        "--size",
        "64",
        "--batch",
        "4",
        "--grid",
        "2x2",
        "--steps",
        "2",
        "--workers",
        "1",
        "--faults",
        "bitflip:0.3:field=exponent:steps=block-forward+block-backward",
        "--json",
    )
    assert done.returncode == 1  # a wrong result got through: the run reports failure
    summary = json.loads(done.stdout)
    assert summary["ledger"]["undetected"] > 0 and summary["matches_numpy"] is False


@pytest.mark.parametrize(
    "args,message",
    [
        (["demo", "--grid", "4"], "--grid expects two integers like 4x4"),
        (["demo", "--parity", "6x0", "--grid", "12x2"], "condition number"),
        (["demo", "--batch", "0"], "--batch must be at least 1"),
        (["demo", "--lr", "-1"], "--lr must be > 0"),
        (["demo", "--faults", "bitflip:2"], "bitflip"),
        (["demo", "--size", "3", "--grid", "4x4"], "finer than"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message):
    done = run_cli(*args, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_no_command_prints_help_and_exits_2():
    done = run_cli(timeout=60)
    assert done.returncode == 2 and "demo" in done.stderr


def test_unreachable_scheduler_is_a_clear_error():
    done = run_cli("demo", "--scheduler", "tcp://127.0.0.1:9", "--size", "16", "--grid", "2x2", timeout=60)
    assert done.returncode != 0
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr

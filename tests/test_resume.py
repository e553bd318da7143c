"""Resume: a run SIGKILLed mid-way and continued with ``train --resume`` ends bit-identical to an
uninterrupted one (weights, ledger, evaluations); a damaged newest checkpoint falls back to the
previous one; settings that would change the run are refused; finished runs report their outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from clirun import run_cli as cli
from test_store_support import same_block

from codenet_dask.errors import StoreError
from codenet_dask.store import CodedStore

RUN = [
    "--dataset",
    "digits",
    "--layers",
    "16",
    "--epochs",
    "4",
    "--batch-size",
    "128",
    "--lr",
    "0.5",
    "--grid",
    "2x2",
    "--workers",
    "2",
    "--checkpoint-every",
    "5",
    "--seed",
    "3",
    "--faults",
    "bitflip:0.02:steps=block-forward+block-backward+update,nan:0.01:steps=block-forward",
]
STEPS = 4 * 12


def latest_step(path: Path) -> int:
    """The newest checkpoint's step, or -1 (the writer may be committing or collecting meanwhile)."""
    try:
        with CodedStore.open(path) as store:
            history = store.checkpoints()
        return history[0].step if history else -1
    except (StoreError, OSError):
        return -1


def kill_mid_run(path: Path, after_step: int, deadline: float = 240) -> None:
    """Start ``train --store path`` and SIGKILL it (and its worker processes) once a checkpoint at
    ``after_step`` or later exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "codenet_dask", "train", *RUN, "--store", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + deadline
        while latest_step(path) < after_step:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < end, "no checkpoint within the deadline"
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert 0 < latest_step(path) < STEPS


def coded_blocks(path: Path) -> dict:
    with CodedStore.open(path) as store:
        return store.restore()


def assert_same_model(a: Path, b: Path) -> None:
    left, right = coded_blocks(a), coded_blocks(b)
    assert set(left) == set(right)
    for name in left:
        assert set(left[name]) == set(right[name])
        assert all(same_block(left[name][k], right[name][k]) for k in left[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("uninterrupted") / "store"
    done = cli("train", *RUN, "--store", str(path), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return path, json.loads(done.stdout)


def test_sigkilled_run_resumes_bit_identical(uninterrupted, tmp_path):
    reference_store, reference = uninterrupted
    store = tmp_path / "store"
    kill_mid_run(store, after_step=10)
    # The same settings may be repeated on the command line; they are checked, not changed.
    done = cli("train", "--resume", str(store), "--lr", "0.5", "--seed", "3", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed" and summary["resumed_from_step"] >= 10
    assert summary["step"] == summary["iterations"] == STEPS
    # Bit-identical model (every coded block and its bookkeeping), the same ledger and evaluations.
    assert_same_model(store, reference_store)
    assert summary["faults"] == reference["faults"] and reference["faults"]["injected"] > 0
    assert summary["accuracy_by_epoch"] == reference["accuracy_by_epoch"]
    assert summary["test_accuracy"] == reference["test_accuracy"] and summary["final_loss"] == reference["final_loss"]


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(uninterrupted, tmp_path):
    reference_store, reference = uninterrupted
    store = tmp_path / "store"
    kill_mid_run(store, after_step=15)
    with CodedStore.open(store) as s:
        newest, previous = s.checkpoints()[:2]
    # Every chunk object the newest checkpoint wrote (all its changed blocks) gets other bytes:
    # far beyond what the code rebuilds.
    since = datetime.fromisoformat(previous.written_at).timestamp()
    damaged = [p for p in (store / "chunks").iterdir() if p.stat().st_mtime > since]
    assert damaged
    for p in damaged:
        p.write_bytes(b"\0" * p.stat().st_size)
    done = cli("train", "--resume", str(store), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"checkpoint {newest.id} (step {newest.step}) does not verify" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_from_step"] == previous.step < newest.step
    assert_same_model(store, reference_store)
    assert summary["faults"] == reference["faults"]


def test_resume_refuses_changed_settings_and_writes_nothing(uninterrupted):
    store, _ = uninterrupted
    before = sorted(p.name for p in (store / "snapshots").iterdir())
    done = cli("train", "--resume", str(store), "--lr", "0.3", "--layers", "32", "--dataset", "mnist", timeout=120)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "--lr 0.3 (the run has 0.5)" in line and "--layers 32 (the run has 64,16,10)" in line
    assert "--dataset mnist (the run has digits)" in line and "keeps the settings it started with" in line
    for args, message in (
        (["--store", "elsewhere"], "drop --store"),
        (["--workers", "3"], "--workers 3 (the run has 2"),
        (["--no-judge"], "--no-judge (the run has the judge on)"),
    ):
        done = cli("train", "--resume", str(store), *args, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == before


def test_resuming_a_finished_run_reports_its_outcome(uninterrupted):
    store, reference = uninterrupted
    done = cli("train", "--resume", str(store), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "the run completed at step 48; nothing to resume" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["faults"] == reference["faults"] and summary["test_accuracy"] == reference["test_accuracy"]


def test_a_diverged_run_stays_diverged(tmp_path):
    store = tmp_path / "store"
    args = [*RUN[:-2], "--epochs", "2", "--strategy", "uncoded", "--faults", "bitflip:0.05", "--seed", "2"]
    first = cli("train", *args, "--store", str(store), "--json")
    assert first.returncode == 4, first.stderr[-3000:]
    again = cli("train", "--resume", str(store), "--json", timeout=120)
    assert again.returncode == 4 and "the run diverged" in again.stderr
    assert json.loads(again.stdout)["reason"] == json.loads(first.stdout)["reason"]


def test_stores_without_a_run_cannot_be_resumed(tmp_path):
    with CodedStore.create(tmp_path / "api") as store:
        from test_store_support import BLOCK, CODE, make_grid

        store.add_layer("fc1", CODE, BLOCK)
        store.write_layer("fc1", make_grid())
        store.checkpoint(1)
    done = cli("train", "--resume", str(tmp_path / "api"), timeout=60)
    assert done.returncode == 2 and "holds no training run" in done.stderr
    done = cli("train", "--resume", str(tmp_path / "missing"), timeout=60)
    assert done.returncode == 2 and "no such store" in done.stderr

"""Training end to end: the CLI as a user runs it, rollback to checkpoints, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from clirun import run_cli

from codenet_dask.data import load_dataset
from codenet_dask.training import TrainConfig, Trainer

SMALL = [
    "--dataset",
    "digits",
    "--layers",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "128",
    "--lr",
    "0.5",
    "--grid",
    "2x2",
    "--workers",
    "2",
]


def test_train_json_end_to_end(tmp_path):
    done = run_cli(
        "train",
        *SMALL,
        "--store",
        str(tmp_path / "store"),
        "--json",
        "--faults",
        "bitflip:0.02:field=exponent:steps=block-forward+block-backward",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    for key in (
        "strategy",
        "workers",
        "layers",
        "epochs",
        "iterations",
        "test_accuracy",
        "final_loss",
        "wall_seconds",
        "faults",
        "store",
    ):
        assert key in summary, key
    for key in ("injected", "detected", "corrected", "recomputed", "rollbacks", "undetected"):
        assert key in summary["faults"], key
    assert summary["layers"] == [64, 16, 10] and summary["iterations"] == 2 * 12
    assert summary["faults"]["injected"] > 0 and summary["faults"]["undetected"] == 0
    assert summary["test_accuracy"] > 0.6
    assert summary["status"] == "completed" and summary["step"] == 24 and summary["resumed_from_step"] == 0
    inspected = run_cli("inspect", str(tmp_path / "store"), "--json", timeout=60)
    assert inspected.returncode == 0 and "dense0" in inspected.stdout  # the store holds the model


def test_uncorrectable_steps_roll_back_and_training_still_converges(client, tmp_path):
    data = load_dataset("digits", seed=0)
    # A block result stuck at zero is wrong at every entry: two such in one 4-block codeword exceed
    # what its 2 parities can place (detected, never miscorrected). With a single attempt per
    # product, such a product forces a rollback.
    config = TrainConfig(
        hidden=(16,),
        epochs=2,
        batch_size=128,
        lr=0.5,
        grid=2,
        parity=(2, 2),
        faults="zero:0.08:steps=block-forward",
        checkpoint_every=5,
        seed=5,
        max_attempts=1,
    )
    trainer = Trainer(client, data, config, tmp_path / "store")
    summary = trainer.run()
    assert summary.faults["rollbacks"] > 0
    assert summary.faults["rolled_back"] > 0
    assert summary.faults["undetected"] == 0
    assert summary.test_accuracy > 0.6
    # Checkpoints every 5 steps, epochs of 12: rollbacks cross epoch ends, and each epoch is still
    # evaluated exactly once, on the weights that finished it.
    assert len(summary.accuracy_by_epoch) == config.epochs
    assert summary.accuracy_by_epoch[-1] == summary.test_accuracy
    clean = Trainer(
        client,
        data,
        TrainConfig(hidden=(16,), epochs=2, batch_size=128, lr=0.5, grid=2, parity=(2, 2), faults="none", seed=5),
        tmp_path / "clean",
    ).run()
    assert abs(summary.test_accuracy - clean.test_accuracy) < 0.05


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategy", "triple"], "invalid choice: 'triple'"),
        (["--grid", "3x2"], "--grid must be square"),
        (["--grid", "11x11"], "finer than the 10 output classes"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--layers", "a,b"], "--layers expects comma-separated widths"),
        (["--faults", "bitflip:-1"], "bitflip"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message):
    done = run_cli("train", "--dataset", "digits", *args, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stdout == ""


def test_uncoded_run_that_diverges_reports_it_with_its_exit_code():
    """Bit flips reach uncoded weights as NaN/Inf: the run ends with status "diverged", the step and
    the reason, its ledger so far (undetected faults), one JSON object on stdout and exit code 4."""
    done = run_cli("train", *SMALL, "--strategy", "uncoded", "--faults", "bitflip:0.05", "--seed", "2", "--json")
    assert done.returncode == 4, done.stderr[-3000:]
    [line] = done.stdout.splitlines()
    summary = json.loads(line)
    assert summary["status"] == "diverged" and summary["faults"]["undetected"] > 0
    assert 0 < summary["step"] < summary["iterations"] and "NaN/Inf" in summary["reason"]
    assert summary["test_accuracy"] is None  # strict JSON: no NaN token
    assert "diverged" in done.stderr


def test_uncoded_run_with_undetected_faults_exits_3():
    done = run_cli("train", *SMALL, "--strategy", "uncoded", "--faults", "bitflip:0.05", "--seed", "0", "--json")
    assert done.returncode == 3, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed" and summary["faults"]["undetected"] > 0


@pytest.mark.parametrize(
    "layers,message",
    [
        ("64,16", "starts with the data's 64 features but does not end with its 10 classes"),
        ("32,10", "ends with the data's 10 classes but does not start with its 64 features"),
        ("10", "ends with the data's 10 classes"),
        ("64", "give the full spec 64,10 or the hidden widths only (an empty list)"),
        ("16,0", "--layers widths must be positive integers"),
    ],
)
def test_ambiguous_layer_specs_are_refused(layers, message):
    done = run_cli("train", "--dataset", "digits", "--layers", layers, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1


def test_full_layer_spec_builds_the_same_network_as_hidden_widths():
    args = [*SMALL, "--epochs", "1", "--faults", "none", "--json"]
    hidden = json.loads(run_cli("train", *args).stdout)
    full = run_cli("train", *args[:-1], "--layers", "64,16,10", "--json")
    assert full.returncode == 0, full.stderr[-2000:]
    full = json.loads(full.stdout)
    assert full["layers"] == hidden["layers"] == [64, 16, 10]
    assert full["test_accuracy"] == hidden["test_accuracy"]


def test_help_says_the_layers_rule_and_the_exit_codes():
    done = run_cli("train", "--help", timeout=60)
    assert done.returncode == 0
    assert "IN,...,OUT" in done.stdout and "exit codes" in done.stdout and "gave up" in done.stdout


def test_data_dir_without_mnist_files_exits_2(tmp_path):
    done = run_cli("train", "--data-dir", str(tmp_path), timeout=60)
    assert done.returncode == 2 and "train-images-idx3-ubyte" in done.stderr


def test_existing_store_is_refused_and_left_alone(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "keep.txt").write_text("mine")
    done = run_cli("train", "--dataset", "digits", "--store", str(store), timeout=60)
    assert done.returncode == 2 and "already exists" in done.stderr
    assert [p.name for p in store.iterdir()] == ["keep.txt"]


def test_a_killed_worker_is_survived_by_restoring_the_checkpoint(tmp_path):
    """SIGKILL one worker process mid-run: the run restores the last checkpoint onto the workers
    it has (the nanny's replacement included) and finishes with the accuracy of a clean run."""
    import os
    import signal
    import threading

    from distributed import Client

    from codenet_dask import local_cluster

    data = load_dataset("digits", seed=0)
    config = TrainConfig(
        hidden=(16,), epochs=2, batch_size=128, lr=0.5, grid=2, parity=(2, 2), faults="none", checkpoint_every=3, seed=4
    )
    with local_cluster(2) as cluster, Client(cluster) as client:
        trainer = Trainer(client, data, config, tmp_path / "store")
        killed = threading.Event()

        def kill_one(row: dict) -> None:
            if row["position"] == 5 and not killed.is_set():
                killed.set()
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)

        summary = trainer.run(kill_one)
        survived = [layer.gather_weights() for layer in trainer.layers]
        clean = Trainer(client, data, config, tmp_path / "clean")
        reference = clean.run()
        expected = [layer.gather_weights() for layer in clean.layers]
    assert killed.is_set()
    assert summary.faults["rollbacks"] >= 1
    assert summary.iterations == 2 * 12
    # Restored bit-exactly and the lost steps redone: the same model as an undisturbed run.
    assert summary.test_accuracy == reference.test_accuracy > 0.6
    for got, want in zip(survived, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("strategy,replicas", [("replication", 3), ("codenet", 3)])
def test_update_faults_never_reach_checkpoints_or_results(client, tmp_path, strategy, replicas):
    """Faulty updates persist in stored blocks; scrubs before every checkpoint and evaluation (and,
    for replication, majority votes over the copies) keep them out of what is saved and reported."""
    data = load_dataset("digits", seed=0)
    config = TrainConfig(
        strategy=strategy,
        replicas=replicas,
        hidden=(16,),
        epochs=1,
        batch_size=128,
        lr=0.5,
        grid=2,
        parity=(2, 2) if strategy == "codenet" else (0, 0),
        faults="bitflip:0.02:field=exponent:steps=update+block-forward",
        checkpoint_every=4,
        scrub_every=2,
        seed=5,
    )
    summary = Trainer(client, data, config, tmp_path / "store").run()
    assert summary.faults["injected"] > 0
    assert summary.faults["undetected"] == 0
    assert summary.test_accuracy > 0.5


def test_a_run_that_gives_up_accounts_for_every_fault(client, tmp_path):
    """Faults beyond what checkpoints absorb (replication r=2 can only detect a replica a faulty
    update spoilt): the run stops with a clear error after MAX_ROLLBACKS, and the faults of its
    last segment count as caught (rolled back), never as undetected."""
    data = load_dataset("digits", seed=0)
    config = TrainConfig(
        strategy="replication",
        replicas=2,
        hidden=(16,),
        epochs=1,
        batch_size=128,
        lr=0.5,
        grid=2,
        faults="bitflip:0.3:field=exponent:steps=update",
        checkpoint_every=2,
        seed=1,
    )
    trainer = Trainer(client, data, config, tmp_path / "store")
    summary = trainer.run()
    assert summary.status == "gave-up" and "gave up after 20 rollbacks" in summary.reason
    assert summary.faults["rollbacks"] == 21 and math.isnan(summary.test_accuracy)
    assert 0 < summary.step <= summary.iterations
    assert summary.faults["injected"] > 0 and summary.faults["undetected"] == 0, summary.faults


def test_two_runs_on_one_scheduler_each_report_their_own_faults(tmp_path):
    """Ground truth is kept per run: run concurrently on one external scheduler, two runs report
    exactly the faults each injects when run alone (forward faults in one, backward in the other)."""
    import subprocess
    import sys

    from codenet_dask import local_cluster

    runs = {
        "forward": ["--faults", "bitflip:0.05:steps=block-forward", "--seed", "1"],
        "backward": ["--faults", "bitflip:0.05:steps=block-backward", "--seed", "2"],
    }
    with local_cluster(2) as cluster:
        common = [*SMALL[:-2], "--scheduler", cluster.scheduler_address, "--json", "--quiet"]

        def command(name: str) -> list[str]:
            return [sys.executable, "-m", "codenet_dask", "train", *common, *runs[name]]

        alone = {name: json.loads(run_cli(*command(name)[3:]).stdout) for name in runs}
        started = {name: subprocess.Popen(command(name), stdout=subprocess.PIPE, text=True) for name in runs}
        together = {name: json.loads(p.communicate(timeout=300)[0]) for name, p in started.items()}
    for name in runs:
        assert together[name]["faults"]["injected"] == alone[name]["faults"]["injected"] > 0, name
        assert together[name]["faults"]["undetected"] == 0 and together[name]["quarantined"] == []

"""The in-process reference executor and the Dask executor run the same protocol bit for bit.

Seeded training runs over code shapes, strategies, fault specs and worker counts are run twice:
on a real LocalCluster (worker processes, BLAS on one thread) and on ``LocalExecutor`` (no Dask).
Outputs (final weights, losses, accuracies), every product's report and the fault ledger must be
identical, not just close: the reference executor is what the Monte Carlo runs use in place of the
cluster, so any difference would mean the Monte Carlo tests a different protocol.

    python workflows/executors_agree.py             # every run at full length: >= 1,000 steps (~15 min)
    python workflows/executors_agree.py --epochs 2  # the CI-sized version tests/test_executors.py runs

Exit status 1 if any run differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from distributed import Client

from codenet_dask import DaskExecutor, Dataset, LocalExecutor, TrainConfig, Trainer, UncorrectableError, local_cluster

#: (strategy, grid, parity, replicas, faults, workers, epochs): together >= 1,000 training steps.
RUNS = [
    ("codenet", 2, (2, 2), 3, "bitflip:0.05:steps=block-forward+block-backward,nan:0.01:steps=block-forward", 2, 10),
    (
        "codenet",
        2,
        (1, 1),
        3,
        "bitflip:0.02:field=exponent:steps=block-forward,noise:0.02:scale=1e-3:steps=decode",
        3,
        10,
    ),
    (
        "codenet",
        4,
        (2, 2),
        3,
        "bitflip:0.01:steps=block-forward+block-backward+activation,bitflip:0.003:steps=update",
        4,
        10,
    ),
    ("codenet", 2, (2, 2), 3, "bitflip:0.1:field=exponent:workers=1:steps=block-forward+update", 4, 8),
    (
        "replication",
        2,
        (0, 0),
        3,
        "bitflip:0.03:field=exponent:steps=block-forward+block-backward,nan:0.01:steps=project+verify",
        2,
        10,
    ),
    ("replication", 2, (0, 0), 2, "bitflip:0.03:field=exponent:steps=block-forward", 3, 8),
    ("uncoded", 2, (0, 0), 3, "noise:0.05:scale=1e-3", 2, 8),
    ("codenet", 2, (2, 2), 3, "none", 2, 8),
]
#: Steps an epoch of :func:`small_data` at batch 16.
STEPS_PER_EPOCH = 16


def small_data(seed: int = 0) -> Dataset:
    """4 classes of 12-feature Gaussian blobs: 256 training samples, 16 steps an epoch at batch 16."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, 12)) * 2
    labels = rng.integers(0, 4, 320)
    x = (centres[labels] + rng.standard_normal((320, 12))).T
    return Dataset(x[:, :256], labels[:256], x[:, 256:], labels[256:], classes=4, name="blobs")


def config_of(run_spec: tuple, epochs: int | None = None) -> TrainConfig:
    """The training configuration of one entry of :data:`RUNS` (``epochs``: at most that many)."""
    strategy, grid, parity, replicas, faults, workers, full = run_spec
    return TrainConfig(
        strategy=strategy,
        hidden=(8,),
        grid=grid,
        parity=parity,
        replicas=replicas,
        epochs=full if epochs is None else min(epochs, full),
        batch_size=16,
        lr=0.1,
        faults=faults,
        seed=workers * 7 + full,
        checkpoint_every=7,
        scrub_every=3,
    )


def run(target, data: Dataset, config: TrainConfig, store) -> dict:
    """One training run and everything the two executors must agree on."""
    trainer = Trainer(target, data, config, store)
    try:
        summary = trainer.run()
    except UncorrectableError as exc:  # a run that gives up must give up the same way
        trainer.ledger.add_injected(trainer.executor.collect_faults(trainer.run_id))
        return {
            "gave up": str(exc),
            "outcomes": sorted((repr(f.site), f.attempt, o) for f, o in trainer.ledger.outcomes()),
        }
    finally:
        trainer.close()
    weights = [layer.gather_blocks() for layer in trainer.layers]
    return {
        "loss": summary.final_loss,
        "accuracy": summary.accuracy_by_epoch,
        "faults": summary.faults,
        "weights": [{label: block.values for label, block in layer.items()} for layer in weights],
        "reports": {key: report.as_dict() for key, report in trainer.ledger.products.items()},
        "outcomes": sorted((repr(f.site), f.attempt, outcome) for f, outcome in trainer.ledger.outcomes()),
        "iterations": summary.iterations,
    }


def differences(a: dict, b: dict) -> list[str]:
    """What two runs' results disagree on (empty: bit for bit the same)."""
    found = [key for key in ("gave up", "outcomes") if a.get(key) != b.get(key)]
    if "gave up" in a or found:
        return found
    found += [key for key in ("reports", "faults", "accuracy", "iterations") if a[key] != b[key]]
    if not (a["loss"] == b["loss"] or (np.isnan(a["loss"]) and np.isnan(b["loss"]))):
        found.append("loss")
    for i, (layer_a, layer_b) in enumerate(zip(a["weights"], b["weights"], strict=True)):
        if set(layer_a) != set(layer_b) or any(not np.array_equal(layer_a[k], layer_b[k]) for k in layer_a):
            found.append(f"weights of layer {i}")
    return found


def compare(run_spec: tuple, client: Client, epochs: int | None = None) -> tuple[list[str], dict]:
    """One entry of :data:`RUNS` on ``client`` and on the reference executor: their differences,
    and the Dask run's results."""
    config, workers = config_of(run_spec, epochs), run_spec[5]
    with tempfile.TemporaryDirectory() as folder:
        on_dask = run(DaskExecutor(client), small_data(), config, Path(folder) / "dask")
        reference = run(LocalExecutor(workers), small_data(), config, Path(folder) / "local")
    return differences(on_dask, reference), on_dask


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=None, help="at most this many epochs a run (default: all)")
    args = p.parse_args(argv)
    clients: dict[int, Client] = {}
    failed = False
    try:
        for spec in RUNS:
            workers = spec[5]
            if workers not in clients:
                clients[workers] = Client(local_cluster(workers, dashboard_address=None))
            start = time.perf_counter()
            diff, result = compare(spec, clients[workers], args.epochs)
            failed |= bool(diff)
            steps = result.get("iterations", "gave up")
            verdict = "identical" if not diff else "DIFFERENT: " + ", ".join(diff)
            print(
                f"{spec[0]:<12} {spec[4][:60]:<60} {workers} workers {steps} steps: {verdict} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    finally:
        for client in clients.values():
            cluster = client.cluster
            client.close()
            cluster.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

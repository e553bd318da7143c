"""The in-process reference executor and the Dask executor run the same protocol bit for bit.

Seeded training runs over code shapes, strategies, fault specs and worker counts are run twice:
on a real LocalCluster (worker processes, BLAS on one thread) and on ``LocalExecutor`` (no Dask).
Outputs (final weights, losses, accuracies), every product's report and the fault ledger must be
identical, not just close: the reference executor is what the Monte Carlo runs use in place of the
cluster, so any difference would mean the Monte Carlo tests a different protocol.
"""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client

from codenet_dask import local_cluster
from codenet_dask.data import Dataset
from codenet_dask.errors import UncorrectableError
from codenet_dask.executors import DaskExecutor, LocalExecutor
from codenet_dask.protocol.plans import Plan
from codenet_dask.training import TrainConfig, Trainer

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


def small_data(seed: int = 0) -> Dataset:
    """4 classes of 12-feature Gaussian blobs: 256 training samples, 16 steps an epoch at batch 16."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, 12)) * 2
    labels = rng.integers(0, 4, 320)
    x = (centres[labels] + rng.standard_normal((320, 12))).T
    return Dataset(x[:, :256], labels[:256], x[:, 256:], labels[256:], classes=4, name="blobs")


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


def assert_identical(a: dict, b: dict) -> None:
    assert a.get("gave up") == b.get("gave up")
    assert a["outcomes"] == b["outcomes"]
    if "gave up" in a:
        return
    assert a["reports"] == b["reports"]
    assert a["outcomes"] == b["outcomes"]
    assert a["faults"] == b["faults"]
    assert a["accuracy"] == b["accuracy"]
    assert a["loss"] == b["loss"] or (np.isnan(a["loss"]) and np.isnan(b["loss"]))
    for layer_a, layer_b in zip(a["weights"], b["weights"], strict=True):
        assert set(layer_a) == set(layer_b)
        for label in layer_a:
            assert np.array_equal(layer_a[label], layer_b[label]), label


@pytest.fixture(scope="module")
def clusters():
    """One process-based LocalCluster per worker count (BLAS on one thread in every worker)."""
    made: dict[int, Client] = {}
    try:
        yield (lambda n: made.get(n) or made.setdefault(n, Client(local_cluster(n, dashboard_address=None))))
    finally:
        for client in made.values():
            cluster = client.cluster
            client.close()
            cluster.close()


@pytest.mark.slow
@pytest.mark.parametrize("strategy,grid,parity,replicas,faults,workers,epochs", RUNS)
def test_reference_and_dask_executors_agree_bit_for_bit(
    clusters, tmp_path, strategy, grid, parity, replicas, faults, workers, epochs
):
    data = small_data()
    config = TrainConfig(
        strategy=strategy,
        hidden=(8,),
        grid=grid,
        parity=parity,
        replicas=replicas,
        epochs=epochs,
        batch_size=16,
        lr=0.1,
        faults=faults,
        seed=workers * 7 + epochs,
        checkpoint_every=7,
        scrub_every=3,
    )
    on_dask = run(DaskExecutor(clusters(workers)), data, config, tmp_path / "dask")
    reference = run(LocalExecutor(workers), data, config, tmp_path / "local")
    assert_identical(on_dask, reference)
    assert on_dask.get("iterations") == 16 * epochs, on_dask.get("gave up")


def test_the_runs_cover_a_thousand_steps():
    assert sum(16 * epochs for *_, epochs in RUNS) >= 1000


def test_a_reused_key_is_refused_by_the_reference():
    """Dask silently reuses a key's first value (that made a scrub wait on itself); the reference refuses."""
    executor = LocalExecutor(1)
    plan = Plan()
    plan.add("once", int, "1")
    executor.run(plan, [])
    with pytest.raises(ValueError, match="never be reused"):
        executor.run(plan, [])
    with pytest.raises(ValueError, match="planned twice"):
        plan.add("once", int, "2")

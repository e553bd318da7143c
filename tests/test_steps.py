"""A training step as one graph: every operation submitted at once, accepted inside the graph, settled in order.

A product's verdicts gate what follows it: an update runs only when every product before it was
accepted on every worker, so the grid stays one codeword; a product that was not accepted is
settled (second round, recomputation) and the rest of the step is submitted again. Judged
against numpy and against a fault-free run of the same seed, never against the checks' own verdicts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from codenet_dask import CodedLayer, LocalExecutor, TrainConfig, Trainer
from codenet_dask.data import Dataset
from codenet_dask.executors import DaskExecutor
from codenet_dask.faults import Corruption, CorruptionPlan
from codenet_dask.steps import step_order

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflows"))
import executors_agree


def blobs() -> Dataset:
    """4 classes of 12-feature Gaussian blobs, 16 steps an epoch at batch 16."""
    return executors_agree.small_data()


def config(**kwargs) -> TrainConfig:
    base = {"hidden": (8, 6), "grid": 2, "parity": (2, 2), "epochs": 1, "batch_size": 16, "lr": 0.1, "seed": 3}
    return TrainConfig(**{**base, **kwargs})


def test_the_step_order_is_forward_then_backward_and_update_from_the_top():
    assert step_order(3) == [
        ("forward", 0),
        ("forward", 1),
        ("forward", 2),
        ("backward", 2),
        ("update", 2),
        ("backward", 1),
        ("update", 1),
        ("update", 0),
    ]


def test_an_update_gated_on_a_product_not_accepted_leaves_the_blocks_a_codeword(tmp_path):
    """The update reads the verdicts of the forward product before it: one worker's verify refused
    that product, so no worker updates; settled (recomputed), the update then runs exactly once."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((96, 80))
    x, delta = rng.standard_normal((80, 16)), rng.standard_normal((96, 16))
    refuse = CorruptionPlan((Corruption("verify", block=(1,), op=1, kind="add", relative=1.0),))
    layer = CodedLayer.encode(LocalExecutor(2), w, grid=(2, 2), parity=(2, 2), hook=refuse)
    before = layer.gather_weights()

    submitted = layer.submit("forward", x)
    layer.update(delta, x, 0.1, after=[submitted])
    np.testing.assert_array_equal(layer.gather_weights(), before)  # skipped on every worker
    assert layer.scrub()["entries"] == 0  # still one codeword: nothing flagged

    result = layer.settle(submitted)
    assert result.report.accepted_attempt == 1 and result.report.recomputed == 1
    np.testing.assert_allclose(result.to_numpy(), w @ x, rtol=0, atol=1e-12 * np.abs(w @ x).max())
    layer.update(delta, x, 0.1, after=[submitted])  # settled: the gate now holds its accepted verdicts
    layer.update(delta, x, 0.1)
    want = w - 2 * 0.1 * delta @ x.T
    np.testing.assert_allclose(layer.gather_weights(), want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_a_pending_product_is_settled_through_its_second_round():
    """A wrong block result flags entries: the first round is pending, the update after it is
    skipped; settling runs the second round and corrects the block."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 64))
    x, delta = rng.standard_normal((64, 8)), rng.standard_normal((64, 8))
    wrong = CorruptionPlan((Corruption("block-forward", block=(0, 1), op=1, kind="add", relative=1e-3),))
    layer = CodedLayer.encode(LocalExecutor(3), w, grid=(2, 2), parity=(2, 2), hook=wrong)
    before = layer.gather_weights()
    submitted = layer.submit("forward", x)
    layer.update(delta, x, 0.1, after=[submitted])
    np.testing.assert_array_equal(layer.gather_weights(), before)
    result = layer.settle(submitted)
    assert result.report.accepted_attempt == 0 and (0, 1) in result.report.corrected
    np.testing.assert_allclose(result.to_numpy(), w @ x, rtol=0, atol=1e-12 * np.abs(w @ x).max())


def test_settling_a_product_whose_operand_was_not_accepted_is_refused():
    """A product fed by one not yet settled skips its work; settling it first is a usage error."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((32, 32))
    refuse = CorruptionPlan((Corruption("verify", block=(0,), op=1, kind="nan"),))
    layer = CodedLayer.encode(LocalExecutor(2), w, grid=(2, 2), parity=(2, 2), hook=refuse)
    first = layer.submit("forward", rng.standard_normal((32, 4)))
    second = layer.submit("backward", first.result)
    with pytest.raises(ValueError, match="settle the product it comes from first"):
        layer.settle(second)
    layer.settle(first)


def test_a_clean_step_is_one_graph():
    trainer = Trainer(LocalExecutor(2), blobs(), config(faults="none"))
    summary = trainer.run()
    assert summary.status == "completed"
    assert trainer.graphs == summary.iterations == 16
    assert not trainer.ledger.discarded


def test_steps_whose_products_are_refused_end_like_a_fault_free_run_bit_for_bit():
    """Verify faults only refuse products (the recomputation is exact), so the run must end with
    the fault-free run's weights bit for bit, though products after each refused one were
    discarded and submitted again (and a product refused three times rolled back); every fault is
    in the ledger as recomputed or rolled back."""
    clean = Trainer(LocalExecutor(3), blobs(), config(faults="none"))
    clean.run()
    faulty = Trainer(LocalExecutor(3), blobs(), config(faults="bitflip:0.05:steps=verify:field=exponent"))
    summary = faulty.run()
    faults = summary.faults
    assert summary.status == "completed"
    assert faulty.graphs > summary.iterations  # some steps were submitted again after a refusal
    assert faults["injected"] > 0 and faults["recomputed"] > 0
    assert faults["recomputed"] + faults["rolled_back"] == faults["injected"]  # never accepted
    for a, b in zip(clean.layers, faulty.layers, strict=True):
        np.testing.assert_array_equal(a.gather_weights(), b.gather_weights())


def test_faults_in_discarded_products_are_recomputed_never_accepted():
    """A verify fault on one worker refuses a product there while the other workers accept it and
    go on: their next product (with its own faults) is discarded, its faults count as recomputed,
    and the judge finds nothing accepted wrong."""
    faults = "bitflip:0.15:steps=verify:workers=1,bitflip:0.2:steps=block-forward+block-backward"
    trainer = Trainer(LocalExecutor(2), blobs(), config(faults=faults, seed=8))
    summary = trainer.run()
    assert summary.status == "completed"
    assert summary.faults["undetected"] == 0
    assert trainer.ledger.discarded
    in_discarded = [
        outcome
        for fault, outcome in trainer.ledger.outcomes()
        if (fault.site.layer, fault.site.op) in trainer.ledger.discarded
    ]
    assert in_discarded and set(in_discarded) == {"recomputed"}


@pytest.mark.slow
def test_a_step_on_dask_costs_two_client_round_trips(client):
    """The x upload and the step's one gather; the same run in process gives the same weights."""
    executor = DaskExecutor(client)
    trainer = Trainer(executor, blobs(), config(faults="none", epochs=1))
    trainer.build()
    before = executor.round_trips
    data = trainer.data.epoch_batches(16, seed=3, epoch=0)
    for x, y in data[:4]:
        trainer.step(x.astype(np.float64), y, 0.1)
    assert (executor.round_trips - before) / 4 <= 2

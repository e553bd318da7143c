"""Worker-side fault injection, the three strategies on the same cluster, and the ground-truth ledger."""

from __future__ import annotations

import numpy as np
import pytest

from codenet_dask import CodedLayer, LocalExecutor
from codenet_dask.errors import CodeParameterError
from codenet_dask.faults import STEPS, Corruption, CorruptionPlan, RandomFaults, collect_injected
from codenet_dask.layer import Activated
from codenet_dask.ledger import OUTCOMES, FaultLedger
from codenet_dask.nn import Relu
from codenet_dask.strategies import ReplicatedLayer, build_layer

PRODUCT_FAULTS = "bitflip:0.08:steps=block-forward+block-backward,nan:0.02:steps=block-forward+block-backward"


def train(client, strategy: str, spec: str, seed: int, name: str, steps: int = 4, scrub: bool = False, **kw):
    """A few training steps of one layer; returns (ledger summary, ledger, max deviation from numpy)."""
    rng = np.random.default_rng(100)
    w = rng.standard_normal((96, 64))
    collect_injected(client)  # start from an empty log
    layer = build_layer(
        strategy, client, w, grid=(4, 2), hook=RandomFaults.from_string(spec, seed=seed), name=name, **kw
    )
    ledger, reference, worst = FaultLedger(), w.copy(), 0.0
    if layer.encode_report is not None:
        ledger.add_scrub(layer.name, 0, layer.encode_report)
    for _ in range(steps):
        x, delta = rng.standard_normal((64, 8)), rng.standard_normal((96, 8)) / 8
        forward, backward = layer.forward(x), layer.backward(delta)
        layer.update(delta, x, 0.05)
        worst = max(worst, _rel(forward.to_numpy(), reference @ x), _rel(backward.to_numpy(), reference.T @ delta))
        reference -= 0.05 * delta @ x.T
        ledger.add_product(forward.report)
        ledger.add_product(backward.report)
        if scrub:
            report = layer.scrub()
            ledger.add_scrub(layer.name, layer.ops, report)
    worst = max(worst, _rel(layer.gather_weights(), reference))
    ledger.add_injected(collect_injected(client))
    return ledger.summary(), ledger, worst


def _rel(got, want) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def test_same_seed_hits_the_same_tasks_on_every_run(client):
    runs = [train(client, "codenet", PRODUCT_FAULTS, seed=5, name="again", steps=2)[1] for _ in range(2)]
    sites = [
        [(f.site.step, f.site.op, f.site.block, f.attempt, type(f.model).__name__) for f in r.injected] for r in runs
    ]
    assert sites[0] and sites[0] == sites[1]
    other = train(client, "codenet", PRODUCT_FAULTS, seed=6, name="other", steps=2)[1]
    assert [(f.site.op, f.site.block) for f in other.injected] != [(op, b) for _, op, b, _, _ in sites[0]]


def test_uncoded_training_lets_bit_flips_through(client):
    summary, _, worst = train(
        client, "uncoded", "bitflip:0.1:field=exponent:steps=block-forward+block-backward", seed=1, name="unc"
    )
    assert summary["undetected"] > 0
    assert worst > 1e-3  # and it shows in the results


@pytest.mark.parametrize("strategy,kw", [("codenet", {"parity": (2, 2)}), ("replication", {"replicas": 3})])
def test_codenet_and_replication3_leave_nothing_undetected(client, strategy, kw):
    summary, _, worst = train(client, strategy, PRODUCT_FAULTS, seed=2, name=f"ok{strategy}", **kw)
    assert summary["injected"] >= 10
    assert summary["undetected"] == 0
    assert summary["corrected"] > 0
    assert sum(summary[k] for k in OUTCOMES) == summary["injected"]
    assert worst < 1e-10


def test_replication2_detects_and_recomputes(client):
    # r=2 cannot place an error it only detects: it recomputes (the rate is low enough that 3
    # attempts suffice, fixed seed). Mantissa flips are not provably wrong on their own.
    summary, ledger, worst = train(
        client,
        "replication",
        "bitflip:0.03:field=mantissa:steps=block-forward+block-backward",
        seed=3,
        name="rep2",
        replicas=2,
    )
    assert summary["undetected"] == 0 and summary["recomputed"] > 0 and summary["corrected"] == 0
    assert sum(r.recomputed for r in ledger.products.values()) > 0
    assert worst < 1e-10


@pytest.mark.parametrize("step", [s for s in STEPS if s != "activation"])  # no activations here: test_train
def test_faults_in_every_step_kind_are_injected_and_handled(client, step):
    rate = {"encode": 0.05, "update": 0.05, "project": 0.04, "scrub": 0.1}.get(step, 0.1)
    summary, ledger, worst = train(
        client,
        "codenet",
        f"bitflip:{rate}:field=exponent:steps={step}",
        seed=11,
        name=f"every{step}",
        parity=(2, 2),
        scrub=True,
    )
    assert summary["injected"] > 0, step
    assert {f.site.step for f in ledger.injected} == {step}
    assert summary["undetected"] == 0, ledger.outcomes()
    assert worst < 1e-10
    if step in ("encode", "update"):  # a persistent weight fault: corrected at each use, then rebuilt
        assert any(ledger.repairs.values())


def test_no_detection_on_clean_steps(client):
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(9)
        layer = CodedLayer.encode(
            client,
            rng.standard_normal((64, 48)).astype(dtype),
            grid=(2, 2),
            parity=(2, 2),
            name=f"clean{np.dtype(dtype).name}",
        )
        for _ in range(10):
            x, delta = rng.standard_normal((48, 5)).astype(dtype), rng.standard_normal((64, 5)).astype(dtype)
            assert layer.forward(x).report.detected == []
            assert layer.backward(delta).report.detected == []
            layer.update(delta, x, 0.1)
        assert layer.scrub()["located"] == []


def test_strategy_errors_name_the_fix(client):
    w = np.ones((8, 8))
    with pytest.raises(CodeParameterError, match="unknown strategy 'triple'"):
        build_layer("triple", client, w, grid=(2, 2))  # type: ignore[arg-type]
    with pytest.raises(CodeParameterError, match="at least 2 replicas"):
        ReplicatedLayer.encode(client, w, grid=(2, 2), replicas=1)


@pytest.mark.parametrize("pattern", range(6))
def test_replication3_outvotes_one_wrong_replica_per_block_without_recomputing(client, pattern):
    """Any one replica wrong in any set of blocks, in forward and backprop: a majority of 3 outvotes
    it in the first attempt (no recomputation), and the result equals numpy's."""
    rng = np.random.default_rng(pattern)
    w = rng.standard_normal((64, 48))
    grid = (4, 2)
    blocks = [(a, b) for a in range(grid[0]) for b in range(grid[1])]
    hit = [blocks[i] for i in rng.choice(len(blocks), size=int(rng.integers(1, len(blocks) + 1)), replace=False)]
    plan = CorruptionPlan(
        tuple(
            Corruption(
                step,
                block=(a, b, int(rng.integers(3))),
                op=op,
                kind=str(rng.choice(["nan", "bitflip", "add"])),
                bit=62,
                relative=1e-3,
            )
            for step, op in (("block-forward", 1), ("block-backward", 2))
            for a, b in hit
        )
    )
    layer = build_layer("replication", client, w, grid=grid, replicas=3, hook=plan, name=f"vote{pattern}")
    x, delta = rng.standard_normal((48, 6)), rng.standard_normal((64, 6))
    forward, backward = layer.forward(x), layer.backward(delta)
    for result, want in ((forward, w @ x), (backward, w.T @ delta)):
        assert result.report.recomputed == 0 and result.report.accepted_attempt == 0, result.report.as_dict()
        assert sorted(result.report.corrected) == sorted(
            c.block for c in plan.corruptions if c.step == f"block-{result.report.operation}"
        )
        np.testing.assert_allclose(result.to_numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_faulty_second_round_read_beside_a_wrong_replica_never_outvotes_the_right_one(dtype):
    """Replica 0 of block (0, 0) computes a wrong entry, and the second round's read of replica 1
    (the values its worker sends to every decoder) is zeroed: a faulty read beside a wrong copy
    (the soak's seed 53: a zeroed replica and a zeroed read "agreed" on 0 and outvoted the right
    one; an all-zero result is now a known erasure, ``noise.dead``). The read no longer matches the
    syndrome share the worker sent in the first round, so it counts as erased: the product is
    recomputed or corrected, never accepted wrong."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 12)).astype(dtype)
    x = rng.standard_normal((12, 4)).astype(dtype)
    probe = build_layer("replication", LocalExecutor(3), w, grid=(2, 2), replicas=3, name="read")
    holder = probe.workers.index(probe.placement[(0, 0, 1)])
    plan = CorruptionPlan(
        (
            Corruption("block-forward", block=(0, 0, 0), kind="add", relative=0.5),
            Corruption("project", block=(holder, 1, 0, 0, 1), kind="zero"),
        )
    )
    layer = build_layer("replication", LocalExecutor(3), w, grid=(2, 2), replicas=3, hook=plan, name="read")
    result = layer.forward(x)
    exact = w.astype(np.float64) @ x.astype(np.float64)
    np.testing.assert_allclose(result.to_numpy(), exact, rtol=0, atol=1e3 * np.finfo(dtype).eps * np.abs(exact).max())
    assert (0, 0, 1) in result.report.detected or result.report.recomputed, result.report.as_dict()


def test_replication3_scrubs_a_wrong_stored_replica_between_attempts(client):
    """A faulty update leaves replica 1 of block (0, 0) wrong for good; a product fault then hits
    replica 2 of the same block: no majority. The recomputation first scrubs the stored replicas
    (majority of the three), so the second attempt is accepted; no rollback is needed."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 24))
    plan = CorruptionPlan(
        (
            Corruption("update", block=(0, 0, 1), op=3, kind="add", relative=1e-2),
            Corruption("block-forward", block=(0, 0, 2), op=4, kind="add", relative=1e-2),
        )
    )
    layer = build_layer("replication", client, w, grid=(2, 2), replicas=3, hook=plan, name="scrubvote")
    x, delta = rng.standard_normal((24, 4)), rng.standard_normal((32, 4))
    layer.forward(x), layer.backward(delta)
    layer.update(delta, x, 0.1)
    w_now = w - 0.1 * delta @ x.T
    result = layer.forward(x)
    assert result.report.accepted_attempt == 1 and result.report.recomputed == 1, result.report.as_dict()
    assert result.report.repaired == [(0, 0, 1)]
    np.testing.assert_allclose(result.to_numpy(), w_now @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.gather_weights(), w_now, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("replica", [0, 1, 2])
def test_replication3_encodes_each_replica_from_the_weights(client, replica):
    """A faulty encode spoils one replica only (replicas are not copies of replica 0): the encode's
    scrub outvotes it, and the weights a checkpoint would store are the user's, bit for bit."""
    rng = np.random.default_rng(replica)
    w = rng.standard_normal((32, 24))
    block = (1, 0) if replica == 0 else (1, 0, replica)  # replica 0 is the systematic block itself
    plan = CorruptionPlan((Corruption("encode", block=block, op=0, kind="add", relative=1e-2),))
    layer = build_layer("replication", client, w, grid=(2, 2), replicas=3, hook=plan, name=f"enc{replica}")
    x = rng.standard_normal((24, 5))
    assert layer.encode_report["repaired"] == [[1, 0, replica]]  # the encode's own scrub repaired it
    forward = layer.forward(x)
    assert forward.report.detected == [] and forward.report.recomputed == 0
    np.testing.assert_allclose(forward.to_numpy(), w @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.gather_weights(), w)


@pytest.mark.parametrize("seed", range(8))
def test_replication3_majority_is_never_silently_wrong_after_faulty_update_factors(client, seed):
    """With 3 replicas on 2 workers, two replicas of a block share a worker. Their update factors
    (here ReLU of a product, computed where the blocks are) must not share a fault site, or one
    fault would make an identical wrong pair that outvotes the right replica. After updates with
    faulty activations, the stored majority is the true weights, or there is no majority (a
    detected failure: roll back); never a wrong majority."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((24, 24))
    hook = RandomFaults.from_string("bitflip:0.3:field=exponent:steps=activation", seed=seed)
    layer = build_layer("replication", client, w, grid=(2, 2), replicas=3, hook=hook, name=f"pair{seed}")
    x, delta = rng.standard_normal((24, 5)), rng.standard_normal((24, 5))
    pre = layer.forward(x)  # numpy input: no activation here, so the product is clean
    layer.update(delta, Activated((pre,), Relu()), 0.1)
    truth = w - 0.1 * delta @ np.maximum(w @ x, 0).T
    if not layer.scrub()["ok"]:
        return  # no majority somewhere: detected (a checkpoint would roll back instead)
    np.testing.assert_allclose(layer.gather_weights(), truth, rtol=1e-12, atol=1e-12)


class LastBitsDisagree:
    """Every block result off by a few units in the last place, differently per replica and step:
    what different BLAS kernels (or one on different hardware) return for the same product."""

    def apply(self, site, values, attempt):
        if not site.step.startswith("block-"):
            return values
        rng = np.random.default_rng(abs(hash((site.layer, site.op, site.block, attempt))) % 2**32)
        return (values + rng.integers(-4, 5, values.shape) * np.spacing(values)).astype(values.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_replicas_that_differ_in_the_last_bits_agree(dtype):
    """Replication votes with a tolerance: replicas a few ulps apart are one result, not three (a
    bitwise vote would find no majority and recompute, then roll back, forever)."""
    from codenet_dask import LocalExecutor
    from codenet_dask.judge import FACTOR, error_ratio, higher

    rng = np.random.default_rng(5)
    w = rng.standard_normal((96, 64)).astype(dtype)
    layer = build_layer(
        "replication",
        LocalExecutor(3),
        w,
        grid=(2, 2),
        replicas=3,
        hook=LastBitsDisagree(),
        name=f"ulps{dtype.__name__}",
    )
    high = higher(np.dtype(dtype))
    for _ in range(10):
        x, delta = rng.standard_normal((64, 8)).astype(dtype), rng.standard_normal((96, 8)).astype(dtype)
        for result, exact, clean in (
            (layer.forward(x), w.astype(high) @ x.astype(high), w @ x),
            (layer.backward(delta), w.T.astype(high) @ delta.astype(high), w.T @ delta),
        ):
            assert result.report.recomputed == 0 and result.report.detected == []
            assert error_ratio(result.to_numpy(), exact, clean) <= FACTOR

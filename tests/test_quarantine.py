"""Workers as failure domains: placement, blame, quarantine and evacuation of a bad worker."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from clirun import run_cli

from codenet_dask.data import load_dataset
from codenet_dask.errors import ConfigValueError
from codenet_dask.executors import LocalExecutor
from codenet_dask.layer import CodedLayer
from codenet_dask.protocol.blame import Blame
from codenet_dask.protocol.placement import most_per_codeword, spread_owners
from codenet_dask.runstate import RunState
from codenet_dask.training import TrainConfig, Trainer

ALWAYS_WRONG = "bitflip:1.0:field=exponent:workers=1"


# -- placement ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 4), (3, 3), (6, 6), (4, 6), (2, 4), (5, 3)])
def test_every_codeword_is_spread_over_as_many_workers_as_there_are(shape):
    nr, nc = shape
    for p in range(1, 40):
        owners = spread_owners([str(w) for w in range(p)], shape)
        rows = [[owners[(a, b)] for b in range(nc)] for a in range(nr)]
        cols = [[owners[(a, b)] for a in range(nr)] for b in range(nc)]
        for word in rows + cols:  # the fewest blocks of one codeword on one worker any placement can give
            assert max(word.count(w) for w in set(word)) == math.ceil(len(word) / p), (p, word)
        assert most_per_codeword(owners, shape) == max(math.ceil(nr / p), math.ceil(nc / p))
        used = set(owners.values())
        assert len(used) == min(p, nr * nc)  # no worker idles while another could take a block


# -- blame ----------------------------------------------------------------------------------------
def test_a_worker_wrong_every_time_is_blamed_after_five_results_a_healthy_one_never():
    blame = Blame(healthy=0.05, bad=0.9, false_blame=1e-6)
    reached = [blame.observe({"0": 1, "1": 1}, {"1": 1}) for _ in range(6)]
    assert reached == [[], [], [], [], ["1"], []]  # once, when its score crosses log(1e6)
    assert blame.evidence["1"].wrong == 6 and blame.evidence["0"].score == 0.0


def test_false_blame_of_healthy_workers_stays_within_its_bound():
    """Monte Carlo at the assumed healthy rate: 400 workers x 5000 results (~100k wrong results);
    the bound allows at most 1e-6 per wrong result (expected count 0.1), so no worker is blamed."""
    rng = np.random.default_rng(7)
    blame = Blame(healthy=0.05, bad=0.9, false_blame=1e-6)
    wrong = rng.random((5000, 400)) < 0.05
    blamed = set()
    for row in wrong:
        checked = {str(w): 1 for w in range(400)}
        blamed.update(blame.observe(checked, {str(w): 1 for w in np.flatnonzero(row)}))
    assert wrong.sum() > 90_000 and not blamed
    # ... while one worker at 30% among peers at 5% is found: the test has teeth.
    hot = Blame(healthy=0.05, bad=0.9, false_blame=1e-6)
    found = [
        hot.observe({"hot": 1, "peer": 4}, {"hot": int(rng.random() < 0.3), "peer": int(rng.binomial(4, 0.05))})
        for _ in range(20_000)
    ]
    assert ["hot"] in found and not any("peer" in f for f in found)


def test_faults_that_hit_every_worker_alike_blame_nobody():
    """Injected faults at 15% on every worker (far above the 5% assumption): the peers' observed
    rate is each one's healthy rate, so no worker is singled out; a bad one among them still is."""
    rng = np.random.default_rng(3)
    blame = Blame(healthy=0.05, bad=0.9, false_blame=1e-6)
    blamed = set()
    for _ in range(20_000):
        counts = {str(w): int(rng.binomial(8, 0.15)) for w in range(2)}
        blamed.update(blame.observe({"0": 8, "1": 8}, counts))
    assert not blamed
    reached = [blame.observe({"0": 8, "1": 8}, {"0": int(rng.binomial(8, 0.15)), "1": 8}) for _ in range(2)]
    assert reached[0] == ["1"]


def test_quarantine_settings_are_checked():
    with pytest.raises(ConfigValueError, match="healthy-rate < bad-rate"):
        Blame(healthy=0.5, bad=0.2)
    with pytest.raises(ConfigValueError, match="false-blame"):
        Blame(false_blame=0)


@pytest.mark.parametrize(
    "variable,value,message",
    [
        ("DASK_CODENET__QUARANTINE__BAD_RATE", "2", "healthy-rate < bad-rate < 1, got 0.05 and 2.0"),
        ("DASK_CODENET__QUARANTINE__HEALTHY_RATE", "often", "codenet.quarantine.healthy-rate must be a number"),
    ],
)
def test_bad_quarantine_settings_are_a_usage_error_of_train(tmp_path, variable, value, message):
    """Exit 2 with the setting named, no traceback, and no store written."""
    train = ["train", "--dataset", "digits", "--layers", "16", "--epochs", "1", "--workers", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "codenet_dask", *train, "--store", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, variable: value},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


# -- evacuation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("workers", [2, 9, 16])
def test_a_retired_workers_blocks_are_rebuilt_from_the_code_on_the_others(workers, dtype):
    rng = np.random.default_rng(workers)
    w = rng.standard_normal((20, 14)).astype(dtype)
    x = rng.standard_normal((14, 6)).astype(dtype)
    executor = LocalExecutor(workers)
    layer = CodedLayer.encode(executor, w, (2, 2), (2, 2))
    lost = {label for label, owner in layer.placement.items() if owner == "1"}
    executor.retire("1")
    erased = layer.evacuate({"1"})
    assert set(erased) == lost and "1" not in layer.placement.values()
    report = layer.scrub()
    assert sorted(map(tuple, report["repaired"])) == sorted(lost) and not report["unrepairable"]
    # Rebuilt from exactly as many blocks as the code needs (2 workers: two erasures in each codeword
    # of four), noise-level entries may be realigned once; the verifying passes then find nothing.
    passes = [layer.scrub(align=False) for _ in range(2)]
    assert not any(p["unrepairable"] for p in passes) and passes[-1]["entries"] == 0
    exact = w.astype(np.longdouble) @ x.astype(np.longdouble)
    u = np.finfo(dtype).eps
    scale = np.abs(w).astype(np.longdouble) @ np.abs(x).astype(np.longdouble)
    assert np.all(np.abs(layer.forward(x).to_numpy() - exact) <= 64 * u * scale)  # the roundoff of W @ x
    assert np.all(np.abs(layer.gather_weights() - w) <= 64 * u * np.abs(w).max())


# -- training with one bad worker -----------------------------------------------------------------
def _train(workers: int, faults: str, **kwargs) -> Trainer:
    data = load_dataset("digits", seed=0)
    settings = {"hidden": (16,), "epochs": 2, "batch_size": 128, "lr": 0.5, "seed": 0, **kwargs}
    config = TrainConfig(faults=faults, **settings)
    trainer = Trainer(LocalExecutor(workers), data, config)
    trainer.summary_ = trainer.run()
    return trainer


@pytest.fixture(scope="module")
def fault_free() -> dict:
    return _train(2, "none").summary_.to_json()


@pytest.mark.parametrize("workers", [2, 16])
@pytest.mark.parametrize("steps", ["", ":steps=block-forward"])
def test_an_always_wrong_worker_is_quarantined_and_the_run_ends_as_a_fault_free_one(workers, steps, fault_free):
    trainer = _train(workers, ALWAYS_WRONG + steps)
    done = trainer.summary_.to_json()
    assert done["status"] == "completed" and done["faults"]["undetected"] == 0
    assert done["faults"]["injected"] > 0
    assert abs(done["test_accuracy"] - fault_free["test_accuracy"]) <= 0.005
    if workers == 16:
        assert done["faults"]["rollbacks"] == 0
    if steps and workers == 16:
        # Wrong only in its products, one block of each codeword: every check corrects it, and a
        # block seen wrong again counts once until a scrub (it might be one stored fault): no blame.
        assert done["quarantined"] == [] and done["faults"]["corrected"] == done["faults"]["injected"]
        return
    # Its first fault: the encoding (step 0) when every kind of task is hit, else step 1's forward.
    first = 1 if steps else 0
    [quarantined] = done["quarantined"]
    assert quarantined["worker"] == "1" and quarantined["wrong"] >= 5
    assert quarantined["step"] <= first + 3
    assert "1" not in trainer.executor.workers() and done["workers"] == workers - 1


def test_a_stored_fault_seen_by_every_product_is_not_a_bad_worker():
    """A faulty update leaves a wrong block until a scrub: every product finds it again. Faults at
    3% in every kind of task (NaN, many of them in updates) on 2 workers: nobody is quarantined."""
    done = _train(2, "nan:0.03", hidden=(32,)).summary_.to_json()
    assert done["faults"]["injected"] > 100 and done["faults"]["undetected"] == 0
    assert done["quarantined"] == []


def test_a_run_with_independent_faults_quarantines_nobody():
    done = _train(2, TrainConfig.faults).summary_.to_json()
    assert done["faults"]["injected"] > 10 and done["quarantined"] == []


def test_quarantines_are_kept_with_the_runs_state():
    state = RunState({}, {}, [4, 2], 1, 0, {}, quarantined=[{"worker": "1", "step": 0, "wrong": 5, "checked": 5}])
    assert RunState.from_record(json.loads(json.dumps(state.to_record()))).quarantined == state.quarantined
    old = state.to_record()
    del old["quarantined"]  # a record written before quarantines existed
    assert RunState.from_record(old).quarantined == []


def test_train_names_the_quarantined_worker_on_a_real_cluster():
    done = run_cli(
        "train",
        *("--dataset", "digits", "--layers", "16", "--epochs", "1", "--batch-size", "128", "--lr", "0.5"),
        *("--workers", "2", "--faults", ALWAYS_WRONG, "--json"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [q["worker"] for q in summary["quarantined"]] == ["1"]
    assert summary["faults"]["undetected"] == 0 and summary["workers"] == 1
    assert "quarantined worker 1 at step 0" in done.stderr

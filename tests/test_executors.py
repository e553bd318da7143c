"""The in-process reference executor and the Dask executor run the same protocol bit for bit.

Every seeded run of ``workflows/executors_agree.py`` (each strategy, code shape, fault spec and
worker count there) runs on a real LocalCluster and on ``LocalExecutor``, at most ``EPOCHS`` epochs
each here (~400 steps in all, with second rounds, recomputations, scrubs, checkpoints and a
quarantine among them); the workflow runs them at full length (>= 1,000 steps). Outputs, every
product's report and the fault ledger must be identical, not just close: the reference executor
is what the Monte Carlo runs use in place of the cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from distributed import Client

from codenet_dask import local_cluster
from codenet_dask.executors import LocalExecutor
from codenet_dask.protocol.plans import Plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflows"))
import executors_agree

#: Epochs of each run here (the workflow's full length is 8-10).
EPOCHS = 3


@pytest.fixture(scope="module")
def clusters():
    """One process-based LocalCluster per worker count (BLAS on one thread in every worker)."""
    made: dict[int, Client] = {}
    try:
        yield lambda n: made.get(n) or made.setdefault(n, Client(local_cluster(n, dashboard_address=None)))
    finally:
        for client in made.values():
            cluster = client.cluster
            client.close()
            cluster.close()


@pytest.mark.slow
@pytest.mark.parametrize("spec", executors_agree.RUNS, ids=lambda spec: f"{spec[0]}-{spec[5]}w-{spec[4][:40]}")
def test_reference_and_dask_executors_agree_bit_for_bit(clusters, spec):
    differences, on_dask = executors_agree.compare(spec, clusters(spec[5]), EPOCHS)
    assert differences == []
    assert on_dask.get("iterations") == executors_agree.STEPS_PER_EPOCH * min(EPOCHS, spec[6]), on_dask.get("gave up")


def test_the_workflows_runs_cover_a_thousand_steps():
    assert sum(executors_agree.STEPS_PER_EPOCH * epochs for *_, epochs in executors_agree.RUNS) >= 1000


def test_a_difference_is_found():
    """The comparison has teeth: a run against a changed copy of itself differs where it changed."""
    import numpy as np

    a = {"outcomes": [], "reports": {}, "faults": {}, "accuracy": [0.5], "iterations": 3, "loss": 1.0}
    a["weights"] = [{(0, 0): np.zeros(2)}]
    b = {**a, "loss": 1.0 + 1e-16 * 4, "weights": [{(0, 0): np.array([0.0, 1e-300])}]}
    assert executors_agree.differences(a, a) == []
    assert executors_agree.differences(a, b) == ["loss", "weights of layer 0"]


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

"""Watching a run: the CodeNet dashboard page (in headless Chromium), its counters against the
Trainer's ledger, the performance report, and the image of one step's task graph."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

from distributed import Client

from codenet_dask.data import load_dataset
from codenet_dask.observe import COUNTS, JSON_ROUTE, Tally
from codenet_dask.training import TrainConfig, Trainer


def base_url(client: Client) -> str:
    return client.dashboard_link.rsplit("/", 1)[0]


def fetch_json(base: str, run: str | None = None) -> dict:
    url = f"{base}/{JSON_ROUTE}" + (f"?run={run}" if run else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


# -- aggregation ------------------------------------------------------------------------------
def test_tally_folds_increments_per_run_layer_and_worker():
    tally = Tally()
    tally.apply({"kind": "start", "run": "a", "strategy": "codenet", "label": "x"})
    tally.apply({"kind": "layers", "run": "a", "layers": [
        {"name": "dense0", "strategy": "codenet", "grid": [2, 2], "parity": [2, 2], "blocks": {"w1": 8, "w2": 8}}]})
    for _ in range(2):
        tally.apply({"kind": "step", "run": "a", "position": 3, "total": 9, "rollbacks": 1,
                     "layers": {"dense0": {"detected": 2, "corrected": 1, "products": 1}},
                     "workers": {"w1": {"detected": 2, "corrected": 1}}})
    tally.apply({"kind": "step", "run": "b", "position": 1})  # a run this plugin never saw start
    tally.apply({"kind": "nonsense", "run": "a"})
    tally.apply("not even a dict")
    run = tally.snapshot("a")["run"]
    assert run["totals"]["detected"] == 4 and run["totals"]["corrected"] == 2 and run["totals"]["products"] == 2
    assert run["layers"][0]["shape"]["grid"] == [2, 2] and run["rollbacks"] == 1 and run["position"] == 3
    assert {w["worker"]: (w["blocks"], w["detected"]) for w in run["workers"]} == {"w1": (8, 4), "w2": (8, 0)}
    assert tally.snapshot()["runs"] == ["a", "b"] and tally.ignored == 2
    tally.apply({"kind": "start", "run": "a"})  # a restarted run starts from zero
    assert tally.snapshot("a")["run"]["totals"]["detected"] == 0


# -- counters == ledger -----------------------------------------------------------------------
def test_dashboard_counters_equal_the_trainers_ledger(client, tmp_path):
    """NaN results force recomputations and (with 2 attempts) a rollback; exponent flips in updates
    leave wrong stored blocks that scrubs repair. What the page counts, summed from the events the
    run published, must equal what the Trainer's own ledger holds at the end."""
    data = load_dataset("digits", seed=0)
    config = TrainConfig(hidden=(16,), epochs=1, batch_size=128, lr=0.5, grid=2, parity=(2, 2),
                         faults="nan:0.12:steps=block-forward+block-backward,bitflip:0.04:field=exponent:steps=update",
                         checkpoint_every=4, scrub_every=2, max_attempts=2, seed=2)
    trainer = Trainer(client, data, config, tmp_path / "store")  # registers the plugin itself
    summary = trainer.run()
    run = fetch_json(base_url(client), trainer.observer.run_id)["run"]
    ledger = trainer.ledger
    assert run["status"] == "finished" and run["position"] == run["total"] == summary.iterations
    assert run["final"] == summary.faults and run["rollbacks"] == summary.faults["rollbacks"] > 0

    expected = {}
    for layer in trainer.layers:
        reports = [(key, r) for key, r in ledger.products.items() if r.layer == layer.name]
        expected[layer.name] = {
            "products": len(reports),
            "detected": sum(len(r.detected) for _, r in reports),
            "corrected": sum(len(r.corrected) for _, r in reports),
            "recomputations": sum(r.recomputed for _, r in reports),
            "recomputed": sum(len(c) for _, r in reports for a, c in r.detected_by_attempt.items()
                              if a != r.accepted_attempt),
            "rolled_back": sum(len(r.detected) for key, r in reports if key in ledger.rolled_back),
            "ops_rolled_back": sum(1 for name, _ in ledger.rolled_back if name == layer.name),
            "repaired": len(ledger.repairs.get(layer.name, [])),
        }
    got = {layer["name"]: {k: layer[k] for k in expected["dense0"]} for layer in run["layers"]}
    assert got == expected
    for name in ("detected", "recomputed", "rolled_back", "repaired", "recomputations"):
        assert sum(e[name] for e in expected.values()) > 0, f"the run exercised no {name}"
    # Workers: every count placed on a real worker, the sums agree with the layers', and the
    # detections land on the workers that own those blocks.
    workers = {w["worker"]: w for w in run["workers"]}
    assert set(workers) == set(client.scheduler_info()["workers"])
    for name in COUNTS:
        assert sum(w[name] for w in workers.values()) == run["totals"][name]
    owners = {layer.name: layer.owners for layer in trainer.layers}
    by_owner = Counter(owners[r.layer][tuple(c)] for r in ledger.products.values() for c in r.detected)
    assert {w: workers[w]["detected"] for w in workers} == {w: by_owner.get(w, 0) for w in workers}
    shapes = {layer["name"]: layer["shape"] for layer in run["layers"]}
    assert shapes["dense1"]["grid"] == [2, 2] and shapes["dense1"]["parity"] == [2, 2]
    assert sum(w["blocks"] for w in workers.values()) == 2 * 16  # two 4x4 coded grids

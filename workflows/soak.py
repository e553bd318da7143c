"""A randomized soak: many short training runs over random fault specs, code shapes, strategies and
worker counts; every run must end as documented (completed, diverged or gave up), never crash.

Each run draws (from its seed) a strategy (codenet, replication r = 2 or 3, uncoded), a grid
(1..3 per side) and parity (1..2 per side), a worker count (1..9), a dtype, and one to three fault
rules (bit flips anywhere or in the mantissa, NaN, Inf, zeroed results, additive noise) at rates
log-uniform in 1e-3..0.1 on random step kinds — a quarter of the runs also get one always-wrong
worker ("1", ``bitflip:1.0:field=exponent:workers=1``, or ``inf:1.0`` when the run has bit
flips; the other rules then hit the other workers). It trains 4-class blobs (12 features,
hidden 8) for 2 epochs of 8 steps on the in-process reference executor (the same plans and
kernels as a Dask cluster; ``--dask`` for a LocalCluster per worker count, where every wait has
its deadline). Prints how the runs ended, crashes with their seeds, undetected faults (judged
independently; uncoded runs, which check nothing, are not counted) and quarantines (of worker "1" when it was the bad one, else of a healthy worker).

    python workflows/soak.py                 # 200 runs (the README's figure)
    python workflows/soak.py --runs 10 --json

Exit status 1 if a run crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections import Counter

import numpy as np
from monte_carlo import blobs  # the same 4-class data set (this folder is on sys.path)

from codenet_dask import LocalExecutor, TrainConfig, Trainer

MODELS = ("bitflip", "bitflip:field=mantissa", "nan", "inf", "zero", "noise:scale=1e-6")
STEPS = ("encode", "activation", "block-forward", "block-backward", "project", "decode", "verify", "update", "scrub")


def draw(seed: int) -> tuple[TrainConfig, int, bool]:
    """The seed's run: its config, worker count, and whether worker "1" is always wrong."""
    rng = np.random.default_rng([seed, 7])
    strategy = str(rng.choice(["codenet", "codenet", "replication", "uncoded"]))
    workers = int(rng.choice([1, 2, 3, 4, 6, 9]))
    bad = workers > 1 and rng.random() < 0.25
    others = ":workers=" + "+".join(str(w) for w in range(workers) if w != 1) if bad else ""
    rules, used = [], set()
    for _ in range(int(rng.integers(1, 4))):
        model = str(rng.choice(MODELS))
        name, _, option = model.partition(":")
        if name in used:
            continue
        used.add(name)
        steps = rng.choice(STEPS, size=int(rng.integers(1, 4)), replace=False)
        rate = float(10 ** rng.uniform(-3, -1))
        rule = f"{name}:{rate:.4g}" + (f":{option}" if option else "") + ":steps=" + "+".join(sorted(steps))
        rules.append(rule + others)  # with a bad worker: on the others (its tasks are all hit already)
    if bad:
        rules.append("bitflip:1.0:field=exponent:workers=1" if "bitflip" not in used else "inf:1.0:workers=1")
    config = TrainConfig(
        strategy=strategy,  # type: ignore[arg-type]
        hidden=(8,),
        grid=int(rng.integers(1, 4)),
        parity=(int(rng.integers(1, 3)), int(rng.integers(1, 3))) if strategy == "codenet" else (0, 0),
        replicas=int(rng.choice([2, 3])),
        epochs=2,
        batch_size=32,
        lr=0.1,
        faults=",".join(rules),
        dtype=str(rng.choice(["float32", "float64"])),
        seed=seed,
        checkpoint_every=4,
        scrub_every=3,
    )
    return config, workers, bad


def soak(runs: int, dask: bool = False, progress: bool = True) -> dict:
    ended: Counter = Counter()
    crashes, undetected, quarantines = [], [], Counter()
    clients: dict[int, object] = {}
    start = time.perf_counter()
    try:
        for seed in range(runs):
            config, workers, bad = draw(seed)
            if dask and workers not in clients:
                from distributed import Client

                from codenet_dask import local_cluster

                cluster = local_cluster(workers, dashboard_address=None)
                clients[workers] = Client(cluster)
            target = clients[workers] if dask else LocalExecutor(workers)
            try:
                with tempfile.TemporaryDirectory() as folder:
                    summary = Trainer(target, blobs(seed), config, f"{folder}/store").run()
            except Exception as exc:  # what the soak is for: anything not a documented ending
                crashes.append({"seed": seed, "error": f"{type(exc).__name__}: {exc}", "faults": config.faults})
                if progress:
                    traceback.print_exc()
                continue
            ended[summary.status] += 1
            if summary.faults["undetected"] and config.strategy != "uncoded":  # uncoded checks nothing
                undetected.append({"seed": seed, "undetected": summary.faults["undetected"]})
            for q in summary.quarantined:
                quarantines["bad worker" if bad and q["worker"] == "1" else "healthy worker"] += 1
            if progress:
                print(f"run {seed}: {config.strategy} x{workers} {config.faults}: {summary.status}", file=sys.stderr)
    finally:
        for client in clients.values():
            cluster = client.cluster  # type: ignore[attr-defined]
            client.close()  # type: ignore[attr-defined]
            cluster.close()
    return {
        "runs": runs,
        "seconds": round(time.perf_counter() - start, 1),
        "ended": dict(ended),
        "crashes": crashes,
        "undetected_runs": undetected,
        "quarantined": dict(quarantines),
        "bad_worker_runs": sum(draw(s)[2] for s in range(runs)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="how many random runs")
    p.add_argument("--dask", action="store_true", help="on LocalClusters (one per worker count)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the summary")
    args = p.parse_args(argv)
    result = soak(args.runs, args.dask, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['runs']} runs in {result['seconds']} s: ended {result['ended']}, "
            f"{len(result['crashes'])} crashed, {len(result['undetected_runs'])} with undetected faults, "
            f"quarantined {result['quarantined']} ({result['bad_worker_runs']} runs had a bad worker)"
        )
        for crash in result["crashes"]:
            print(f"  crash: seed {crash['seed']}: {crash['error']} ({crash['faults']})")
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())

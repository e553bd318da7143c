"""Monte Carlo through the training path: injected faults in every step kind, each judged.

Trains small networks again and again (``train`` runs exactly this protocol) under seeded random
faults in every step kind (encode, activation, block products, projections, decode, verify, update,
scrub), for codenet and replication r=3, in float32 and float64, on the in-process reference
executor (``--dask``: on a LocalCluster), with the independent judge on (``codenet_dask.judge``):
every injected fault ends in exactly one class, and ``undetected`` counts the faults whose
accepted results the judge found wrong. Prints the counts per step kind and class.

    python workflows/monte_carlo.py                 # 100,000 faults (the README's table)
    python workflows/monte_carlo.py --faults 2000   # a quick look
    python workflows/monte_carlo.py --dask --faults 10000

Exit status 1 if any fault was undetected.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections import Counter

import numpy as np

from codenet_dask import Dataset, LocalExecutor, TrainConfig, Trainer

#: (strategy, fault spec): together every step kind, every model, near the rates the code absorbs.
SPECS = [
    ("codenet", "bitflip:0.12:steps=block-forward+block-backward,nan:0.03:steps=block-forward+block-backward"),
    ("codenet", "bitflip:0.12:field=mantissa:steps=block-forward+block-backward,zero:0.02:steps=block-forward"),
    ("codenet", "noise:0.1:scale=1e-6:steps=block-forward,noise:0.05:scale=1e-9:steps=block-backward"),
    ("codenet", "bitflip:0.03:steps=activation+project+decode+verify"),
    ("codenet", "bitflip:0.02:steps=update+encode+scrub,noise:0.02:scale=1e-7:steps=update"),
    ("replication", "bitflip:0.08:steps=block-forward+block-backward,nan:0.02:steps=block-forward"),
    ("replication", "bitflip:0.02:steps=activation+project+decode+verify+update+scrub"),
]
#: Run ``seed`` uses combination ``seed % len(COMBINATIONS)``.
COMBINATIONS = [(s, d) for s in SPECS for d in ("float32", "float64")]
OUTCOMES = ("corrected", "recomputed", "rolled-back", "benign", "undetected")


def blobs(seed: int) -> Dataset:
    """4 classes of 12-feature Gaussian blobs: 256 training samples, 16 steps an epoch at batch 16."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, 12)) * 2
    labels = rng.integers(0, 4, 320)
    x = (centres[labels] + rng.standard_normal((320, 12))).T
    return Dataset(x[:, :256], labels[:256], x[:, 256:], labels[256:], classes=4, name="blobs")


def seeded(seed: int) -> TrainConfig:
    """Run ``seed``'s configuration (on ``blobs(seed)``): the seed names the data, the faults and
    the config, so one run is enough to reproduce what it found."""
    (strategy, spec), dtype = COMBINATIONS[seed % len(COMBINATIONS)]
    return TrainConfig(
        strategy=strategy,
        hidden=(16,),
        grid=2,
        parity=(2, 2) if strategy == "codenet" else (0, 0),
        replicas=3,
        epochs=4,
        batch_size=16,
        lr=0.1,
        faults=spec,
        dtype=dtype,
        seed=seed,
        checkpoint_every=16,
        scrub_every=4,
    )


def run(target_faults: int, dask: bool = False, progress: bool = True) -> dict:
    """Train until ``target_faults`` faults were injected; the per-step-kind counts of every class."""
    counts: Counter = Counter()
    runs, statuses, start = 0, Counter(), time.perf_counter()
    escaped: list[dict] = []
    client = cluster = None
    if dask:
        from distributed import Client

        from codenet_dask import local_cluster

        cluster = local_cluster(4, dashboard_address=None)
        client = Client(cluster)
    try:
        for seed in itertools.count():
            if sum(counts.values()) >= target_faults:
                break
            config = seeded(seed)
            with tempfile.TemporaryDirectory() as folder:
                trainer = Trainer(client if dask else LocalExecutor(4), blobs(seed), config, f"{folder}/store")
                summary = trainer.run()
            strategy, dtype = config.strategy, config.dtype
            statuses[summary.status] += 1
            outcomes = trainer.ledger.outcomes()
            counts.update((f.site.step, outcome) for f, outcome in outcomes)
            missed = [f"{f.site} attempt {f.attempt}" for f, outcome in outcomes if outcome == "undetected"]
            if missed:  # enough to run it again: the seed names the data, the faults and the config
                escaped.append({"seed": seed, "strategy": strategy, "dtype": dtype, "faults": missed})
            runs += 1
            if progress:
                print(
                    f"run {runs} (seed {seed}): {strategy} {dtype} {summary.status}; "
                    f"{sum(counts.values())} faults so far" + (f"; UNDETECTED {missed}" if missed else ""),
                    flush=True,
                )
    finally:
        if client is not None:
            client.close()
            cluster.close()
    steps = sorted({step for step, _ in counts})
    return {
        "faults": sum(counts.values()),
        "runs": runs,
        "statuses": dict(statuses),
        "seconds": round(time.perf_counter() - start, 1),
        "by_step": {step: {o: counts[(step, o)] for o in OUTCOMES} for step in steps},
        "totals": {o: sum(counts[(s, o)] for s in steps) for o in OUTCOMES},
        "undetected_runs": escaped,
    }


def table(result: dict) -> str:
    lines = ["| step kind | " + " | ".join(OUTCOMES) + " |", "|---|" + "---|" * len(OUTCOMES)]
    for step, row in result["by_step"].items():
        lines.append(f"| {step} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |")
    lines.append("| **all** | " + " | ".join(f"**{result['totals'][o]}**" for o in OUTCOMES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=100_000, help="stop once this many faults were injected")
    parser.add_argument("--dask", action="store_true", help="on a LocalCluster of 4 worker processes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.faults, args.dask, progress=not args.json)
    print(
        json.dumps(result)
        if args.json
        else f"{table(result)}\n\n{result['runs']} runs {result['statuses']}, "
        f"{result['faults']} faults in {result['seconds']} s"
    )
    return 1 if result["totals"]["undetected"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

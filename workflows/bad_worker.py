"""One always-wrong worker over worker counts: what it spoils, and what the run does about it.

Trains the digits network (64-16-10, 2x2 grid + 2x2 parity, 2 epochs) with worker "1" wrong on
every task it runs (``bitflip:1.0:field=exponent:workers=1``; ``--steps block-forward`` hits only
its forward products) next to a fault-free run, for each worker count, on the in-process executor
(same plans and kernels as a Dask cluster; worker names 0, 1, ...). Prints the README's table:
the most blocks of one codeword a worker holds (the errors a bad worker causes in each), when it
was quarantined and on what evidence, rollbacks, whether the initialisation was done again,
accuracy against the fault-free run's, and undetected faults (judged independently).

    python workflows/bad_worker.py                  # workers 2 3 4 6 9 16 (the README's table)
    python workflows/bad_worker.py --workers 2 16 --json

Exit status 1 if a run did not complete or had an undetected fault.
"""

from __future__ import annotations

import argparse
import json
import sys

from codenet_dask import LocalExecutor, TrainConfig, Trainer, load_dataset, most_per_codeword, spread_owners

GRID, PARITY = 2, (2, 2)


def run(workers: int, faults: str, data) -> dict:
    config = TrainConfig(hidden=(16,), epochs=2, batch_size=128, lr=0.5, grid=GRID, parity=PARITY, faults=faults)
    trainer = Trainer(LocalExecutor(workers), data, config)
    try:
        return trainer.run().to_json() | {"reencoded": bool(trainer.ledger.reencoded)}
    finally:
        trainer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[2, 3, 4, 6, 9, 16], help="worker counts to run")
    p.add_argument("--steps", default=None, help="hit only these steps of worker 1 (e.g. block-forward)")
    p.add_argument("--json", action="store_true", help="one JSON object per worker count instead of the table")
    args = p.parse_args(argv)
    faults = "bitflip:1.0:field=exponent:workers=1" + (f":steps={args.steps}" if args.steps else "")
    data = load_dataset("digits", seed=0)
    shape = (GRID + PARITY[0], GRID + PARITY[1])
    rows, failed = [], False
    for workers in args.workers:
        clean, bad = run(workers, "none", data), run(workers, faults, data)
        quarantined = bad["quarantined"]
        row = {
            "workers": workers,
            "blocks_per_codeword": most_per_codeword(spread_owners([str(w) for w in range(workers)], shape), shape),
            "quarantined": [f"{q['worker']}@{q['step']} ({q['wrong']}/{q['checked']})" for q in quarantined],
            "rollbacks": bad["faults"]["rollbacks"],
            "reencoded": bad["reencoded"],
            "corrected": bad["faults"]["corrected"],
            "recomputed": bad["faults"]["recomputed"],
            "accuracy": bad["test_accuracy"],
            "fault_free_accuracy": clean["test_accuracy"],
            "undetected": bad["faults"]["undetected"],
            "status": bad["status"],
        }
        failed |= row["status"] != "completed" or row["undetected"] > 0
        rows.append(row)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"workers {workers}: {row['status']}, quarantined {row['quarantined']}", file=sys.stderr)
    if not args.json:
        print(f"faults: {faults}; codewords of {max(shape)} blocks, {min(PARITY)} parity")
        print(
            "| workers | most blocks of a codeword on one worker | quarantined (step, wrong/checked) | rollbacks "
            "| initialisation redone | corrected / recomputed | accuracy (fault-free) | undetected |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['workers']} | {r['blocks_per_codeword']} | {', '.join(r['quarantined']) or 'none'} "
                f"| {r['rollbacks']} | {'yes' if r['reencoded'] else 'no'} | {r['corrected']} / {r['recomputed']} "
                f"| {r['accuracy']:.4f} ({r['fault_free_accuracy']:.4f}) | {r['undetected']} |"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

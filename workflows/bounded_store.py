"""A long training run keeps its store bounded: ``--keep-checkpoints N`` expires older checkpoints and
garbage-collects their chunks after every new one.

Runs ``codenet-dask train`` (digits, a wide hidden layer so the coded model is larger than the
metadata) with ``--checkpoint-every 10 --keep-checkpoints 2``, measures the store's size on disk
every 0.2 s while it trains and at the end, and compares it with the bound (N + 1) x the checkpoint
(every coded block's values, and the run's journal: the fault ledger and the judge's shadow weights)
+ 1 MB of metadata (bookkeeping, manifests, snapshots).
Without expiry the store would hold every checkpoint's changed blocks.

    python workflows/bounded_store.py            # 1,000 steps (a few minutes on 2 cores)
    python workflows/bounded_store.py --tiny     # 60 steps, for the tests
    python workflows/bounded_store.py --no-judge # without the judge's shadow weights in the journal
    python workflows/bounded_store.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from codenet_dask import CodedStore

MB = 2**20


def disk_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:  # garbage collected meanwhile
                continue
    return total


def codenet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codenet_dask", *args], capture_output=True, text=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024, help="hidden width of the 64-H-10 network")
    parser.add_argument("--batch-size", type=int, default=29, help="29: 50 steps per epoch of digits' 1,437 samples")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--keep", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="64-256-10, 60 steps")
    parser.add_argument("--no-judge", action="store_true", help="train --no-judge: no shadow weights in the journal")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.hidden, args.batch_size, args.epochs = 256, 48, 2
    with tempfile.TemporaryDirectory(prefix="bounded-store-") as tmp:
        store = Path(tmp) / "store"
        command = [
            "train",
            "--dataset",
            "digits",
            "--layers",
            str(args.hidden),
            "--batch-size",
            str(args.batch_size),
            "--epochs",
            str(args.epochs),
            "--lr",
            "0.05",
            "--grid",
            "2x2",
            "--workers",
            "2",
            "--checkpoint-every",
            str(args.checkpoint_every),
            "--keep-checkpoints",
            str(args.keep),
            "--store",
            str(store),
            "--json",
            *(["--no-judge"] if args.no_judge else []),
        ]
        sizes: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                if store.exists():
                    sizes.append(disk_bytes(store))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        run = codenet(*command)
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        summary = json.loads(run.stdout)
        info = json.loads(codenet("inspect", str(store), "--json").stdout)
        final = disk_bytes(store)
        with CodedStore.open(store) as opened:
            journal = len(opened.read_run(opened.checkpoints()[0].id)[1])
    coded = sum(layer["coded_bytes"] for layer in info["layers"])
    largest = max([*sizes, final])
    bound = (args.keep + 1) * (coded + journal) + MB
    result = {
        "steps": summary["iterations"],
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep,
        "checkpoints_written": summary["iterations"] // args.checkpoint_every + 1,
        "checkpoints_kept": len(info["checkpoints"]),
        "layers": summary["layers"],
        "coded_model_bytes": coded,
        "judged": not args.no_judge,
        "journal_bytes": journal,
        "bound_bytes": bound,
        "max_store_bytes": largest,
        "final_store_bytes": final,
        "max_store_vs_coded_model": largest / coded,
        "within_bound": largest <= bound,
        "samples": len(sizes),
        "test_accuracy": summary["test_accuracy"],
        "wall_seconds": seconds,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{result['steps']} steps of {'-'.join(map(str, result['layers']))}, a checkpoint every "
            f"{args.checkpoint_every} ({result['checkpoints_written']} written, {result['checkpoints_kept']} kept)"
        )
        print(
            f"coded model {coded / MB:.2f} MB, journal {journal / MB:.2f} MB; "
            f"bound ({args.keep} + 1) x (model + journal) + 1 MB = {bound / MB:.2f} MB"
        )
        print(
            f"store on disk: at most {result['max_store_bytes'] / MB:.2f} MB over {len(sizes)} samples "
            f"({result['max_store_vs_coded_model']:.2f}x the coded model), {final / MB:.2f} MB at the end; "
            f"{'within' if result['within_bound'] else 'OVER'} the bound"
        )
        print(f"test accuracy {result['test_accuracy']:.4f}, {seconds:.0f} s")
    return 0 if result["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())

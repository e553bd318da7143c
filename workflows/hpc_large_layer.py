"""A large coded layer trained for a few steps on an HPC cluster (SLURM or PBS) or a LocalCluster.

One square layer W (size x size, e.g. 16384 x 16384 float32 = 1 GiB) is encoded once into a
KxK grid plus parity on the workers, then each step runs the three checked products of
``CodedLayer``: forward ``S = W X``, backprop ``W^T S`` and the update ``W -= lr S X^T`` (the
gradient of 1/2 |W X|^2), and prints how long each took. The cluster options are the CLI's
(``--cluster local|slurm|pbs --workers --cores --memory --walltime --queue --account --job-extra``;
defaults from dask config ``codenet.cluster.*``). With slurm/pbs and no ``--workers``, one worker
job per coded block is asked for (36 for a 4x4 grid + 2x2 parity).

    python workflows/hpc_large_layer.py                       # 2048^2 float32 on a LocalCluster
    python workflows/hpc_large_layer.py --cluster slurm --size 16384 --batch 256 --steps 3 \\
        --memory 8GiB --walltime 01:00:00 --queue debug       # the large run
    python workflows/hpc_large_layer.py --tiny --check --json # seconds; what the smoke test runs

The client builds W in its own memory first (size^2 x 4 bytes, twice while encoding), so run
it where that fits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from distributed import Client

from codenet_dask import (
    ClusterConfigError,
    CodedLayer,
    RandomFaults,
    UsageError,
    add_cluster_options,
    cluster_spec_from_args,
    connect_from_args,
    parse_pair,
    workers_for_grid,
)
from codenet_dask.bench import peak_rss, reset_peak_rss, resident_mib


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="W is size x size (e.g. 16384)")
    parser.add_argument("--batch", type=int, default=128, help="columns of X per step")
    parser.add_argument("--grid", default="4x4", help="systematic block grid KRxKC")
    parser.add_argument("--parity", default="2x2", help="parity block-rows x block-columns")
    parser.add_argument("--steps", type=int, default=3, help="training steps (forward, backward, update)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of the update")
    parser.add_argument("--faults", default="none", help="fault spec injected on the workers, e.g. bitflip:1e-3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare the first forward product with numpy")
    parser.add_argument("--tiny", action="store_true", help="size 64, batch 8, grid 2x2, 2 steps (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_cluster_options(parser)
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.batch, args.grid, args.steps = 64, 8, "2x2", 2
    return args


def run(args: argparse.Namespace, client: Client) -> dict:
    """Encode, train ``args.steps`` steps and time each product; returns the report."""
    grid, parity = parse_pair(args.grid, "--grid"), parse_pair(args.parity, "--parity")
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    w = (rng.standard_normal((args.size, args.size), dtype=np.float32) / np.sqrt(args.size)).astype(dtype, copy=False)
    hook = RandomFaults.from_string(args.faults, seed=args.seed)
    start = time.perf_counter()
    layer = CodedLayer.encode(client, w, grid=grid, parity=parity, name="large", hook=hook, seed=args.seed)
    encode_s = time.perf_counter() - start
    encode_peak = _largest_mib(client.run(peak_rss))
    client.run(reset_peak_rss)  # from here on: the training steps' peak
    steps, detected, corrected, max_err = [], 0, 0, None
    for step in range(args.steps):
        inputs = rng.standard_normal((args.size, args.batch), dtype=np.float32).astype(dtype, copy=False)
        t0 = time.perf_counter()
        x = layer.ship(inputs, "x")  # forward and update share it: it crosses the network once
        s = layer.forward(x)
        t1 = time.perf_counter()
        if args.check and step == 0:
            want = w.astype(np.float64) @ inputs.astype(np.float64)
            max_err = float(np.max(np.abs(s.to_numpy() - want)) / max(np.max(np.abs(want)), 1e-300))
            t1 = time.perf_counter()  # the check is not part of the step
        back = layer.backward(s)
        t2 = time.perf_counter()
        layer.update(s, x, args.lr)
        t3 = time.perf_counter()
        for report in (s.report, back.report):
            detected += report.errors_detected
            corrected += report.errors_corrected
        steps.append({"forward_s": t1 - t0, "backward_s": t2 - t1, "update_s": t3 - t2, "step_s": t3 - t0})
        if not args.json:
            print(
                f"step {step + 1}/{args.steps}: forward {t1 - t0:.3f} s  backward {t2 - t1:.3f} s  "
                f"update {t3 - t2:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    return {
        "size": args.size,
        "batch": args.batch,
        "dtype": args.dtype,
        "grid": list(grid),
        "parity": list(parity),
        "workers": len(client.nthreads()),
        "encode_s": encode_s,
        "steps": steps,
        "median_step_s": float(np.median([s["step_s"] for s in steps])) if steps else None,
        "encode_count": layer.encode_count,
        "errors_detected": detected,
        "errors_corrected": corrected,
        "max_relative_error_first_forward": max_err,
        "faults": args.faults,
        # Memory per worker: its share of the coded blocks; peak RSS while encoding and while training.
        "blocks_mib_per_worker": resident_mib(layer, w),
        "encode_peak_worker_mib": encode_peak,
        "peak_worker_mib": _largest_mib(client.run(peak_rss)),
    }


def _largest_mib(values: dict[str, int | None]) -> float | None:
    """The largest of the workers' byte counts in MiB (None where the OS does not say)."""
    known = [v for v in values.values() if v is not None]
    return max(known) / 2**20 if known else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for name in ("size", "batch", "steps"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(args, name)}")
        grid, parity = parse_pair(args.grid, "--grid"), parse_pair(args.parity, "--parity")
        spec = cluster_spec_from_args(args)
        with connect_from_args(args, needed=workers_for_grid(grid, parity), spec=spec) as client:
            if not args.json:
                print(f"dashboard: {client.dashboard_link}", file=sys.stderr)
            report = run(args, client)
    except (UsageError, ClusterConfigError) as exc:  # bad options: nothing was submitted
        print(f"hpc_large_layer: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"layer {args.size}x{args.size} {args.dtype}, grid {args.grid} + parity {args.parity}, batch {args.batch}, "
        f"{report['workers']} workers"
    )
    print(f"encode (once)      {report['encode_s']:.3f} s")
    for i, s in enumerate(report["steps"], 1):
        print(
            f"step {i}  forward {s['forward_s']:.3f} s  backward {s['backward_s']:.3f} s  "
            f"update {s['update_s']:.3f} s  total {s['step_s']:.3f} s"
        )
    print(f"median step        {report['median_step_s']:.3f} s")
    peaks = [report["encode_peak_worker_mib"], report["peak_worker_mib"]]
    encode_peak, step_peak = (f"{p:.0f} MiB" if p is not None else "unknown" for p in peaks)
    print(
        f"memory per worker  {report['blocks_mib_per_worker']:.0f} MiB of coded blocks; peak RSS {encode_peak} "
        f"while encoding, {step_peak} while training"
    )
    if report["max_relative_error_first_forward"] is not None:
        print(f"first forward vs numpy: max relative error {report['max_relative_error_first_forward']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

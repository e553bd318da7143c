"""Coded ``codenet_dask.matmul`` vs plain ``dask.array`` ``a @ b`` vs one numpy process, side by side.

Runs the three interleaved (A B C A B C ...), reports medians and the ratios coded/dask and
coded/numpy, and the FLOP ratio the code implies ((kr + parity) / kr). Uses only the public API.

    python workflows/bench_matmul.py            # n=2048, batch 256, grid 4x4, parity 2
    python workflows/bench_matmul.py --tiny     # seconds; what the smoke test runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import dask.array as da
import numpy as np
from distributed import Client

import codenet_dask


def measure(fn, repeats: int) -> list[float]:
    return [_timed(fn) for _ in range(repeats)]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="a is n x n")
    parser.add_argument("--batch", type=int, default=256, help="b is n x batch")
    parser.add_argument("--grid", type=int, default=4, help="a is split into grid x grid blocks")
    parser.add_argument("--parity", type=int, default=2, help="parity block-rows")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="n=128, batch 16, 2 repeats")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.n, args.batch, args.repeats = 128, 16, 2
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((args.n, args.n)), rng.standard_normal((args.n, args.batch))
    block = args.n // args.grid
    with codenet_dask.local_cluster(2) as cluster, Client(cluster) as client:
        a = client.persist(da.from_array(a_np, chunks=block))
        b = client.persist(da.from_array(b_np, chunks=(block, args.batch)))
        coded = codenet_dask.matmul(a, b, parity=args.parity)
        plain = a @ b
        want = a_np @ b_np
        assert np.allclose(coded.compute(), want) and np.allclose(plain.compute(), want)
        times: dict[str, list[float]] = {"coded": [], "dask": [], "numpy": []}
        for _ in range(args.repeats):
            times["coded"] += measure(lambda: coded.compute(), 1)
            times["dask"] += measure(lambda: plain.compute(), 1)
            times["numpy"] += measure(lambda: a_np @ b_np, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "n": args.n,
        "batch": args.batch,
        "grid": args.grid,
        "parity": args.parity,
        "repeats": args.repeats,
        "median_seconds": med,
        "coded_over_dask": med["coded"] / med["dask"],
        "coded_over_numpy": med["coded"] / med["numpy"],
        "dask_over_numpy": med["dask"] / med["numpy"],
        "flop_ratio": (args.grid + args.parity) / args.grid,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"| n={args.n} batch={args.batch} grid {args.grid}x{args.grid} parity {args.parity} | median s | ratio |")
        print("|---|---|---|")
        for name in ("numpy", "dask", "coded"):
            print(f"| {name} | {med[name]:.4f} | {med[name] / med['numpy']:.2f}x numpy |")
        print(f"coded/dask = {result['coded_over_dask']:.2f} (FLOP ratio of the code: {result['flop_ratio']:.2f})")
    return result


if __name__ == "__main__":
    main()

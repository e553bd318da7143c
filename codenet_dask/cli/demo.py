"""``codenet-dask demo``: train one coded layer under injected soft errors and check it against numpy."""

from __future__ import annotations

import argparse
import json
import sys

from ..codes import ProductCode
from ..errors import CodeParameterError, FaultSpecError
from ..faults import parse_fault_spec
from .common import UsageError, parse_pair

DESCRIPTION = """\
Encode one size x size layer into a coded block grid on Dask workers, run STEPS training steps
(forward W X, backprop W^T D, update W -= lr D X^T) while a seeded injector corrupts block products
on the workers, and compare every result with plain numpy. Prints what was injected, detected,
corrected and recomputed, and the largest deviation from numpy."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..demo import DEFAULT_FAULTS

    p = sub.add_parser("demo", help="coded-layer demo under soft errors (the default main job)",
                       description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="layer width (weights are SIZE x SIZE)")
    p.add_argument("--batch", type=int, default=64, help="batch size B")
    p.add_argument("--grid", default="4x4", help="systematic block grid KRxKC")
    p.add_argument("--parity", default="2x2", help="parity block-rows x block-columns PRxPC")
    p.add_argument("--steps", type=int, default=5, help="training steps")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--faults", default=DEFAULT_FAULTS, help="fault spec (MODEL:RATE[:opt=val],... or none)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and faults")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)


def _validate(args: argparse.Namespace) -> tuple[tuple[int, int], tuple[int, int]]:
    for name in ("size", "batch", "steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    grid, parity = parse_pair(args.grid, "--grid"), parse_pair(args.parity, "--parity")
    try:
        ProductCode(*grid, *parity)
        parse_fault_spec(args.faults)
    except (CodeParameterError, FaultSpecError) as exc:
        raise UsageError(str(exc)) from None
    if grid[0] > args.size or grid[1] > args.size:
        raise UsageError(f"--grid {args.grid} is finer than a {args.size}x{args.size} layer")
    return grid, parity


def run(args: argparse.Namespace) -> int:
    grid, parity = _validate(args)
    from ..cluster import connect
    from ..demo import run_demo

    def progress(row: dict) -> None:
        print(f"step {row['step']}/{args.steps}: corrected {row['forward']['errors_corrected']} forward + "
              f"{row['backward']['errors_corrected']} backward block results, "
              f"max deviation from numpy {row['max_relative_error']:.2e}", file=sys.stderr)

    with connect(args.scheduler, args.workers) as client:
        print(f"dashboard: {client.dashboard_link}", file=sys.stderr)
        summary = run_demo(client, size=args.size, batch=args.batch, grid=grid, parity=parity,
                           steps=args.steps, faults=args.faults, seed=args.seed, dtype=args.dtype,
                           lr=args.lr, progress=progress)
    tolerance = 1e-10 if args.dtype == "float64" else 1e-4
    ok = summary.max_relative_error <= tolerance
    if args.json:
        print(json.dumps({**summary.as_dict(), "matches_numpy": ok}))
    else:
        rows = [
            ("layer", f"{summary.size}x{summary.size} {summary.dtype}, batch {summary.batch}"),
            ("code", f"grid {grid[0]}x{grid[1]} + parity {parity[0]}x{parity[1]} on {summary.workers} workers"),
            ("steps", str(summary.steps)),
            ("faults injected", f"{summary.injected} ({summary.faults})"),
            ("detected / corrected", f"{summary.detected} / {summary.corrected}"),
            ("recomputed products", str(summary.recomputed)),
            ("max deviation from numpy", f"{summary.max_relative_error:.2e} ({'OK' if ok else 'TOO LARGE'})"),
            ("full encodes of W", str(summary.encode_count)),
            ("wall time", f"{summary.wall_seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0 if ok else 1

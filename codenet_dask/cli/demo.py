"""``codenet-dask demo``: train one coded layer under injected soft errors and check it against numpy."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..codes import ProductCode
from ..errors import CodeParameterError, FaultSpecError
from ..faults import parse_fault_spec
from .common import UsageError, parse_pair

DESCRIPTION = """\
Encode one size x size layer into a coded block grid on Dask workers (or keep it uncoded or
replicated), run STEPS training steps (forward W X, backprop W^T D, update W -= lr D X^T) while a
seeded injector corrupts block products on the workers, and compare every result with plain numpy.
Prints the fault ledger (corrected, recomputed, benign, undetected) and the largest deviation from
numpy; exits 1 if a wrong result got through."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..demo import DEFAULT_FAULTS
    from ..strategies import STRATEGIES

    p = sub.add_parser(
        "demo",
        help="coded-layer demo under soft errors (the default main job)",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="codenet", help="redundancy scheme")
    p.add_argument("--replicas", type=int, default=3, help="copies per block with --strategy replication")
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
    if args.strategy == "replication" and args.replicas < 2:
        raise UsageError(f"--replicas must be at least 2, got {args.replicas}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    grid, parity = parse_pair(args.grid, "--grid"), parse_pair(args.parity, "--parity")
    if args.strategy != "codenet":
        parity = (0, 0)
    try:
        ProductCode(*grid, *(parity if args.strategy == "codenet" else (0, 0)))
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
        print(
            f"step {row['step']}/{args.steps}: found {row['forward']['errors_detected']} forward + "
            f"{row['backward']['errors_detected']} backward wrong block results, "
            f"max deviation from numpy {row['max_relative_error']:.2e}",
            file=sys.stderr,
        )

    with connect(args.scheduler, args.workers) as client:
        print(f"dashboard: {client.dashboard_link}", file=sys.stderr)
        summary = run_demo(
            client,
            strategy=args.strategy,
            size=args.size,
            batch=args.batch,
            grid=grid,
            parity=parity,
            replicas=args.replicas,
            steps=args.steps,
            faults=args.faults,
            seed=args.seed,
            dtype=args.dtype,
            lr=args.lr,
            progress=progress,
        )
    tolerance = 1e-10 if args.dtype == "float64" else 1e-4
    ok = summary.max_relative_error <= tolerance and summary.ledger["undetected"] == 0
    if args.json:
        out = {**summary.as_dict(), "matches_numpy": ok}
        if not np.isfinite(out["max_relative_error"]):
            out["max_relative_error"] = None  # NaN/Inf reached the result; JSON has no infinity
        for row in out["per_step"]:
            if not np.isfinite(row["max_relative_error"]):
                row["max_relative_error"] = None
        print(json.dumps(out, allow_nan=False))
    else:
        scheme = {
            "codenet": f"codenet: grid {grid[0]}x{grid[1]} + parity {parity[0]}x{parity[1]}",
            "uncoded": f"uncoded: grid {grid[0]}x{grid[1]}, no checks",
            "replication": f"replication: grid {grid[0]}x{grid[1]}, {summary.replicas} copies",
        }[args.strategy]
        led = summary.ledger
        rows = [
            ("layer", f"{summary.size}x{summary.size} {summary.dtype}, batch {summary.batch}"),
            ("strategy", f"{scheme} on {summary.workers} workers"),
            ("steps", str(summary.steps)),
            ("faults injected", f"{led['injected']} ({summary.faults})"),
            ("  corrected", str(led["corrected"])),
            ("  recomputed", str(led["recomputed"])),
            ("  benign (below roundoff)", str(led["benign"])),
            ("  UNDETECTED", str(led["undetected"])),
            ("recomputed products", str(summary.recomputed)),
            ("max deviation from numpy", f"{summary.max_relative_error:.2e} ({'OK' if ok else 'TOO LARGE'})"),
            ("full encodes of W", str(summary.encode_count)),
            ("wall time", f"{summary.wall_seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0 if ok else 1

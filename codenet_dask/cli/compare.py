"""``codenet-dask compare``: the accuracy–runtime experiment over strategies × fault rates × seeds."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..errors import CodeNetError, DataError
from .cluster_options import add_cluster_options, cluster_spec_from_args, connect_from_args
from .common import HelpFormatter, UsageError
from .train_run import EXIT_UNDETECTED

DESCRIPTION = """\
Train the same MLP with every strategy (uncoded, replication-R, codenet-KxK+PRxPC) at every fault
rate and seed, on the same batches and fault draws, and record test accuracy over wall time, final
accuracy, the fault ledger and the compute redundancy. The fault spec at rate R is
MODEL:R[:OPTIONS] from --fault-model, on block-forward+block-backward+update unless it names steps
(rate 0 is 'none'). Writes runs.csv, results.zarr (or results.nc) and PNG plots to --out, and
prints a Markdown table of final accuracy; --json prints one JSON object instead. A run that fails
(e.g. weights gone non-finite) is recorded with NaN accuracy and its status.

exit codes (the table, or the JSON object, is printed in every case):
  0  every run of a protecting strategy (replication, codenet) left nothing undetected
  3  some run of a protecting strategy had an undetected fault (uncoded runs are expected to)
  2  usage error"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..compare import DEFAULT_FAULT_MODEL, DEFAULT_STRATEGIES
    from ..training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "compare",
        help="accuracy vs runtime of the strategies under soft errors",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", required=True, help="folder for runs.csv, the Dataset and the PNGs")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty --out (its outputs are replaced)")
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help="comma-separated labels")
    p.add_argument("--fault-rates", default="0,1e-3,1e-2", help="per-task fault probabilities, comma separated")
    p.add_argument("--fault-model", default=DEFAULT_FAULT_MODEL, help="MODEL[:OPTION=VALUE...] without the rate")
    p.add_argument(
        "--seeds",
        default="0,1",
        help="comma-separated seeds (initial weights, batch order, fault draws; the data split is fixed)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--layers", default=",".join(map(str, d.hidden)), help="hidden layer widths, comma separated")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--grid", type=int, default=d.grid, help="block grid K (KxK) of uncoded and replication")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--scrub-every", type=int, default=d.scrub_every, help="steps between scrubs (codenet)")
    p.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    p.add_argument("--format", choices=["zarr", "netcdf"], default="zarr", help="format of the Dataset")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_cluster_options(p)
    p.set_defaults(run=run)


def _list(text: str, option: str, kind: type, unique: bool = True) -> list:
    """Comma-separated values; ``unique`` refuses repeats (a sweep axis), layer widths may repeat."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} expects a comma-separated list of {kind.__name__}s, got {text!r}") from None
    if not values or (unique and len(set(values)) != len(values)):
        raise UsageError(f"{option} must list at least one value and no repeats, got {text!r}")
    return values


def plan_from(args: argparse.Namespace):
    """Validated (variants, rates, seeds, TrainConfig), or a UsageError naming the bad option."""
    from ..compare import Variant, fault_spec
    from ..training import TrainConfig

    for name in ("epochs", "batch_size", "checkpoint_every", "scrub_every", "grid"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    rates = _list(args.fault_rates, "--fault-rates", float)
    if not all(0 <= r <= 1 for r in rates):  # also rejects nan
        raise UsageError(f"--fault-rates are per-task probabilities in [0, 1], got {args.fault_rates!r}")
    seeds = _list(args.seeds, "--seeds", int)
    if min(seeds) < 0:
        raise UsageError(f"--seeds must be >= 0, got {args.seeds!r}")
    hidden = tuple(_list(args.layers, "--layers", int, unique=False)) if args.layers.strip() else ()
    try:
        variants = [Variant.parse(s) for s in _list(args.strategies, "--strategies", str)]
        for rate in rates:
            fault_spec(args.fault_model, rate)
    except CodeNetError as exc:
        raise UsageError(str(exc)) from None
    finest = max([args.grid, *(v.grid or 0 for v in variants)])
    if any(h < finest for h in hidden):
        raise UsageError(f"every hidden width must be at least the finest grid {finest}, got {args.layers}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.overwrite)):
        raise UsageError(f"--out {out} exists and is not an empty folder; give a new one or --overwrite")
    config = TrainConfig(
        hidden=hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        grid=args.grid,
        checkpoint_every=args.checkpoint_every,
        scrub_every=args.scrub_every,
    )
    return variants, rates, seeds, config, finest


def run(args: argparse.Namespace) -> int:
    variants, rates, seeds, config, finest = plan_from(args)
    spec = cluster_spec_from_args(args)  # every cluster check before any data is read or job submitted
    from ..cluster import workers_for_grid
    from ..compare import markdown_table, output_paths, run_comparison
    from ..data import load_dataset

    try:
        data = load_dataset(args.dataset, dtype=config.dtype)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    if data.classes < finest:
        raise UsageError(f"grid {finest}x{finest} is finer than the {data.classes} output classes")
    total = len(variants) * len(rates) * len(seeds)
    done = []

    def progress(row: dict) -> None:
        done.append(row)
        if not args.json:
            print(
                f"[{len(done)}/{total}] {row['strategy']:<18} rate {row['fault_rate']:<8g} seed {row['seed']}: "
                f"accuracy {row['final_accuracy']:.4f}  {row['wall_seconds']:.1f} s  "
                f"undetected {row['undetected']}  {row['status']}",
                file=sys.stderr,
                flush=True,
            )

    out = Path(args.out)
    needed = max(workers_for_grid((v.grid or config.grid,) * 2, v.parity, v.replicas) for v in variants)
    with connect_from_args(args, needed=needed, spec=spec) as client:
        if not args.json:
            print(f"dashboard: {client.dashboard_link}", file=sys.stderr)
        ds = run_comparison(
            client,
            data,
            [v.label for v in variants],
            rates,
            seeds,
            config,
            out,
            fault_model=args.fault_model,
            progress=progress,
            fmt=args.format,
        )
    paths = [str(p) for p in output_paths(out, args.format)]
    # Uncoded training cannot see a soft error; every other strategy promises never to accept one.
    escaped = [r for r in done if r["strategy"] != "uncoded" and r["undetected"]]
    if args.json:
        runs = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in done]
        print(json.dumps({"runs": runs, "paths": paths, "table": markdown_table(ds)}))
    else:
        print(markdown_table(ds))
        print("\nwritten:\n" + "\n".join(f"  {p}" for p in paths))
    for r in escaped:
        print(
            f"codenet-dask compare: {r['strategy']} at rate {r['fault_rate']:g}, seed {r['seed']}: "
            f"{r['undetected']} undetected fault(s)",
            file=sys.stderr,
        )
    return EXIT_UNDETECTED if escaped else 0

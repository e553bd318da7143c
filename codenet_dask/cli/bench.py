"""``codenet-dask bench``: one training step of a layer, every strategy side by side."""

from __future__ import annotations

import argparse
import json
import sys

from .cluster_options import add_cluster_options, cluster_spec_from_args, connect_from_args
from .common import UsageError

DESCRIPTION = """\
Time one full training step (forward, backprop, update) of one layer for every strategy on the
same cluster, interleaved A B C ... A B C ... over several repeats: uncoded, codenet (two code
shapes, also with one wrong block result per codeword to correct), replication r=2 and r=3, and
plain numpy in this process. Operands are resident on the workers, as a hidden layer's are.
Prints medians, ratios (vs uncoded on the same grid, vs numpy, vs replication r=3), the FLOP
ratio each strategy implies, where the step's time goes, memory per worker (coded blocks held,
temporaries of a step), how time grows with the width, and which performance targets are met at
the largest size."""


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated integers like 1024,2048, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{option} needs positive integers, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark a training step: codenet vs uncoded vs replication vs numpy",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--widths", default="1024,2048,4096", help="layer widths (square layers)")
    p.add_argument("--batches", default="64,256", help="batch sizes")
    p.add_argument("--grids", default="4,8", help="systematic block grids KxK to run every strategy on")
    p.add_argument("--parity", default="2x2", help="codenet parity block-rows x columns")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (medians reported)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_cluster_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import as_json, check_targets, default_configs, growth_markdown, run_benchmark, to_markdown
    from .common import parse_pair

    widths, batches, grids = (
        _ints(args.widths, "--widths"),
        _ints(args.batches, "--batches"),
        _ints(args.grids, "--grids"),
    )
    parity = parse_pair(args.parity, "--parity")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {args.repeats}")
    if any(g > w for g in grids for w in widths):
        raise UsageError(
            f"every grid in --grids must be at most every width in --widths ({args.grids} vs {args.widths})"
        )
    spec = cluster_spec_from_args(args)
    configs = default_configs(grids, parity)
    with connect_from_args(args, spec=spec) as client:
        print(f"dashboard: {client.dashboard_link}", file=sys.stderr)
        rows = run_benchmark(
            client,
            widths,
            batches,
            configs,
            args.repeats,
            args.dtype,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    if args.json:
        print(json.dumps(as_json(rows)))
        return 0
    print(to_markdown(rows))
    if len(widths) > 1:
        print(f"\nGrowth with the width (batch {max(batches)}):\n")
        print(growth_markdown(rows))
    width, batch = max(widths), max(batches)
    print(f"\nTargets at width {width}, batch {batch}, {args.dtype}:")
    for t in check_targets(rows, width, batch):
        print(f"  {'MET   ' if t['met'] else 'NOT MET'} {t['target']}: {t['config']} {t['value']} (limit {t['limit']})")
    return 0

"""``codenet-dask graph``: draw the task graph of one training step (for the README and for reviews)."""

from __future__ import annotations

import argparse
import sys

from ..codes import ProductCode
from ..errors import CodeParameterError
from .common import UsageError, check_output, parse_pair

DESCRIPTION = """\
Build a small network on a cluster, run ONE SGD step and draw the tasks it submitted, as the
scheduler saw them: one box per task group (default) or per task, coloured by step. Keys and
dependencies are recorded on the scheduler, so the drawing shows the graph that really ran."""

FORMATS = ("png", "svg", "pdf", "dot")


def register(sub: argparse._SubParsersAction) -> None:
    from ..strategies import STRATEGIES

    p = sub.add_parser(
        "graph",
        help="draw one training step's task graph with graphviz",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="image to write: .png, .svg, .pdf or .dot")
    p.add_argument(
        "--detail",
        choices=["groups", "tasks"],
        default="groups",
        help="one node per task group, or per task (clustered by key prefix)",
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="codenet")
    p.add_argument("--grid", default="2x2", help="block grid of every layer, KxK")
    p.add_argument("--parity", default="2x2", help="parity block-rows x columns (codenet)")
    p.add_argument("--replicas", type=int, default=3, help="copies per block (replication)")
    p.add_argument("--layers", default="16", help="hidden layer widths, comma separated")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dataset", choices=["mnist", "digits"], default="digits")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument("--workers", type=int, default=2, help="local worker processes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cluster import connect
    from ..observe.taskgraph import render, step_graph
    from ..training import TrainConfig

    out = check_output(args.out, "--out", FORMATS)
    kr, kc = parse_pair(args.grid, "--grid")
    if kr != kc or kr < 1:
        raise UsageError(f"--grid must be square (KxK, K >= 1) so layers chain, got {args.grid}")
    parity = parse_pair(args.parity, "--parity") if args.strategy == "codenet" else (0, 0)
    try:
        hidden = tuple(int(h) for h in args.layers.split(",") if h.strip())
        ProductCode(kr, kc, *parity)
    except ValueError:
        raise UsageError(f"--layers expects comma-separated widths like 16,8, got {args.layers!r}") from None
    except CodeParameterError as exc:
        raise UsageError(str(exc)) from None
    if args.batch_size < 1 or args.workers < 1 or (args.strategy == "replication" and args.replicas < 2):
        raise UsageError("--batch-size and --workers must be at least 1, --replicas at least 2")
    config = TrainConfig(
        strategy=args.strategy,
        hidden=hidden,
        grid=kr,
        parity=parity,
        replicas=args.replicas,
        batch_size=args.batch_size,
        faults="none",
    )
    with connect(args.scheduler, args.workers) as client:
        graph = step_graph(client, config, args.dataset)
    tasks = len(graph.dependencies) - len(graph.scattered)
    shape = f"{args.strategy} {kr}x{kr}" + (f" + {parity[0]}x{parity[1]}" if args.strategy == "codenet" else "")
    title = f"One SGD step: {tasks} tasks ({shape}, hidden {args.layers}, batch {args.batch_size})"
    render(graph, out, args.detail, title)  # a GraphError (e.g. no dot program) exits 1 with its message
    groups = len({graph.groups[k] for k in graph.dependencies if k not in graph.scattered})
    print(f"{out}: {tasks} tasks in {groups} task groups", file=sys.stderr)
    return 0

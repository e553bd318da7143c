"""``codenet-dask train``: train an MLP of coded layers on unreliable workers."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..codes import ProductCode
from ..errors import CodeParameterError, DataError, FaultSpecError
from ..faults import parse_fault_spec
from .cluster_options import add_cluster_options, cluster_spec_from_args, connect_from_args
from .common import UsageError, check_output, parse_pair

DESCRIPTION = """\
Train a multi-layer perceptron (ReLU hidden layers, softmax cross-entropy) whose every layer is
encoded over the Dask workers (codenet), or kept uncoded or replicated for comparison, while a
seeded injector corrupts the workers' results. Uncorrectable products are recomputed; if that
fails the run rolls back to the last checkpoint in the store. Prints progress, the dashboard link
and a final table; --json prints one JSON object on stdout instead."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..strategies import STRATEGIES
    from ..training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train an MLP of coded layers under soft errors",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--strategy", choices=STRATEGIES, default=d.strategy)
    p.add_argument("--grid", default=f"{d.grid}x{d.grid}", help="block grid of every layer, KxK")
    p.add_argument("--parity", default=f"{d.parity[0]}x{d.parity[1]}", help="parity block-rows x columns (codenet)")
    p.add_argument("--replicas", type=int, default=d.replicas, help="copies per block (replication)")
    p.add_argument("--layers", default=",".join(map(str, d.hidden)), help="hidden layer widths, comma separated")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (decays by --lr-decay per epoch)")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay)
    p.add_argument("--dtype", choices=["float64", "float32"], default=d.dtype)
    p.add_argument("--faults", default=d.faults, help="fault spec MODEL:RATE[:opt=val],... or none")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    p.add_argument("--data-dir", default=None, help="folder with MNIST IDX files (instead of the bundled subset)")
    p.add_argument("--store", default=None, help="new folder for the checkpoint store (default: a temporary one)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--scrub-every", type=int, default=d.scrub_every, help="steps between scrubs (codenet)")
    p.add_argument(
        "--report",
        default=None,
        metavar="FILE.html",
        help="write a Dask performance report of the run (task stream, profiles, bandwidth) to FILE.html",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_cluster_options(p)
    p.set_defaults(run=run)


def config_from(args: argparse.Namespace):
    """A validated TrainConfig, or a UsageError naming the bad option."""
    from ..training import TrainConfig

    for name in ("epochs", "batch_size", "checkpoint_every", "scrub_every"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if not 0 < args.lr_decay <= 1:
        raise UsageError(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.strategy == "replication" and args.replicas < 2:
        raise UsageError(f"--replicas must be at least 2, got {args.replicas}")
    kr, kc = parse_pair(args.grid, "--grid")
    if kr != kc or kr < 1:
        raise UsageError(f"--grid must be square (KxK, K >= 1) so layers chain, got {args.grid}")
    parity = parse_pair(args.parity, "--parity") if args.strategy == "codenet" else (0, 0)
    try:
        hidden = tuple(int(h) for h in args.layers.split(",") if h.strip()) if args.layers else ()
    except ValueError:
        raise UsageError(f"--layers expects comma-separated widths like 128,64, got {args.layers!r}") from None
    if any(h < kr for h in hidden):
        raise UsageError(f"every hidden width must be at least the grid size {kr}, got {args.layers}")
    try:
        ProductCode(kr, kc, *parity)
        parse_fault_spec(args.faults)
    except (CodeParameterError, FaultSpecError) as exc:
        raise UsageError(str(exc)) from None
    if args.store and Path(args.store).exists():
        raise UsageError(f"--store {args.store} already exists; give a new folder (nothing was written)")
    return TrainConfig(
        strategy=args.strategy,
        hidden=hidden,
        grid=kr,
        parity=parity,
        replicas=args.replicas,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        dtype=args.dtype,
        faults=args.faults,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        scrub_every=args.scrub_every,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    report = check_output(args.report, "--report", ("html",)) if args.report else None
    spec = cluster_spec_from_args(args)  # every cluster check before any data is read or job submitted
    from distributed import performance_report

    from ..cluster import workers_for_grid
    from ..data import load_dataset
    from ..observe import PAGE, DashboardPublisher, register
    from ..training import Trainer

    try:
        data = load_dataset(args.dataset, data_dir=args.data_dir, dtype=config.dtype, seed=config.seed)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    if data.classes < config.grid:
        raise UsageError(f"--grid {args.grid} is finer than the {data.classes} output classes")

    def progress(row: dict) -> None:
        if args.json:
            return
        line = f"\repoch {row['epoch']}/{config.epochs}  step {row['position']}/{row['of']}  loss {row['loss']:.4f}"
        if row["rollbacks"]:
            line += f"  rollbacks {row['rollbacks']}"
        if row["test_accuracy"] is not None:
            line += f"  test accuracy {row['test_accuracy']:.3f}\n"
        print(line, end="", file=sys.stderr, flush=True)

    needed = workers_for_grid(
        (config.grid, config.grid), config.parity, config.replicas if config.strategy == "replication" else 1
    )
    with connect_from_args(args, needed=needed, spec=spec) as client:
        register(client)  # the CodeNet page is there from the start (the Trainer would add it after encoding)
        print(
            f"dashboard: {client.dashboard_link}  (fault counters: {client.dashboard_link.rsplit('/', 1)[0]}/{PAGE})",
            file=sys.stderr,
        )
        trainer = Trainer(client, data, config, args.store)
        trainer.subscribers.append(DashboardPublisher(trainer, client))
        try:
            with performance_report(filename=str(report)) if report else contextlib.nullcontext():
                summary = trainer.run(progress)
        finally:
            trainer.close()
        if report:
            print(f"performance report: {report}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict()))
        return 0
    f = summary.faults
    rows = [
        ("network", f"{'-'.join(map(str, summary.layers))} on {summary.dataset}, {summary.strategy}"),
        ("epochs / steps", f"{summary.epochs} / {summary.iterations}"),
        ("test accuracy", f"{summary.test_accuracy:.4f}"),
        ("final loss", f"{summary.final_loss:.4f}"),
        ("faults injected", str(f["injected"])),
        ("  corrected", str(f["corrected"])),
        ("  recomputed", str(f["recomputed"])),
        ("  rolled back", f"{f['rolled_back']} ({f['rollbacks']} rollbacks)"),
        ("  benign", str(f["benign"])),
        ("  UNDETECTED", str(f["undetected"])),
        ("wall time", f"{summary.wall_seconds:.1f} s"),
        ("store", summary.store),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0

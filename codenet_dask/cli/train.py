"""``codenet-dask train``: train an MLP of coded layers on unreliable workers."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..codes import ProductCode
from ..errors import CodeParameterError, DataError, FaultSpecError
from ..faults import parse_fault_spec
from .cluster_options import add_cluster_options, cluster_spec_from_args
from .common import Given, GivenFalse, HelpFormatter, UsageError, check_output, parse_pair
from .train_run import (
    EXIT_COMPLETED,
    EXIT_DIVERGED,
    EXIT_GAVE_UP,
    EXIT_UNDETECTED,
    parse_widths,
    resolve_layers,
    train_and_report,
)

DESCRIPTION = """\
Train a multi-layer perceptron (ReLU hidden layers, softmax cross-entropy) whose every layer is
encoded over the Dask workers (codenet), or kept uncoded or replicated for comparison, while a
seeded injector corrupts the workers' results. Uncorrectable products are recomputed; if that
fails the run rolls back to the last checkpoint in the store. Prints progress (stderr), the
dashboard link and a final table; --json prints one JSON object on stdout instead."""

#: Exit codes of ``train`` (also in the README); usage errors exit 2, other failures 1.

EPILOG = f"""\
--layers: either the hidden widths only (128,64 on MNIST builds 784-128-64-10), or the full
  IN,...,OUT spec whose ends are the data's feature and class counts (784,128,64,10: the same
  network). A list that starts with the feature count or ends with the class count without
  matching both ends is refused (ambiguous: 784,64 would otherwise build 784-784-64-10).

exit codes (the summary, and with --json the JSON object, are printed in every case):
  {EXIT_COMPLETED}  completed, and the ledger counts no undetected fault
  {EXIT_UNDETECTED}  completed, but the ledger counts undetected faults (faults.undetected > 0)
  {EXIT_DIVERGED}  diverged: NaN/Inf reached the weights or the loss (status "diverged")
  {EXIT_GAVE_UP}  gave up after too many rollbacks (status "gave-up")
  2  usage error (one line on stderr; nothing written)
  1  any other failure (a clear message on stderr)"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..strategies import STRATEGIES
    from ..training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train an MLP of coded layers under soft errors (or --resume one)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.set_defaults(given=frozenset())
    # Options a resumed run takes from its store (Given records which ones were typed, so that
    # --resume can refuse a change instead of ignoring it).
    run = p.add_argument_group("the run (with --resume: taken from the store; a different value exits 2)")
    run.add_argument("--strategy", choices=STRATEGIES, default=d.strategy, action=Given)
    run.add_argument("--grid", default=f"{d.grid}x{d.grid}", action=Given, help="block grid of every layer, KxK")
    run.add_argument(
        "--parity", default=f"{d.parity[0]}x{d.parity[1]}", action=Given, help="parity block-rows x columns (codenet)"
    )
    run.add_argument("--replicas", type=int, default=d.replicas, action=Given, help="copies per block (replication)")
    run.add_argument(
        "--layers",
        default=",".join(map(str, d.hidden)),
        action=Given,
        help="hidden widths (128,64) or the full IN,...,OUT spec (784,128,64,10); see below",
    )
    run.add_argument("--epochs", type=int, default=d.epochs, action=Given)
    run.add_argument("--batch-size", type=int, default=d.batch_size, action=Given)
    run.add_argument(
        "--lr", type=float, default=d.lr, action=Given, help="learning rate (decays by --lr-decay per epoch)"
    )
    run.add_argument("--lr-decay", type=float, default=d.lr_decay, action=Given)
    run.add_argument("--dtype", choices=["float64", "float32"], default=d.dtype, action=Given)
    run.add_argument("--faults", default=d.faults, action=Given, help="fault spec MODEL:RATE[:opt=val],... or none")
    run.add_argument("--seed", type=int, default=d.seed, action=Given)
    run.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, action=Given, help="steps between checkpoints"
    )
    run.add_argument(
        "--scrub-every", type=int, default=d.scrub_every, action=Given, help="steps between scrubs (codenet)"
    )
    run.add_argument(
        "--no-judge",
        dest="judge",
        action=GivenFalse,
        help="do not judge accepted results against a fault-free higher-precision shadow (saves its time and "
        "the shadow weights in every checkpoint; 'undetected' then comes from the system's own bookkeeping)",
    )
    data = p.add_argument_group("data (with --resume: taken from the store)")
    data.add_argument(
        "--dataset", choices=["mnist", "digits"], default="mnist", action=Given, help="a bundled data set"
    )
    data.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        action=Given,
        help="your own data instead: a .npz file (arrays X (samples, features) and y (integer labels)), a NetCDF "
        "file or Zarr data set with variables X and y (Zarr is streamed from disk batch by batch), or a folder "
        "of MNIST IDX files",
    )
    data.add_argument("--x-var", default="X", action=Given, help="name of the features variable in --data")
    data.add_argument("--y-var", default="y", action=Given, help="name of the labels variable in --data")
    data.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        action=Given,
        help="share of the samples held out for testing, by a seeded stratified split (not for IDX files, "
        "which have their own)",
    )
    data.add_argument("--data-dir", default=None, action=Given, help="a folder of MNIST IDX files (same as --data DIR)")
    store = p.add_argument_group("store")
    store.add_argument(
        "--store", default=None, action=Given, help="new folder for the checkpoint store (default: a temporary one)"
    )
    store.add_argument(
        "--resume",
        default=None,
        metavar="STORE",
        help="continue the run stored in STORE from its newest verified checkpoint (settings, data, seeds, "
        "counters and fault ledger come from the store)",
    )
    store.add_argument(
        "--keep-checkpoints",
        type=int,
        default=d.keep_checkpoints,
        metavar="N",
        action=Given,
        help="checkpoints the store keeps; older ones are expired and their chunks garbage-collected",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--report",
        default=None,
        metavar="FILE.html",
        help="write a Dask performance report of the run (task stream, profiles, bandwidth) to FILE.html",
    )
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    out.add_argument(
        "--quiet", action="store_true", help="no progress on stderr (it is off anyway when not a terminal)"
    )
    add_cluster_options(p)
    p.set_defaults(run=run_train)


def check_options(args: argparse.Namespace) -> None:
    """Every check of the training options that needs no data; a UsageError naming the bad one."""
    for name in ("epochs", "batch_size", "checkpoint_every", "scrub_every", "keep_checkpoints"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if not 0 < args.lr_decay <= 1:
        raise UsageError(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    if not 0 < args.test_fraction < 1:
        raise UsageError(f"--test-fraction must be strictly between 0 and 1, got {args.test_fraction}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.strategy == "replication" and args.replicas < 2:
        raise UsageError(f"--replicas must be at least 2, got {args.replicas}")
    kr, kc = parse_pair(args.grid, "--grid")
    if kr != kc or kr < 1:
        raise UsageError(f"--grid must be square (KxK, K >= 1) so layers chain, got {args.grid}")
    parse_widths(args.layers)
    try:
        ProductCode(kr, kc, *_parity(args))
        parse_fault_spec(args.faults)
    except (CodeParameterError, FaultSpecError) as exc:
        raise UsageError(str(exc)) from None
    if args.data and args.data_dir:
        raise UsageError("--data and --data-dir both name the data; give one (--data DIR reads IDX files too)")
    if (args.data or args.data_dir) and "dataset" in args.given:
        raise UsageError("--dataset names a bundled data set and --data your own; give one of them")
    if args.store and Path(args.store).exists():
        raise UsageError(f"--store {args.store} already exists; give a new folder (nothing was written)")


def _parity(args: argparse.Namespace) -> tuple[int, int]:
    return parse_pair(args.parity, "--parity") if args.strategy == "codenet" else (0, 0)


def load_data_from(args: argparse.Namespace):
    """The data set the options name (bundled, or --data), or a UsageError with the data's problem."""
    from ..data import load_dataset
    from ..userdata import data_kind, load_data

    path = args.data or args.data_dir
    try:
        if path is None:
            return load_dataset(args.dataset, dtype=args.dtype, seed=args.seed, test_fraction=args.test_fraction)
        if data_kind(path) == "idx" and "test_fraction" in args.given:
            raise UsageError(f"--test-fraction does not apply to {path}: IDX files carry their own train/test split")
        return load_data(
            path,
            x_var=args.x_var,
            y_var=args.y_var,
            test_fraction=args.test_fraction,
            seed=args.seed,
            dtype=args.dtype,
        )
    except DataError as exc:
        raise UsageError(str(exc)) from None


def config_from(args: argparse.Namespace, features: int, classes: int):
    """The TrainConfig the (checked) options ask for, for data of ``features`` and ``classes``."""
    from ..training import TrainConfig

    grid = parse_pair(args.grid, "--grid")[0]
    if classes < grid:
        raise UsageError(f"--grid {args.grid} is finer than the {classes} output classes")
    return TrainConfig(
        strategy=args.strategy,
        hidden=resolve_layers(parse_widths(args.layers), features, classes, grid),
        grid=grid,
        parity=_parity(args),
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
        keep_checkpoints=args.keep_checkpoints,
        judge=getattr(args, "judge", True),
    )


def run_train(args: argparse.Namespace) -> int:
    if args.resume:
        from .train_resume import run_resumed

        return run_resumed(args)
    check_options(args)
    report = check_output(args.report, "--report", ("html",)) if args.report else None
    spec = cluster_spec_from_args(args)  # every cluster check before any data is read or job submitted
    data = load_data_from(args)
    config = config_from(args, data.features, data.classes)

    def fresh(client):
        from ..training import Trainer

        return Trainer(client, data, config, args.store)

    return train_and_report(args, config, spec, report, fresh)

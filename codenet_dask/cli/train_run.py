"""What ``train`` and ``train --resume`` share: the ``--layers`` rule, running a trainer on the
cluster, the summary and the documented exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys

from .cluster_options import connect_from_args
from .common import UsageError
from .progress import TrainProgress

EXIT_COMPLETED = 0
EXIT_UNDETECTED = 3
EXIT_DIVERGED = 4
EXIT_GAVE_UP = 5


def parse_widths(text: str) -> tuple[int, ...]:
    """``"128,64"`` -> (128, 64); a UsageError for anything but positive integers."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip()) if text.strip() else ()
    except ValueError:
        raise UsageError(f"--layers expects comma-separated widths like 128,64, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise UsageError(f"--layers widths must be positive integers, got {text!r}")
    return widths


def resolve_layers(widths: tuple[int, ...], features: int, classes: int, grid: int) -> tuple[int, ...]:
    """The hidden widths ``--layers`` means for data with ``features`` inputs and ``classes`` outputs.

    A list whose ends are the feature and class counts is the full network; any other list is the
    hidden widths, unless it starts with the feature count or ends with the class count (a full spec
    with one end wrong, or hidden widths that read like one: refused, with what to write instead).
    """
    text = ",".join(map(str, widths))
    if len(widths) >= 2 and widths[0] == features and widths[-1] == classes:
        hidden = widths[1:-1]
    elif widths and widths[0] == features:
        raise UsageError(
            f"--layers {text} starts with the data's {features} features but does not end with its {classes} "
            f"classes: give the full spec {','.join(map(str, (*widths, classes)))} or the hidden widths only "
            f"({','.join(map(str, widths[1:])) or 'an empty list'})"
        )
    elif widths and widths[-1] == classes:
        raise UsageError(
            f"--layers {text} ends with the data's {classes} classes but does not start with its {features} "
            f"features: give the full spec {features},{text} (if {classes} is the output layer) or "
            f"{features},{text},{classes} (a last hidden layer of width {classes})"
        )
    else:
        hidden = widths
    if any(h < grid for h in hidden):
        raise UsageError(f"every hidden width must be at least the grid size {grid}, got --layers {text}")
    return hidden


def exit_code(summary) -> int:
    """The documented exit code of a finished run (see EPILOG)."""
    if summary.status == "diverged":
        return EXIT_DIVERGED
    if summary.status == "gave-up":
        return EXIT_GAVE_UP
    return EXIT_UNDETECTED if summary.faults["undetected"] else EXIT_COMPLETED


def train_and_report(args: argparse.Namespace, config, spec, report, make_trainer) -> int:
    """Connect to the cluster, run the trainer ``make_trainer(client)`` builds, print the summary."""
    from distributed import performance_report

    from ..cluster import workers_for_grid
    from ..observe import PAGE, DashboardPublisher, register
    from ..protocol.placement import one_bad_worker

    needed = workers_for_grid(
        (config.grid, config.grid), config.parity, config.replicas if config.strategy == "replication" else 1
    )
    with connect_from_args(args, needed=needed, spec=spec) as client:
        register(client)  # the CodeNet page is there from the start (the Trainer would add it after encoding)
        print(
            f"dashboard: {client.dashboard_link}  (fault counters: {client.dashboard_link.rsplit('/', 1)[0]}/{PAGE})",
            file=sys.stderr,
        )
        if config.strategy == "codenet":
            cost = one_bad_worker(len(client.nthreads()), (config.grid, config.grid), config.parity)
            if cost:
                print(f"placement: {cost}; more workers spread codewords wider", file=sys.stderr)
        trainer = make_trainer(client)
        trainer.subscribers.append(DashboardPublisher(trainer, client))
        progress = TrainProgress(config.epochs, trainer.steps_per_epoch, quiet=args.quiet)
        try:
            with performance_report(filename=str(report)) if report else contextlib.nullcontext():
                summary = trainer.run(progress)
        finally:
            progress.close()
            trainer.close()
        if report:
            print(f"performance report: {report}", file=sys.stderr)
    return report_summary(args, summary)


def report_summary(args: argparse.Namespace, summary) -> int:
    """The summary on stdout (table or JSON), the reason a run stopped on stderr; the exit code."""
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        print_summary(summary)
    if summary.reason:
        print(f"codenet-dask train: {summary.status}: {summary.reason}", file=sys.stderr)
    return exit_code(summary)


def print_summary(summary) -> None:
    """The final table (stdout)."""
    f = summary.faults
    status = summary.status if summary.status == "completed" else f"{summary.status.upper()} at step {summary.step}"
    rows = [
        ("network", f"{'-'.join(map(str, summary.layers))} on {summary.dataset}, {summary.strategy}"),
        ("status", status),
        ("epochs / steps", f"{summary.epochs} / {summary.iterations}"),
        ("test accuracy", _number(summary.test_accuracy)),
        ("final loss", _number(summary.final_loss)),
        ("faults injected", str(f["injected"])),
        ("  corrected", str(f["corrected"])),
        ("  recomputed", str(f["recomputed"])),
        ("  rolled back", f"{f['rolled_back']} ({f['rollbacks']} rollbacks)"),
        ("  benign", str(f["benign"])),
        ("  UNDETECTED", str(f["undetected"])),
        ("wall time", f"{summary.wall_seconds:.1f} s"),
        ("store", summary.store),
    ]
    if summary.resumed_from_step:
        rows.insert(3, ("resumed from step", str(summary.resumed_from_step)))
    for q in summary.quarantined:
        rows.insert(
            -2, ("quarantined", f"worker {q['worker']} at step {q['step']} ({q['wrong']} of {q['checked']} wrong)")
        )
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "-"

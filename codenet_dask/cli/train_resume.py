"""``codenet-dask train --resume STORE``: continue a stored run from its newest verified checkpoint.

Everything that decides the run's numbers comes from the store: network, code, data (loaded again
and fingerprinted), seeds, step, learning-rate schedule, every layer's operation counter, the
fault spec and seed, rollbacks and the fault ledger so far. An option that would change any of
them exits 2 naming the conflict; giving the same value is fine (a job script may repeat its
whole command line). Retention (``--keep-checkpoints``), output and cluster options may change,
except the number of workers (fault sites and check placement are keyed by worker).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import DataError
from ..faults import parse_fault_spec
from .common import UsageError, check_output, parse_pair
from .train_run import parse_widths, report_summary, resolve_layers, train_and_report


def _pair(values) -> str:
    return "x".join(map(str, values))


def find_conflicts(args: argparse.Namespace, config, state) -> list[str]:
    """The options given that differ from the stored run, each as ``--option value (the run has ...)``."""
    data = state.data
    wanted: dict[str, tuple[object, object, str]] = {  # dest -> (asked, stored, stored as shown)
        "strategy": (args.strategy, config.strategy, config.strategy),
        "replicas": (args.replicas, config.replicas, str(config.replicas)),
        "epochs": (args.epochs, config.epochs, str(config.epochs)),
        "batch_size": (args.batch_size, config.batch_size, str(config.batch_size)),
        "lr": (args.lr, config.lr, str(config.lr)),
        "lr_decay": (args.lr_decay, config.lr_decay, str(config.lr_decay)),
        "dtype": (args.dtype, config.dtype, config.dtype),
        "seed": (args.seed, config.seed, str(config.seed)),
        "checkpoint_every": (args.checkpoint_every, config.checkpoint_every, str(config.checkpoint_every)),
        "scrub_every": (args.scrub_every, config.scrub_every, str(config.scrub_every)),
        "judge": (getattr(args, "judge", True), config.judge, "the judge on"),
        "x_var": (args.x_var, data.get("x_var"), str(data.get("x_var"))),
        "y_var": (args.y_var, data.get("y_var"), str(data.get("y_var"))),
        "test_fraction": (args.test_fraction, data.get("test_fraction"), str(data.get("test_fraction"))),
    }
    given = args.given
    if "grid" in given:
        wanted["grid"] = (parse_pair(args.grid, "--grid")[0], config.grid, _pair((config.grid, config.grid)))
    if "parity" in given:
        wanted["parity"] = (parse_pair(args.parity, "--parity"), tuple(config.parity), _pair(config.parity))
    if "faults" in given:
        wanted["faults"] = (str(parse_fault_spec(args.faults)), str(parse_fault_spec(config.faults)), config.faults)
    if "layers" in given:
        asked: object = resolve_layers(parse_widths(args.layers), data["features"], data["classes"], config.grid)
        wanted["layers"] = (asked, tuple(config.hidden), ",".join(map(str, state.layers)))
    builtin = data.get("kind") == "builtin"
    if "dataset" in given:
        wanted["dataset"] = (args.dataset, data.get("dataset") if builtin else None, str(data.get("name")))
    for dest in ("data", "data_dir"):
        if dest in given:
            asked = str(Path(getattr(args, dest)).expanduser().absolute())
            wanted[dest] = (asked, data.get("path"), str(data.get("path") or data.get("name")))
    conflicts = [
        ("--no-judge" if dest == "judge" else f"--{dest.replace('_', '-')} {getattr(args, dest)}")
        + f" (the run has {shown})"
        for dest, (asked, stored, shown) in wanted.items()
        if dest in given and asked != stored
    ]
    if args.workers is not None and args.workers != state.workers:
        conflicts.append(f"--workers {args.workers} (the run has {state.workers}; fault sites are keyed by worker)")
    return conflicts


def run_resumed(args: argparse.Namespace) -> int:
    from ..resume import NotResumableError, find_resume_point
    from ..training import TrainConfig, Trainer, TrainSummary
    from ..userdata import reload_data
    from .cluster_options import cluster_spec_from_args

    if args.store:
        raise UsageError(f"--resume continues the run in {args.resume}; drop --store {args.store}")
    if not Path(args.resume).exists():
        raise UsageError(f"--resume {args.resume}: no such store; start the run with --store {args.resume}")
    if args.keep_checkpoints < 1:
        raise UsageError(f"--keep-checkpoints must be at least 1, got {args.keep_checkpoints}")
    report = check_output(args.report, "--report", ("html",)) if args.report else None
    try:
        point = find_resume_point(args.resume)
    except NotResumableError as exc:
        raise UsageError(str(exc)) from None
    for checkpoint, why in point.skipped:
        print(f"resume: checkpoint {checkpoint.id} (step {checkpoint.step}) does not verify: {why}", file=sys.stderr)
    for layer, blocks in point.repaired.items():
        print(f"resume: scrub rebuilt blocks {blocks} of layer {layer} on disk", file=sys.stderr)
    state = point.state
    config = TrainConfig.from_dict(state.config)
    conflicts = find_conflicts(args, config, state)
    if conflicts:
        raise UsageError(
            f"{'; '.join(conflicts)}: a resumed run keeps the settings it started with; drop "
            f"{'that option' if len(conflicts) == 1 else 'those options'}"
        )
    if "keep_checkpoints" in args.given:
        config = replace(config, keep_checkpoints=args.keep_checkpoints)
    if state.status != "running":
        print(f"{point.store}: the run {state.status} at step {state.step}; nothing to resume", file=sys.stderr)
        return report_summary(args, TrainSummary.from_state(state, point.ledger, 0.0, str(point.store)))
    print(f"resume: {point.store} from step {state.position} (checkpoint {point.checkpoint.id})", file=sys.stderr)
    if args.workers is None:
        args.workers = state.workers
    spec = cluster_spec_from_args(args)
    try:
        data = reload_data(state.data, config.dtype)
    except DataError as exc:
        raise UsageError(str(exc)) from None

    def resumed(client):
        if len(client.nthreads()) != state.workers:
            raise UsageError(
                f"the cluster has {len(client.nthreads())} workers; the run used {state.workers} "
                f"(fault sites are keyed by worker): give it {state.workers}"
            )
        trainer = Trainer(client, data, config, point.store)
        trainer.restore(state, point.ledger)
        return trainer

    return train_and_report(args, config, spec, report, resumed)

"""The cluster options every command that runs on workers shares (``train``, ``compare``, ``bench``...).

Two functions: :func:`add_cluster_options` puts them on a parser; :func:`connect_from_args` turns
the parsed arguments into :func:`codenet_dask.cluster.connect`. Unset options default from
``dask.config`` (``codenet.cluster.*``: the package's ``codenet.yaml``, the user's dask config,
``DASK_CODENET__CLUSTER__...`` variables). Every check runs before a job is submitted, and a bad
value is a UsageError (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

from distributed import Client

from .. import config
from ..cluster import HPC_KINDS, KINDS, ClusterSpec, connect
from ..errors import ClusterConfigError
from .common import UsageError

#: Options that only mean something for batch-system workers.
HPC_OPTIONS = ("cores", "memory", "walltime", "queue", "account", "job_extra", "cluster_timeout")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--cluster --scheduler --workers --cores --memory --walltime --queue --account --job-extra
    --cluster-timeout`` to ``parser``; their help shows the configured defaults."""
    conf = config.get("cluster", {}) or {}
    group = parser.add_argument_group(
        "cluster",
        "where the workers run; unset options come from dask config codenet.cluster.* "
        "(~/.config/dask/codenet.yaml, DASK_CODENET__CLUSTER__<KEY> variables)",
    )
    group.add_argument(
        "--cluster",
        default=None,
        metavar="{" + ",".join(KINDS) + "}",
        help=f"a LocalCluster, or worker jobs submitted with sbatch (slurm) or qsub (pbs) "
        f"(configured: {conf.get('kind', 'local')})",
    )
    group.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (not with slurm/pbs)")
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: local one per core; slurm/pbs what the code grid needs, or 2)",
    )
    group.add_argument(
        "--cores",
        type=int,
        default=None,
        help=f"cores per batch job, one single-threaded worker each (configured: {conf.get('cores')})",
    )
    group.add_argument(
        "--memory", default=None, help=f"memory per batch job, e.g. 4GiB (configured: {conf.get('memory')})"
    )
    group.add_argument(
        "--walltime", default=None, help=f"per batch job, HH:MM:SS or D-HH:MM:SS (configured: {conf.get('walltime')})"
    )
    group.add_argument("--queue", default=None, help=f"SLURM partition or PBS queue (configured: {conf.get('queue')})")
    group.add_argument("--account", default=None, help=f"account to charge (configured: {conf.get('account')})")
    group.add_argument(
        "--job-extra",
        action="append",
        default=None,
        metavar="DIRECTIVE",
        help="extra #SBATCH/#PBS directive, repeatable; write --job-extra=--qos=debug "
        f"(configured: {conf.get('job-extra')})",
    )
    group.add_argument(
        "--cluster-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"how long to wait for the workers to register (configured: {conf.get('wait-timeout')})",
    )


def cluster_spec_from_args(args: argparse.Namespace) -> ClusterSpec:
    """The validated ClusterSpec the options ask for, or a one-line UsageError; submits nothing."""
    explicit_hpc = args.cluster is not None and str(args.cluster).strip().lower() in HPC_KINDS
    if args.scheduler and explicit_hpc:
        raise UsageError(
            f"--scheduler and --cluster {args.cluster} exclude each other: connect to an existing "
            f"scheduler or start worker jobs, not both"
        )
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    try:
        spec = ClusterSpec.from_config(
            kind=args.cluster,
            workers=args.workers,
            cores=args.cores,
            memory=args.memory,
            walltime=args.walltime,
            queue=args.queue,
            account=args.account,
            job_extra=args.job_extra,
            wait_timeout=args.cluster_timeout,
        )
        if args.scheduler:  # an address wins over a configured batch system
            spec = ClusterSpec(kind="local", workers=spec.workers)
        spec = spec.validated()
    except ClusterConfigError as exc:
        raise UsageError(str(exc)) from None
    if not spec.is_hpc:
        given = [f"--{name.replace('_', '-')}" for name in HPC_OPTIONS if getattr(args, name) is not None]
        if given:
            where = "--scheduler" if args.scheduler else f"--cluster {spec.kind}"
            verb = "apply" if len(given) > 1 else "applies"
            raise UsageError(f"{', '.join(given)} only {verb} to --cluster slurm or pbs, not with {where}")
    return spec


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def connect_from_args(
    args: argparse.Namespace,
    needed: int | None = None,
    notify: Callable[[str], None] | None = _stderr,
    spec: ClusterSpec | None = None,
) -> ContextManager[Client]:
    """``connect(...)`` for the parsed options: a Client on the cluster they ask for, stopped on exit.

    ``needed`` is how many workers the code grid needs (the HPC default when --workers is unset);
    pass ``spec`` if :func:`cluster_spec_from_args` already ran. Progress lines go to ``notify``.
    A ClusterConfigError raised while starting (e.g. SLURM refusing the job script) reaches the
    CLI's ``main``, which reports it as a usage error.
    """
    spec = spec or cluster_spec_from_args(args)
    return connect(args.scheduler, spec=spec, needed=needed, notify=notify)

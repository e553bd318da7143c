"""Where the work runs: a LocalCluster sized for the machine, an existing scheduler, or worker jobs
on an HPC batch system (SLURM or PBS, through dask-jobqueue; see :mod:`codenet_dask.cluster.hpc`).

Every worker is a single-threaded process with single-threaded BLAS, wherever it runs: a coded block
is one logical node of the paper, and its task must not share cores with another block's.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster

from ..errors import ClusterConfigError
from .spec import (
    FALLBACK_WORKERS,
    HPC_KINDS,
    KINDS,
    SUBMIT_COMMAND,
    WORKER_ENV,
    ClusterError,
    ClusterSpec,
    default_workers,
    format_walltime,
    memory_bytes,
    resolve_workers,
    walltime_seconds,
    workers_for_grid,
)

__all__ = [
    "FALLBACK_WORKERS",
    "HPC_KINDS",
    "KINDS",
    "SUBMIT_COMMAND",
    "WORKER_ENV",
    "ClusterError",
    "ClusterSpec",
    "connect",
    "default_workers",
    "format_walltime",
    "local_cluster",
    "memory_bytes",
    "resolve_workers",
    "walltime_seconds",
    "workers_for_grid",
]


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    timeout: float = 10.0,
    *,
    spec: ClusterSpec | None = None,
    needed: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> Iterator[Client]:
    """A Client on ``scheduler`` (an address), or on a cluster it starts and always stops.

    ``spec`` picks the cluster (default: a LocalCluster); ``workers`` overrides its worker count and
    ``needed`` is what the code grid needs when nobody asked (HPC only). ``notify`` receives progress
    lines (submitted job ids, workers registered).
    """
    spec = spec or ClusterSpec(kind="local")
    if workers is not None:
        spec = dataclasses.replace(spec, workers=workers)
    if scheduler and spec.is_hpc:
        raise ClusterConfigError(
            f"--scheduler and --cluster {spec.kind} exclude each other: connect to an existing scheduler "
            f"or start worker jobs, not both"
        )
    spec = spec.validated()
    if scheduler:
        with _connect_scheduler(scheduler, timeout) as client:
            yield client
        return
    n = resolve_workers(spec, needed)
    if spec.is_hpc:
        from .hpc import jobqueue_client

        with jobqueue_client(spec, n, notify=notify) as client:
            yield client
        return
    with local_cluster(n) as cluster, Client(cluster) as client:
        yield client


def local_cluster(workers: int, **kwargs: Any) -> LocalCluster:
    """A LocalCluster of ``workers`` single-threaded worker processes started with
    :data:`WORKER_ENV` (``kwargs`` go to LocalCluster; the dashboard on a free port by default)."""
    options = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0", **kwargs}
    spawn = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}
    with dask.config.set(spawn):  # read by each nanny as it spawns its worker
        return LocalCluster(n_workers=workers, **options)


@contextlib.contextmanager
def _connect_scheduler(scheduler: str, timeout: float) -> Iterator[Client]:
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:.0f} s ({exc}); "
            f"check the address or omit --scheduler to start a local cluster"
        ) from None
    with client:
        yield client

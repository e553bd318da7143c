"""What cluster to run on, checked before anything starts: kind, workers, job resources, walltime."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from dask.utils import parse_bytes

from .. import config
from ..errors import ClusterConfigError, CodeNetError

KINDS: tuple[str, ...] = ("local", "slurm", "pbs")
HPC_KINDS: tuple[str, ...] = ("slurm", "pbs")
#: The command each batch system submits worker jobs with.
SUBMIT_COMMAND = {"slurm": "sbatch", "pbs": "qsub"}
#: The environment of every worker process, set before it starts: one BLAS thread (the worker runs
#: one task at a time), and temporaries up to 32 MiB from malloc's heap. (Dask's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold at 128 KiB: every
#: block-sized temporary of a kernel was then mapped and page-faulted afresh, and an update task of
#: the default network took 2.6x as long as in a plain process.)
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
}
#: Workers asked of a batch system when neither the user nor the code grid says how many.
FALLBACK_WORKERS = 2

_WALLTIME = re.compile(r"^(?:(?P<days>\d+)-(?P<dh>\d{1,2})|(?P<hours>\d+)):(?P<minutes>[0-5]\d):(?P<seconds>[0-5]\d)$")


class ClusterError(CodeNetError, RuntimeError):
    """The scheduler could not be reached or the cluster could not be started."""


def default_workers() -> int:
    """One single-threaded worker process per core (BLAS inside each stays single-threaded)."""
    return max(1, os.cpu_count() or 1)


def walltime_seconds(text: str) -> int:
    """``"HH:MM:SS"`` or ``"D-HH:MM:SS"`` -> seconds; a ClusterConfigError for anything else."""
    match = _WALLTIME.match(str(text).strip())
    if not match or (match["dh"] is not None and int(match["dh"]) > 23):
        raise ClusterConfigError(
            f"walltime {text!r} is not HH:MM:SS or D-HH:MM:SS; give e.g. --walltime 01:30:00 or 2-00:00:00"
        )
    hours = int(match["hours"]) if match["hours"] is not None else int(match["days"]) * 24 + int(match["dh"])
    seconds = hours * 3600 + int(match["minutes"]) * 60 + int(match["seconds"])
    if seconds <= 0:
        raise ClusterConfigError(f"walltime {text!r} is zero; give the time a worker job may run, e.g. 01:00:00")
    return seconds


def format_walltime(seconds: int) -> str:
    """Seconds -> ``HH:MM:SS`` (hours may exceed 24), which both SLURM and PBS accept."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def memory_bytes(text: str) -> int:
    """``"4GiB"``, ``"500 MB"``... -> bytes (dask.utils.parse_bytes); a ClusterConfigError otherwise."""
    try:
        value = parse_bytes(text)
    except (ValueError, TypeError):
        raise ClusterConfigError(f"memory {text!r} is not a size; give e.g. --memory 4GiB or --memory 500MB") from None
    if value <= 0:
        raise ClusterConfigError(f"memory {text!r} must be more than 0 bytes, e.g. --memory 4GiB")
    return value


@dataclass(frozen=True)
class ClusterSpec:
    """What cluster to run on. Unset fields come from ``dask.config`` (``codenet.cluster.*``)."""

    kind: str = "local"
    workers: int | None = None
    cores: int = 1
    memory: str = "4GiB"
    walltime: str = "01:00:00"
    queue: str | None = None
    account: str | None = None
    job_extra: tuple[str, ...] = ()
    python: str | None = None
    interface: str | None = None
    log_directory: str | None = None
    death_timeout: float = 60.0
    wait_timeout: float = 300.0
    #: Extra shell lines each worker job runs before starting its worker (after codenet's own).
    prologue: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(cls, **overrides) -> ClusterSpec:
        """The ``codenet.cluster`` config, with every override that is not None applied on top."""
        conf = config.get("cluster", {}) or {}
        values: dict[str, Any]  # None is dropped below
        values = {f.name: conf.get(f.name.replace("_", "-"), conf.get(f.name)) for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        values = {k: v for k, v in values.items() if v is not None}
        for name in ("job_extra", "prologue"):
            if name in values:
                value = values[name]
                values[name] = (value,) if isinstance(value, str) else tuple(value)
        return cls(**values)

    @property
    def is_hpc(self) -> bool:
        return self.kind in HPC_KINDS

    def validated(self, *, check_path: bool = True) -> ClusterSpec:
        """This spec checked and normalised (walltime as HH:MM:SS), or a one-line ClusterConfigError.

        Everything here is checked before any job is submitted; ``check_path`` also requires the
        batch system's submit command (``sbatch``/``qsub``) on PATH.
        """
        kind = str(self.kind).strip().lower()
        if kind not in KINDS:
            raise ClusterConfigError(f"unknown cluster kind {self.kind!r}; use --cluster local, slurm or pbs")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ClusterConfigError(f"workers must be a positive integer, got {self.workers!r}")
        if kind == "local":
            return dataclasses.replace(self, kind=kind)
        if not isinstance(self.cores, int) or self.cores < 1:
            raise ClusterConfigError(f"cores per job must be a positive integer, got {self.cores!r} (--cores)")
        walltime = format_walltime(walltime_seconds(self.walltime))
        per_worker = memory_bytes(self.memory) / self.cores
        if per_worker < 2**27:
            raise ClusterConfigError(
                f"memory {self.memory!r} leaves {per_worker / 2**20:.0f} MiB per worker process "
                f"({self.cores} per job); give at least 128MiB per core with --memory"
            )
        for name in ("wait_timeout", "death_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise ClusterConfigError(
                    f"{name.replace('_', '-')} must be a positive number of seconds, got {value!r}"
                )
        if any(not str(d).strip() for d in self.job_extra):
            raise ClusterConfigError("--job-extra got an empty directive; give e.g. --job-extra=--qos=debug")
        if check_path:
            command = SUBMIT_COMMAND[kind]
            if shutil.which(command) is None:
                raise ClusterConfigError(
                    f"{command} not found on PATH: --cluster {kind} submits worker jobs with {command}; run on a "
                    f"{kind.upper()} login node or add its bin directory to PATH"
                )
        return dataclasses.replace(self, kind=kind, walltime=walltime)


def resolve_workers(spec: ClusterSpec, needed: int | None = None) -> int:
    """How many workers to start: asked > what the code grid needs > one per core (local) or 2 (HPC)."""
    if spec.workers:
        return spec.workers
    if spec.is_hpc:
        return needed or FALLBACK_WORKERS
    return default_workers()


def workers_for_grid(grid: tuple[int, int], parity: tuple[int, int] = (0, 0), replicas: int = 1) -> int:
    """Logical nodes of one layer: a worker per coded block (the paper's setting), per copy if replicated."""
    return (grid[0] + parity[0]) * (grid[1] + parity[1]) * max(1, replicas)

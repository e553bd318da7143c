"""Dask workers as SLURM or PBS batch jobs (dask-jobqueue): submit, wait, and always cancel.

Every worker job runs single-threaded worker processes (one per core it books, BLAS at one thread)
with the Python and the ``codenet_dask`` of the process that submits it, so a checkout under test
is the code the workers run. The jobs carry one random name per cluster, which is how the final
clean-up finds them all (even one whose submission raced with a Ctrl-C) and never anyone else's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from distributed import Client

from ..errors import ClusterConfigError
from .spec import WORKER_ENV, ClusterError, ClusterSpec

logger = logging.getLogger(__name__)

#: Seconds the clean-up waits for cancelled jobs to leave the queue.
DRAIN_SECONDS = 30.0


def checkout_root() -> str:
    """The folder ``codenet_dask`` was imported from: worker jobs put it first on PYTHONPATH."""
    return str(Path(__file__).resolve().parent.parent)


def job_prologue(spec: ClusterSpec) -> list[str]:
    """Shell lines a worker job runs before its worker: the worker environment, this codenet_dask."""
    lines = ["export " + " ".join(f"{k}={v}" for k, v in WORKER_ENV.items())]
    root = checkout_root()
    if root not in site.getsitepackages():
        lines.append(f"export PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}")
    return lines + list(spec.prologue)


def job_kwargs(spec: ClusterSpec, job_name: str) -> dict:
    """Keyword arguments of ``SLURMCluster``/``PBSCluster`` for ``spec`` (already validated)."""
    log_dir = os.path.expanduser(spec.log_directory) if spec.log_directory else None
    return {
        "cores": spec.cores,
        "processes": spec.cores,  # one single-threaded worker process per booked core
        "memory": spec.memory,
        "walltime": spec.walltime,
        "queue": spec.queue,
        "account": spec.account,
        "job_extra_directives": list(spec.job_extra),
        "job_script_prologue": job_prologue(spec),
        "python": spec.python or sys.executable,
        "job_name": job_name,
        "log_directory": log_dir,
        "death_timeout": spec.death_timeout,  # a worker whose client died ends its job by itself
        "interface": spec.interface,
        "scheduler_options": {"dashboard_address": ":0"},
    }


def _cluster_class(kind: str):
    """SLURMCluster or PBSCluster. Importing dask_jobqueue (0.9.0, its runner module) replaces the
    process's SIGINT handler with ``sys.exit()``, which would make Ctrl-C exit 0 as if the run had
    succeeded; the handler in place before the import is put back."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterConfigError(
            f"--cluster {kind} needs dask-jobqueue; install it with: pip install dask-jobqueue"
        ) from None
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGINT, previous)
    from distributed.core import Status

    base = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]

    class Job(base.job_cls):  # type: ignore[name-defined, misc]
        """dask-jobqueue 0.9.0's ``Job.close`` cancels the job but leaves its status ``running``, so
        closing a cluster with a job that never started (still pending) fails an assertion in
        distributed's ``SpecCluster._close`` half-way; this one records the close."""

        async def close(self) -> None:
            await super().close()
            self.status = Status.closed

    return type(base.__name__, (base,), {"job_cls": Job})


def job_ids(client: Client) -> list[str]:
    """Batch job ids of the worker jobs behind ``client`` (submitted so far, in worker order)."""
    jobs = getattr(getattr(client, "cluster", None), "workers", {}) or {}
    return sorted((str(job.job_id) for job in jobs.values() if getattr(job, "job_id", None)), key=_job_order)


def _run(command: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


class BatchJobs:
    """The worker jobs of one cluster, found by their unique name: listed, described, cancelled."""

    def __init__(self, kind: str, name: str, log_directory: str | None) -> None:
        self.kind, self.name, self.log_directory = kind, name, log_directory
        self.seen: set[str] = set()

    def states(self) -> dict[str, str]:
        """Job id -> state (with the reason if pending) of our jobs still in the queue (SLURM only)."""
        if self.kind != "slurm":
            return dict.fromkeys(self.seen, "submitted")
        done = _run(["squeue", "-h", "-n", self.name, "-o", "%i %T %r"])
        states = {}
        for line in done.stdout.splitlines():
            job, state, reason = ([*line.split(None, 2), "", ""])[:3]
            states[job] = f"{state} ({reason})" if state == "PENDING" and reason else state
        return states

    def log_of(self, job: str) -> str:
        if not self.log_directory:
            return "the batch system's default output file"
        return os.path.join(self.log_directory, f"{self.name}-{job}.err")

    def cancel_leftovers(self) -> list[str]:
        """Cancel every job of ours still queued or running, wait until the queue shows none; returns them."""
        if self.kind == "slurm":
            # Jobs dask-jobqueue already cancelled linger as COMPLETING for a moment: not leftovers.
            left = [job for job, state in self.states().items() if not state.startswith("COMPLETING")]
            if left:
                user = _user()
                _run(["scancel", "--name", self.name, *(["--user", user] if user else [])])
            deadline = time.monotonic() + DRAIN_SECONDS
            while self.states() and time.monotonic() < deadline:
                time.sleep(0.3)
            if self.states():
                logger.warning(
                    "SLURM jobs %s (name %s) still listed by squeue after scancel", ", ".join(self.states()), self.name
                )
            return left
        if self.seen:  # PBS: qdel by id (already-finished jobs make qdel complain; that is fine)
            _run(["qdel", *sorted(self.seen)])
        return sorted(self.seen)


def _user() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER")


def preflight_slurm(job_script: str) -> None:
    """``sbatch --test-only`` the worker job script: SLURM judges queue, account and resources, no job runs."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="codenet-job-") as f:
        f.write(job_script)
        f.flush()
        try:
            done = _run(["sbatch", "--test-only", f.name])
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterConfigError(f"sbatch --test-only did not run ({exc}); is SLURM reachable from here?") from None
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout).split()) or f"exit code {done.returncode}"
        raise ClusterConfigError(
            f"SLURM refuses the worker job ({reason}); check --queue, --account, --cores, --memory, "
            f"--walltime and --job-extra (nothing was submitted)"
        )


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) while inside, so ``finally`` clean-up cancels our jobs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; let the clean-up finish
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_workers(
    client: Client, cluster, n: int, spec: ClusterSpec, jobs: BatchJobs, notify: Callable[[str], None]
) -> float:
    """Block until ``n`` workers registered; a ClusterError naming the cause otherwise. Returns seconds."""
    start = time.monotonic()
    deadline = start + spec.wait_timeout
    submit = "sbatch" if spec.kind == "slurm" else "qsub"
    announced = False
    while True:
        registered = len(client.nthreads())
        if registered >= n:
            return time.monotonic() - start
        submitted = dict(cluster.workers)  # filled once every submission of this scale returned
        failed = [name for name, job in submitted.items() if not getattr(job, "job_id", None)]
        if failed:
            raise ClusterError(
                f"{submit} failed for {len(failed)} of {len(submitted)} worker jobs (its error is logged above); "
                f"check the {spec.kind.upper()} settings (--queue, --account, --job-extra)"
            )
        ids = job_ids(client)
        jobs.seen.update(ids)
        if ids and not announced:
            announced = True
            notify(f"{spec.kind}: submitted worker jobs {', '.join(ids)} with {submit} (job name {jobs.name})")
        if spec.kind == "slurm" and ids:
            queued = jobs.states()
            gone = [i for i in ids if i not in queued]
            if gone and len(client.nthreads()) < n:
                raise ClusterError(
                    f"worker job {gone[0]} ended before its worker registered; see {jobs.log_of(gone[0])}"
                )
        if time.monotonic() > deadline:
            states = jobs.states()
            listing = ", ".join(f"{i} {states.get(i, 'gone')}" for i in ids) or "none submitted"
            raise ClusterError(
                f"only {registered} of {n} workers registered within {spec.wait_timeout:g} s (jobs: {listing}); "
                f"ask fewer with --workers, wait longer with --cluster-timeout, or check the queue"
            )
        time.sleep(0.25)


@contextlib.contextmanager
def jobqueue_client(spec: ClusterSpec, n: int, notify: Callable[[str], None] | None = None) -> Iterator[Client]:
    """A Client on ``n`` workers in SLURM/PBS jobs; on exit (success, error, Ctrl-C, SIGTERM) no job stays."""
    notify = notify or logger.info
    cls = _cluster_class(spec.kind)
    name = f"codenet-{secrets.token_hex(3)}"
    kwargs = job_kwargs(spec, name)
    jobs = BatchJobs(spec.kind, name, kwargs["log_directory"])
    cluster = client = None
    with sigterm_exits():
        try:
            try:
                cluster = cls(**kwargs)
            except ValueError as exc:
                reason = " ".join(str(exc).split())
                raise ClusterConfigError(f"dask-jobqueue refuses the job settings: {reason}") from None
            if spec.kind == "slurm":
                preflight_slurm(cluster.job_script())
            cluster.scale(n=n)
            client = Client(cluster)
            seconds = wait_for_workers(client, cluster, n, spec, jobs, notify)
            jobs.seen.update(job_ids(client))
            notify(f"{spec.kind}: {n} workers registered in {seconds:.1f} s from jobs {', '.join(job_ids(client))}")
            yield client
        finally:
            _shutdown(client, cluster, jobs, notify)


def _shutdown(client: Client | None, cluster, jobs: BatchJobs, notify: Callable[[str], None]) -> None:
    """Close the client and the cluster (dask-jobqueue cancels its jobs), then cancel any job left.

    A second Ctrl-C during the graceful part skips straight to cancelling by job name.
    """
    if client is not None:
        jobs.seen.update(job_ids(client))
    steps = [("client", client and client.close), ("cluster", cluster and (lambda: cluster.close(timeout=20)))]
    for what, step in steps:
        if not step:
            continue
        try:
            step()
        except (Exception, KeyboardInterrupt) as exc:  # keep going: the jobs must still be cancelled
            logger.warning("closing the %s: %s: %s", what, type(exc).__name__, exc)
    try:
        left = jobs.cancel_leftovers()
    except (Exception, KeyboardInterrupt) as exc:
        notify(f"{jobs.kind}: could not cancel leftover jobs named {jobs.name} ({exc}); check the queue")
        return
    if left:
        notify(f"{jobs.kind}: cancelled leftover worker jobs {', '.join(left)}")
    if jobs.seen:
        drained = "; none left in the queue" if jobs.kind == "slurm" and not jobs.states() else ""
        notify(f"{jobs.kind}: worker jobs {', '.join(sorted(jobs.seen, key=_job_order))} closed{drained}")


def _job_order(job: str) -> tuple[int, str]:
    digits = "".join(c for c in job if c.isdigit())
    return (int(digits) if digits else 0, job)

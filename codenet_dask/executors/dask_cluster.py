"""The Dask executor: plans become graphs whose tasks are pinned to their workers.

One graph layer per worker, annotated ``workers=[w], allow_other_workers=False`` (annotations on one
big layer would be lost to graph optimisation; per-layer ones on a graph sent with ``Client.get``
are kept), so coded blocks are never stolen away from their data. Every wait polls with a short
timeout: a worker the executor put work on that leaves turns into WorkerLostError, a wait past its
deadline into StepTimeoutError (naming what was pending), never a hang.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from distributed import Client, Future, wait

from ..errors import StepTimeoutError, WorkerLostError
from ..faults import InjectedFault, collect_injected
from ..protocol.types import Key, Plan, Ref, substitute
from .base import Deadlines

#: Seconds between checks for lost workers while waiting.
POLL = 1.0
#: Seconds the scheduler gets to close a retired (quarantined) worker.
RETIRE_TIMEOUT = 30.0
logger = logging.getLogger(__name__)


def _worker_name(dask_worker: Any) -> str:
    return str(dask_worker.name)


def natural(name: str) -> tuple:
    """Sort key putting worker names 2 before 10."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def graph_of(plan: Plan) -> dict[Key, tuple]:
    """The plan's tasks as a plain Dask graph (Refs become keys; handles and foreign keys stay)."""
    return {task.key: (task.fn, *substitute(task.args, lambda ref: ref.key)) for task in plan.tasks.values()}


class DaskExecutor:
    """Runs plans on ``client``'s workers; see the module docstring."""

    def __init__(self, client: Client, deadlines: Deadlines | None = None) -> None:
        self.client = client
        self.deadlines = deadlines or Deadlines()
        self._names: dict[str, str] = {}
        self._used: set[str] = set()
        self._retired: set[str] = set()
        #: Requests the client made and waited for an answer to (scatters, gathers, questions to the
        #: scheduler): what a step's latency is made of, beside the tasks themselves. Submitting a
        #: graph and waiting for its futures (the scheduler pushes their states) are not counted.
        self.round_trips = 0

    # -- workers ------------------------------------------------------------------------------
    def workers(self) -> list[str]:
        # nthreads() asks the scheduler; scheduler_info() may answer from a cache without workers.
        self.round_trips += 1
        addresses = [a for a in self.client.nthreads() if a not in self._retired]
        if set(addresses) - set(self._names):
            self.round_trips += 1
            self._names.update(self.client.run(_worker_name, workers=addresses))
        return sorted(addresses, key=lambda a: natural(self._names[a]))

    def name(self, worker: str) -> str:
        if worker not in self._names:
            self.workers()
        return self._names[worker]

    def wait_for_workers(self, count: int, timeout: float) -> None:
        self.client.wait_for_workers(count + len(self._retired & set(self.client.nthreads())), timeout=timeout)

    def retire(self, worker: str) -> None:
        """Leave ``worker`` out from now on and ask the scheduler to close it (its data is not
        moved: nothing it holds is read again). A scheduler that does not answer within
        ``RETIRE_TIMEOUT`` leaves it open, still unused."""
        self._retired.add(worker)
        self._used.discard(worker)
        try:
            self.client.sync(
                self.client.scheduler.retire_workers,
                workers=[worker],
                close_workers=True,
                remove=True,
                callback_timeout=RETIRE_TIMEOUT,
            )
        except (TimeoutError, OSError) as exc:
            logger.warning("worker %s is quarantined but could not be closed (%s); it stays unused", worker, exc)

    # -- running ------------------------------------------------------------------------------
    def run(self, plan: Plan, wanted: Sequence[Ref]) -> list[Future]:
        if not wanted:
            return []
        graph = graph_of(plan)
        by_worker: dict[str | None, dict[Key, tuple]] = {}
        for task in plan.tasks.values():
            by_worker.setdefault(task.worker, {})[task.key] = graph[task.key]
        layers: dict[str, MaterializedLayer] = {}
        deps: dict[str, set[str]] = {}
        token = uuid.uuid4().hex[:8]
        for i, (worker, tasks) in enumerate(by_worker.items()):
            annotations = None if worker is None else {"workers": [worker], "allow_other_workers": False}
            layers[f"codenet-{token}-{i}"] = MaterializedLayer(tasks, annotations=annotations)
            deps[f"codenet-{token}-{i}"] = set()
            if worker is not None:
                self._used.add(worker)
        return self.client.get(HighLevelGraph(layers, deps), [ref.key for ref in wanted], sync=False)

    def scatter(self, values: Sequence[Any], worker: str | None = None) -> list[Future]:
        if worker is not None:
            self._used.add(worker)
        self.round_trips += 1
        return self.client.scatter(
            list(values), workers=None if worker is None else [worker], hash=False, broadcast=False
        )

    def wait(self, handles: Sequence[Future], what: str) -> None:
        futures = list(handles)
        if not futures:
            return
        if all(f.done() for f in futures):  # known done already (a gather after a wait): no round trip
            self._raise_failures(futures)
            return
        start = time.perf_counter()
        deadline = self.deadlines.for_wait(what)
        while True:
            left = deadline - (time.perf_counter() - start)
            try:
                wait(futures, timeout=max(min(POLL, left), 0.01))
                break
            except TimeoutError:
                lost = sorted(self._used - set(self.client.nthreads()))
                if lost:
                    raise WorkerLostError(
                        f"worker(s) {', '.join(lost)} left the cluster during {what}; "
                        f"restore its blocks (from the code or the last checkpoint)"
                    ) from None
                if left <= 0:
                    pending = [str(f.key) for f in futures if not f.done()]
                    self.cancel(futures)
                    raise StepTimeoutError(
                        f"{what} passed its {deadline:.0f} s deadline with {len(pending)} task(s) pending "
                        f"({', '.join(pending[:4])}{', ...' if len(pending) > 4 else ''}); raise "
                        f"codenet.deadline.minimum/factor in dask config if such waits are expected"
                    ) from None
        self.deadlines.record(what, time.perf_counter() - start)
        self._raise_failures(futures)

    @staticmethod
    def _raise_failures(futures: Sequence[Future]) -> None:
        for f in futures:
            if f.status != "finished":
                f.result()  # a genuine failure (not a soft error): raise it as is

    def gather(self, handles: Sequence[Future], what: str) -> list[Any]:
        self.wait(handles, what)
        self.round_trips += 1
        return self.client.gather(list(handles))

    def holds(self, handles: Sequence[Future], kind: type) -> list[bool]:
        return [f.type is kind for f in handles]

    def cancel(self, handles: Sequence[Future]) -> None:
        self.client.cancel(list(handles))

    def collect_faults(self, run: str | None) -> list[InjectedFault]:
        return collect_injected(self.client, run)

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


__all__ = ["POLL", "DaskExecutor", "graph_of", "natural"]

"""The reference executor: a plan's tasks run one after another in this process.

Workers are names ("0", "1", ...) whose values live in :class:`Cell` handles; a task runs with its
worker set as the fault injector's current worker (``faults.context``) and BLAS on one thread, as
on a Dask worker, so a plan gives the same bits here as on a cluster. Values are shared between
the tasks of one worker; a shard (the one value a kernel writes to: ``update_shard`` updates its
blocks in place) is copied whenever it crosses to another worker, and every value is copied from
the client and back to it, as Dask's serialisation would. A key run twice is an error here (Dask
would silently reuse the first value). No Dask: this is what the tests and Monte Carlo
runs hold the Dask executor against, and what runs many thousands of seeded steps in CI time.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..blas import one_thread
from ..errors import WorkerLostError
from ..faults import InjectedFault
from ..faults import log as fault_log
from ..faults.context import WORKER
from ..protocol.types import Key, Plan, Ref


@dataclass(eq=False)
class Cell:
    """A value (or the error computing it raised) held on one simulated worker."""

    key: Key
    worker: str | None
    value: Any = None
    error: BaseException | None = None


def _crossed(value: Any) -> Any:
    """A value as another worker receives it: shards (dicts of blocks) copied, the rest (never
    written to by a kernel) as they are."""
    return copy.deepcopy(value) if isinstance(value, dict) else value


class LocalExecutor:
    """Runs plans in process over ``workers`` simulated workers; see the module docstring."""

    def __init__(self, workers: int | Sequence[str] = 2) -> None:
        names = [str(i) for i in range(workers)] if isinstance(workers, int) else [str(w) for w in workers]
        if not names:
            raise ValueError("a LocalExecutor needs at least one worker")
        self._workers = names
        self._lost: set[str] = set()
        self._keys: set[Key] = set()
        self._scattered = 0

    def workers(self) -> list[str]:
        return [w for w in self._workers if w not in self._lost]

    def name(self, worker: str) -> str:
        return worker

    def wait_for_workers(self, count: int, timeout: float) -> None:
        if len(self.workers()) < count:
            raise TimeoutError(f"only {len(self.workers())} of {count} workers (a LocalExecutor does not grow)")

    def lose(self, worker: str) -> None:
        """Simulate a worker leaving: every value it holds is gone."""
        self._lost.add(worker)

    def retire(self, worker: str) -> None:
        self.lose(worker)

    # -- running ------------------------------------------------------------------------------
    def run(self, plan: Plan, wanted: Sequence[Ref]) -> list[Cell]:
        cells: dict[Key, Cell] = {}
        with one_thread():
            for task in plan.tasks.values():
                if task.key in self._keys:
                    raise ValueError(f"task key {task.key!r} was run before: keys must never be reused")
                self._keys.add(task.key)
                cell = Cell(task.key, task.worker)
                cells[task.key] = cell
                try:
                    args = self._resolve(task.args, cells, task.worker)
                    if task.worker is not None and task.worker in self._lost:
                        raise WorkerLostError(f"worker {task.worker} left the cluster")
                    token = WORKER.set(task.worker)
                    try:
                        cell.value = task.fn(*args)
                    finally:
                        WORKER.reset(token)
                except BaseException as exc:
                    cell.error = exc
        return [cells[ref.key] for ref in wanted]

    def _resolve(self, args: Any, cells: dict[Key, Cell], worker: str | None) -> Any:
        """Arguments as the task on ``worker`` sees them: its own worker's values as they are,
        every other value (another worker's, the client's) a copy."""
        if isinstance(args, (Ref, Cell)):
            cell = cells[args.key] if isinstance(args, Ref) else args
            value = self._value(cell)
            return value if worker is not None and cell.worker == worker else _crossed(value)
        if isinstance(args, list):
            return [self._resolve(a, cells, worker) for a in args]
        if isinstance(args, tuple):
            return tuple(self._resolve(a, cells, worker) for a in args)
        return args  # a plan's literals are never written to (data goes in by scatter)

    def _value(self, cell: Cell) -> Any:
        if cell.worker is not None and cell.worker in self._lost:
            raise WorkerLostError(f"worker {cell.worker} holding {cell.key!r} left the cluster")
        if cell.error is not None:
            raise cell.error
        return cell.value

    def scatter(self, values: Sequence[Any], worker: str | None = None) -> list[Cell]:
        cells = []
        for value in values:
            self._scattered += 1
            cells.append(Cell(("scatter", self._scattered), worker, copy.deepcopy(value)))
        return cells

    def wait(self, handles: Sequence[Cell], what: str) -> None:
        for cell in handles:
            self._value(cell)

    def gather(self, handles: Sequence[Cell], what: str) -> list[Any]:
        return [copy.deepcopy(self._value(cell)) for cell in handles]

    def holds(self, handles: Sequence[Cell], kind: type) -> list[bool]:
        return [cell.error is None and isinstance(cell.value, kind) for cell in handles]

    def cancel(self, handles: Sequence[Cell]) -> None:
        return None

    def collect_faults(self, run: str | None) -> list[InjectedFault]:
        return fault_log.collect_injected(None, run)

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self._workers!r})"

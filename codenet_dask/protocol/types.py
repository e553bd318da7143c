"""A plan is plain data: tasks (a function, its arguments, the worker it must run on) under unique keys.

Planners (``protocol.plans``) build plans without touching a cluster or a disk; an executor
(``codenet_dask.executors``) runs them: the Dask one on a cluster, the in-process one for tests and
Monte Carlo runs, and the two are held against each other. Inside a task's arguments a
:class:`Ref` names the output of another task of the same plan, and may sit at the top level or in
(nested) lists; a *handle* an executor returned earlier (a value already on the cluster) may sit
anywhere the executor can find it (the same places).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

Key = Hashable


@dataclass(frozen=True)
class Ref:
    """The output of the task with ``key`` in the same plan."""

    key: Key


@dataclass(frozen=True)
class Task:
    """``fn(*args)`` on ``worker`` (None: anywhere); ``key`` names its output, once per executor."""

    key: Key
    fn: Callable[..., Any]
    args: tuple
    worker: str | None


@dataclass
class Plan:
    """Tasks in the order they may run (every Ref points to an earlier task)."""

    tasks: dict[Key, Task] = field(default_factory=dict)

    def add(self, key: Key, fn: Callable[..., Any], *args: Any, worker: str | None = None) -> Ref:
        """Plan ``fn(*args)`` on ``worker`` under ``key``; a key planned twice is a bug (Dask would
        silently reuse the first value, and a task could end up waiting on itself)."""
        if key in self.tasks:
            raise ValueError(f"task key {key!r} planned twice")
        for ref in refs_in(args):
            if ref.key not in self.tasks:
                raise ValueError(f"task {key!r} refers to {ref.key!r}, which is not planned before it")
        self.tasks[key] = Task(key, fn, args, worker)
        return Ref(key)

    def merge(self, other: Plan) -> Plan:
        """This plan followed by ``other``'s tasks."""
        for task in other.tasks.values():
            self.add(task.key, task.fn, *task.args, worker=task.worker)
        return self

    def __len__(self) -> int:
        return len(self.tasks)


def refs_in(args: Any) -> Iterator[Ref]:
    """Every Ref among ``args`` (top level and nested lists/tuples)."""
    if isinstance(args, Ref):
        yield args
    elif isinstance(args, (list, tuple)):
        for a in args:
            yield from refs_in(a)


def substitute(args: Any, value: Callable[[Ref], Any]) -> Any:
    """``args`` with every Ref (top level, nested lists and tuples) replaced by ``value(ref)``."""
    if isinstance(args, Ref):
        return value(args)
    if isinstance(args, list):
        return [substitute(a, value) for a in args]
    if isinstance(args, tuple):
        return tuple(substitute(a, value) for a in args)
    return args

"""What an executor does with a plan, whatever runs it (``protocol.types`` for plans).

An executor holds values on *workers* (the failure domains a fault spec and a placement name),
runs plans over them and hands back opaque *handles* to the values it holds. The layer facade
speaks only this interface, so the same protocol runs on a Dask cluster (``executors.dask``) and in
one process (``executors.local``, the reference the Dask one is held against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import config
from ..faults import InjectedFault
from ..protocol.types import Plan, Ref

Handle = Any  # what an executor returns for a value it holds (a Future, a local cell)


class Executor(Protocol):
    """Runs plans; see the module docstring."""

    def workers(self) -> list[str]:
        """The workers (ids a plan's tasks are pinned to), ordered by name: a stable order placement
        can build on."""
        ...

    def name(self, worker: str) -> str:
        """The worker's name, as a fault spec's ``workers=`` names it."""
        ...

    def run(self, plan: Plan, wanted: Sequence[Ref]) -> list[Handle]:
        """Start the plan; handles of the ``wanted`` outputs (the others are dropped when done)."""
        ...

    def scatter(self, values: Sequence[Any], worker: str | None = None) -> list[Handle]:
        """Put values on ``worker`` (None: anywhere), one handle each."""
        ...

    def wait(self, handles: Sequence[Handle], what: str) -> None:
        """Until every handle's value is there. Raises StepTimeoutError past the deadline for
        ``what`` (a kind of wait: its deadline follows how long such waits took before) and
        WorkerLostError when a worker leaves meanwhile; a task's own error is raised as is."""
        ...

    def gather(self, handles: Sequence[Handle], what: str) -> list[Any]:
        """The values (waits first, like :meth:`wait`)."""
        ...

    def holds(self, handles: Sequence[Handle], kind: type) -> list[bool]:
        """Whether each finished handle's value is a ``kind``, without fetching it."""
        ...

    def cancel(self, handles: Sequence[Handle]) -> None:
        """Give up on handles (after a deadline passed)."""
        ...

    def collect_faults(self, run: str | None) -> list[InjectedFault]:
        """The faults run ``run`` injected so far on any worker (removed from their logs)."""
        ...

    def wait_for_workers(self, count: int, timeout: float) -> None:
        """Until at least ``count`` workers are there (a lost worker's replacement may be starting)."""
        ...

    def retire(self, worker: str) -> None:
        """Stop using ``worker`` (quarantined): :meth:`workers` leaves it out from now on, and the
        cluster closes it where it can. What it holds is no longer read."""
        ...


@dataclass
class Deadlines:
    """How long a wait may take: ``max(minimum, factor x the slowest of the last waits of its kind)``.

    Defaults come from ``codenet.deadline`` in dask config; the first wait of a kind gets the
    minimum (imports, connections and warm-up make first steps slow).
    """

    minimum: float = field(default_factory=lambda: float(config.get("deadline.minimum", 120)))
    factor: float = field(default_factory=lambda: float(config.get("deadline.factor", 20)))
    history: int = 20
    _seen: dict[str, list[float]] = field(default_factory=dict)

    def for_wait(self, what: str) -> float:
        past = self._seen.get(what)
        return max(self.minimum, self.factor * max(past)) if past else self.minimum

    def record(self, what: str, seconds: float) -> None:
        past = self._seen.setdefault(what, [])
        past.append(seconds)
        del past[: -self.history]

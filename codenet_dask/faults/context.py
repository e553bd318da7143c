"""Which worker a task runs on, for executors that are not Dask (the in-process reference one).

A fault spec may name workers (``workers=1``); the injector asks :func:`injector.current_worker`,
which reads this variable first and a Dask worker's name second.
"""

from __future__ import annotations

from contextvars import ContextVar

WORKER: ContextVar[str | None] = ContextVar("codenet_dask_worker", default=None)

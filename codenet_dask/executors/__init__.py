"""Executors run plans (``codenet_dask.protocol``): on a Dask cluster, or in this process.

- :class:`DaskExecutor` — a ``distributed.Client``'s workers; tasks pinned where their blocks
  live; every wait has a deadline (``codenet.deadline`` in dask config).
- :class:`LocalExecutor` — the reference: named workers simulated in one process, tasks run in
  plan order, nothing to wait for. Tests and Monte Carlo runs hold the Dask executor against it.
"""

from typing import Any

from distributed import Client

from .base import Deadlines, Executor, Handle
from .dask_cluster import DaskExecutor
from .local import LocalExecutor


def as_executor(target: Any) -> Executor:
    """An executor for ``target``: an executor as is, a ``distributed.Client`` in a DaskExecutor."""
    if isinstance(target, (DaskExecutor, LocalExecutor)):
        return target
    if isinstance(target, Client):
        return DaskExecutor(target)
    raise TypeError(f"expected a distributed.Client or an executor, got {type(target).__name__}")


__all__ = ["DaskExecutor", "Deadlines", "Executor", "Handle", "LocalExecutor", "as_executor"]

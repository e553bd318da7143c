"""The injector's ground-truth log, kept in each process that runs tasks (workers, or the client).

Injection happens inside tasks on the workers; each injected fault is recorded here, in the
worker's process, under the id of the run whose hook injected it, and the run's driver drains its
own records from every worker (``collect_injected``). Two runs sharing a cluster therefore never see
each other's faults. Records are keyed by (site, attempt), so a task run twice is counted once.
"""

from __future__ import annotations

import threading
from typing import Any

from .records import InjectedFault

_LOCK = threading.Lock()
_LOG: dict[str, dict[tuple, InjectedFault]] = {}


def record(run: str, fault: InjectedFault) -> None:
    """Remember one injected fault of run ``run`` (called on the worker by the injector)."""
    with _LOCK:
        _LOG.setdefault(run, {})[(fault.site, fault.attempt)] = fault


def drain(run: str | None = None) -> list[InjectedFault]:
    """This process's records of ``run`` (None: of every run) since the last drain."""
    with _LOCK:
        runs = list(_LOG) if run is None else [run]
        faults = [f for r in runs for f in _LOG.pop(r, {}).values()]
    return faults


def collect_injected(client: Any | None = None, run: str | None = None) -> list[InjectedFault]:
    """Every fault run ``run`` (None: any run) injected so far, from this process and, given a Client,
    from all its workers; the records are removed from the logs."""
    found = {(f.site, f.attempt): f for f in drain(run)}
    if client is not None:
        for faults in client.run(drain, run).values():
            found.update({(f.site, f.attempt): f for f in faults})
    return sorted(found.values(), key=lambda f: (f.site.layer, f.site.op, f.site.step, f.site.block, f.attempt))

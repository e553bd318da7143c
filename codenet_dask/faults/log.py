"""The injector's ground-truth log, kept in each process that runs tasks (workers, or the client).

Injection happens inside tasks on the workers; each injected fault is recorded here, in the
worker's process, and the client drains every worker's log (``collect_injected``). Records are
keyed by (site, attempt), so a task Dask happens to run twice is counted once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .injector import InjectedFault

_LOCK = threading.Lock()
_LOG: dict[tuple, InjectedFault] = {}


def record(fault: InjectedFault) -> None:
    """Remember one injected fault (called on the worker by the injector)."""
    with _LOCK:
        _LOG[(fault.site, fault.attempt)] = fault


def drain() -> list[InjectedFault]:
    """This process's records since the last drain."""
    with _LOCK:
        faults = list(_LOG.values())
        _LOG.clear()
    return faults


def collect_injected(client: Any | None = None) -> list[InjectedFault]:
    """Every fault injected so far, from this process and, given a Client, from all its workers."""
    found = {(f.site, f.attempt): f for f in drain()}
    if client is not None:
        for faults in client.run(drain).values():
            found.update({(f.site, f.attempt): f for f in faults})
    return sorted(found.values(), key=lambda f: (f.site.layer, f.site.op, f.site.step, f.site.block, f.attempt))

"""One BLAS thread, for numpy work that shares the machine's cores with the workers (the reference
executor's simulated workers; the judge on a LocalCluster's client)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import ThreadpoolController

#: Found once: inspecting the loaded BLAS libraries costs ~0.3 ms, a limit on a known one ~2 us.
_CONTROLLER = ThreadpoolController()


def one_thread() -> AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread."""
    return _CONTROLLER.limit(limits=1, user_api="blas")

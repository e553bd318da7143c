"""Where the work runs: a LocalCluster sized for the machine, or an existing scheduler."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from distributed import Client, LocalCluster

from .errors import CodeNetError


class ClusterError(CodeNetError, RuntimeError):
    """The scheduler could not be reached or the cluster could not be started."""


def default_workers() -> int:
    """One single-threaded worker process per core (BLAS inside each stays single-threaded)."""
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, timeout: float = 10.0) -> Iterator[Client]:
    """A Client on ``scheduler`` (an address), or on a LocalCluster it starts and stops itself."""
    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {scheduler} within {timeout:.0f} s ({exc}); "
                f"check the address or omit --scheduler to start a local cluster"
            ) from None
        with client:
            yield client
        return
    n = workers or default_workers()
    with LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    ) as cluster, Client(cluster) as client:
        yield client

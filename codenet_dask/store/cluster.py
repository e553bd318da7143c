"""Put a checkpoint back on a running cluster: each coded block goes to the worker that owns it.

The checkpoint is read and verified (damaged blocks rebuilt) here, on the client, before any block
is shipped, so workers never start from a block the code does not vouch for.
"""

from __future__ import annotations

from typing import Mapping

from distributed import Client, Future

from ..codes.grid import BlockKey
from .repository import CodedStore

Owners = Mapping[str, Mapping[BlockKey, str]]


def default_owners(client: Client, grids: Mapping[str, Mapping[BlockKey, object]]) -> dict[str, dict[BlockKey, str]]:
    """Round-robin placement over the cluster's workers, the same rule a freshly encoded layer uses."""
    addresses = sorted(client.scheduler_info()["workers"])
    if not addresses:
        raise RuntimeError("the cluster has no workers; start some before restoring")
    out: dict[str, dict[BlockKey, str]] = {}
    for name, grid in grids.items():
        nc = 1 + max(b for _, b in grid)
        out[name] = {(a, b): addresses[(a * nc + b) % len(addresses)] for a, b in grid}
    return out


def restore_to_cluster(
    client: Client,
    store: CodedStore,
    owners: Owners | None = None,
    checkpoint: str | int | None = None,
) -> dict[str, dict[BlockKey, Future]]:
    """Futures of every coded block of a checkpoint, each resident on its owner worker."""
    model = store.restore(checkpoint)
    placement = owners if owners is not None else default_owners(client, model)
    futures: dict[str, dict[BlockKey, Future]] = {}
    for name, grid in model.items():
        if name not in placement or set(placement[name]) != set(grid):
            raise ValueError(f"owners must place every block of layer {name!r}")
        by_worker: dict[str, list[BlockKey]] = {}
        for key, address in placement[name].items():
            by_worker.setdefault(address, []).append(key)
        futures[name] = {}
        for address, keys in by_worker.items():
            placed = client.scatter([grid[k] for k in keys], workers=[address], broadcast=False, hash=False)
            futures[name].update(zip(keys, placed))
    return futures

"""Put a checkpoint back on a running cluster: each coded block goes to the worker that owns it.

The checkpoint is read and verified (damaged blocks rebuilt) here, on the client, before any block
is shipped, so workers never start from a block the code does not vouch for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from distributed import Client, Future

from ..codes.grid import BlockKey
from ..graph import round_robin_owners
from .repository import CodedStore

Owners = Mapping[str, Mapping[BlockKey, str]]


def default_owners(client: Client, grids: Mapping[str, Mapping[BlockKey, object]]) -> dict[str, dict[BlockKey, str]]:
    """The placement a freshly encoded layer gets (see ``graph.round_robin_owners``)."""
    addresses = list(client.nthreads())
    return {
        name: round_robin_owners(addresses, (1 + max(a for a, _ in grid), 1 + max(b for _, b in grid)))
        for name, grid in grids.items()
    }


def restore_to_cluster(
    client: Client,
    store: CodedStore,
    owners: Owners | None = None,
    checkpoint: str | int | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, dict[BlockKey, Future]]:
    """Futures of every coded block of a checkpoint (or of ``layers`` only), each on its owner worker."""
    if layers is None:
        model = store.restore(checkpoint)
    else:
        model = {name: store.load_layer(name, checkpoint)[0] for name in layers}
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

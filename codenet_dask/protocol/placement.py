"""Which worker holds which coded block (plain functions of the worker list; no cluster needed)."""

from __future__ import annotations

from collections.abc import Sequence

Coord = tuple[int, int]


def round_robin_owners(workers: Sequence[str], coded_shape: tuple[int, int]) -> dict[Coord, str]:
    """Which worker holds each coded block: row-major round robin over ``workers`` in their order."""
    if not workers:
        raise ValueError("the cluster has no workers; start some first")
    nr, nc = coded_shape
    return {(a, b): workers[(a * nc + b) % len(workers)] for a in range(nr) for b in range(nc)}

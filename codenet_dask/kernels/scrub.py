"""Checking and repairing a layer's resident grid: the worker side of a scrub.

Every worker projects its own blocks (``grid.project_blocks``); the projections are checked
together (:func:`locate_grid`); only if a block is wrong is the grid gathered, rebuilt and
re-verified (:func:`scrub_grid`), and the rebuilt blocks patched into their owners' shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..codes import ProductCode
from .grid import check_grid, locate_in_grid


@dataclass(frozen=True)
class ScrubOutcome:
    """What a scrub of a resident grid found, and the blocks it rebuilt."""

    repaired: dict
    report: dict


def locate_grid(code: ProductCode, projections: Sequence[dict], block_shape: tuple[int, int], seed: int) -> dict:
    """The grid check of every worker's projections, without repair: the report."""
    merged: dict = {}
    for part in projections:
        merged.update(part)
    return locate_in_grid(code, merged, block_shape, seed).to_dict()


def scrub_grid(code: ProductCode, shards: Sequence[dict], seed: int) -> ScrubOutcome:
    """Check the resident coded grid (all workers' shards) and rebuild the blocks it shows wrong."""
    blocks: dict = {}
    for shard in shards:
        blocks.update(shard)
    checked = check_grid(code, blocks, repair=True, seed=seed)
    return ScrubOutcome({key: checked.blocks[key] for key in checked.report.repaired}, checked.report.to_dict())


def scrub_report(outcome: ScrubOutcome) -> dict:
    """Only the (small) report of a scrub, for the client."""
    return outcome.report


def patch_shard(shard: dict, outcomes: Sequence[ScrubOutcome], labels: Sequence[tuple]) -> dict:
    """The shard with the blocks a scrub rebuilt put back in place."""
    out = dict(shard)
    out.update({label: outcome.repaired[label] for label, outcome in zip(labels, outcomes)})
    return out


def patch_blocks(shard: dict, blocks: dict) -> dict:
    """The shard with some blocks replaced by given ones (fresh replicas from a majority)."""
    out = dict(shard)
    out.update(blocks)
    return out

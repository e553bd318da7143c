"""Scrub: verify every stored block against the code; repair what the code can rebuild.

Reading turns every damaged chunk (missing, truncated, failing its CRC, not matching its digest,
damaged bookkeeping) into an erasure; the grid check then locates blocks that decode fine but are
wrong (for instance a wrong update that was checkpointed) and rebuilds both kinds from their rows
and columns. A repair is written as a new checkpoint (atomic like any other), read back and
checked again before it is reported as done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import StoreError
from ..kernels.grid import BlockKey, GridReport, check_grid
from .repository import Checkpoint, CodedStore


@dataclass(frozen=True)
class LayerScrub:
    """One layer's verdict, with the reason each flagged block was flagged."""

    name: str
    report: GridReport
    reasons: dict[BlockKey, str]

    @property
    def lost(self) -> tuple[BlockKey, ...]:
        """Blocks found damaged or wrong that could not be rebuilt."""
        return self.report.unrepairable

    @property
    def unverified(self) -> tuple[BlockKey, ...]:
        """Blocks not found wrong that the code cannot vouch for (too much damage around them)."""
        return self.report.unverified

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.name,
            **self.report.to_dict(),
            "lost": [list(k) for k in self.lost],
            "reasons": {f"{a},{b}": why for (a, b), why in sorted(self.reasons.items())},
        }


@dataclass(frozen=True)
class ScrubReport:
    """What a scrub found, repaired and could not repair, per layer."""

    store: str
    checkpoint: Checkpoint | None
    layers: tuple[LayerScrub, ...]
    repair_requested: bool
    repaired_checkpoint: Checkpoint | None = None
    verified_after_repair: bool | None = None

    @property
    def found(self) -> dict[str, tuple[BlockKey, ...]]:
        """Damaged or wrong blocks per layer (repaired or not)."""
        return {s.name: s.report.bad for s in self.layers if s.report.bad}

    @property
    def lost(self) -> dict[str, tuple[BlockKey, ...]]:
        """Damaged blocks beyond repair, per layer."""
        return {s.name: s.lost for s in self.layers if s.lost}

    @property
    def unverified(self) -> dict[str, tuple[BlockKey, ...]]:
        """Blocks the code cannot vouch for, per layer."""
        return {s.name: s.unverified for s in self.layers if s.unverified}

    @property
    def ok(self) -> bool:
        """The stored model is intact: nothing found, or (with repair) all of it repaired on disk."""
        if self.lost or self.unverified:
            return False
        if not self.found:
            return True
        return bool(self.repair_requested and self.verified_after_repair)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "ok": self.ok,
            "repair_requested": self.repair_requested,
            "repaired_checkpoint": self.repaired_checkpoint.to_dict() if self.repaired_checkpoint else None,
            "verified_after_repair": self.verified_after_repair,
            "found": {n: [list(k) for k in keys] for n, keys in self.found.items()},
            "lost": {n: [list(k) for k in keys] for n, keys in self.lost.items()},
            "unverified": {n: [list(k) for k in keys] for n, keys in self.unverified.items()},
            "layers": [s.to_dict() for s in self.layers],
        }


def _scrub_layer(store: CodedStore, name: str, checkpoint: str | None, seed: int) -> tuple[LayerScrub, dict]:
    read = store.read_layer(name, checkpoint)
    result = check_grid(read.spec.code, read.blocks, seed=seed)
    rep = result.report
    reasons = dict(read.problems)
    for key in rep.located:
        reasons[key] = "inconsistent with its row/column codewords (wrong values)"
    for key in rep.unverified:
        reasons[key] = (
            "unverified: no check of the code among the trusted blocks involves it (too much damage around it)"
        )
    return LayerScrub(name, rep, reasons), result.blocks


def scrub(
    store: CodedStore, *, repair: bool = False, checkpoint: str | int | None = None, seed: int = 0
) -> ScrubReport:
    """Verify every block of a checkpoint (default: the latest); with ``repair``, rebuild what
    the code can and commit it as a new checkpoint at the same step."""
    if repair:
        if checkpoint is not None:
            raise StoreError("repair works on the latest checkpoint only; scrub older ones without repair")
        if not store.writable:
            raise StoreError(f"{store.root} is open read-only; repair needs mode='r+'")
        if store.has_uncommitted_changes():
            raise StoreError("the store has uncommitted writes; checkpoint or discard them before a repair")
    history = store.checkpoints()
    if not history:
        return ScrubReport(str(store.root), None, (), repair)
    sid = store.resolve(checkpoint)
    target = next((c for c in history if c.id == sid), None)
    if target is None:
        raise StoreError(f"snapshot {sid} of {store.root} was not written as a codenet_dask checkpoint")
    layers, grids = [], {}
    for name in store.layer_names(target.id):
        layer, blocks = _scrub_layer(store, name, target.id, seed)
        layers.append(layer)
        grids[name] = blocks
    report = ScrubReport(str(store.root), target, tuple(layers), repair)
    if not repair or not any(s.report.repaired for s in layers):
        return report
    for s in layers:
        if s.report.repaired:
            store.write_blocks(s.name, {k: grids[s.name][k] for k in s.report.repaired}, force=True)
    summary = "; ".join(f"{s.name}: {len(s.report.repaired)} blocks" for s in layers if s.report.repaired)
    new = store.checkpoint(target.step, f"scrub repair at step {target.step} ({summary})")
    verified = True
    for s in layers:
        again, _ = _scrub_layer(store, s.name, None, seed + 1)
        still_bad = set(again.report.bad)
        if not still_bad <= set(s.lost) or set(s.report.repaired) & (still_bad | set(again.report.unverified)):
            verified = False
    return ScrubReport(str(store.root), target, tuple(layers), repair, new, verified)

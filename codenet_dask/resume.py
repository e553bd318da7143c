"""Where an interrupted training run continues: the newest checkpoint of its store that verifies.

A run killed by its walltime, a lost node or SIGKILL leaves its store at the last committed
checkpoint (commits are atomic, and durable). Before continuing, every candidate checkpoint is
scrubbed, newest first: damage the code can rebuild is repaired on disk (a new checkpoint at the
same step); a checkpoint with blocks lost beyond the code's capacity, or whose record cannot be
read, is skipped and the previous one tried. The one chosen becomes the latest (newer, damaged
ones leave the branch's history), and its record and journal say how the run goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import journal
from .errors import NotResumableError, StoreError
from .ledger import FaultLedger
from .runstate import RunState
from .store import Checkpoint, CodedStore, ScrubReport, scrub


@dataclass
class ResumePoint:
    """The checkpoint a resumed run starts from, and what was found on the way to it."""

    store: Path
    checkpoint: Checkpoint
    state: RunState
    ledger: FaultLedger
    #: Newer checkpoints that did not verify, with the reason (the run continues from an older one).
    skipped: list[tuple[Checkpoint, str]] = field(default_factory=list)
    #: Blocks the scrub rebuilt on disk, per layer.
    repaired: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


def find_resume_point(path: str | os.PathLike[str]) -> ResumePoint:
    """The newest verified checkpoint of the run stored at ``path``, made the store's latest.

    Raises NotResumableError if none verifies or the store holds no training run (written by the
    Python API, or by a version before store format 2).
    """
    with CodedStore.open(path, "r+") as store:
        history = store.checkpoints()
        if not history:
            raise NotResumableError(
                f"{store.root} holds no checkpoint yet (the run stopped before its first one); "
                f"remove it and start the run again with --store"
            )
        skipped: list[tuple[Checkpoint, str]] = []
        for checkpoint in history:
            try:
                run = store.read_run(checkpoint.id)
                if run is None:
                    raise NotResumableError(
                        f"{store.root}: checkpoint at step {checkpoint.step} holds no training run (a store "
                        f"written with the Python API, or before store format 2); nothing to resume"
                    )
                report = scrub(store, checkpoint=checkpoint.id)
                record, ledger_bytes = run
                state, ledger = RunState.from_record(record), journal.loads(ledger_bytes)
            except NotResumableError:
                raise
            except StoreError as exc:
                skipped.append((checkpoint, f"{type(exc).__name__}: {exc}"))
                continue
            lost = _beyond_repair(store, report)
            if lost:
                where = "; ".join(f"{name} {keys}" for name, keys in lost.items())
                skipped.append((checkpoint, f"blocks lost beyond what the code rebuilds: {where}"))
                continue
            if checkpoint.id != history[0].id:
                store.rollback(checkpoint.id)
            repaired = {}
            if report.found:
                fixed = scrub(store, repair=True)
                repaired = {s.name: list(s.report.repaired) for s in fixed.layers if s.report.repaired}
            return ResumePoint(store.root, checkpoint, state, ledger, skipped, repaired)
    reasons = "; ".join(f"step {c.step}: {why}" for c, why in skipped)
    raise NotResumableError(f"no checkpoint of {store.root} verifies ({reasons})")


def _beyond_repair(store: CodedStore, report: ScrubReport) -> dict[str, list[tuple[int, int]]]:
    """Blocks of a scrubbed checkpoint no restore can trust, per layer. A layer without parity
    (uncoded, replicated) has no code to vouch for a block, so only damaged ones count (as when
    restoring: the CRC and digest checks on read are all there is)."""
    out = {}
    for layer in report.layers:
        code = store.layer(layer.name).code
        keys = set(layer.lost) | (set(layer.unverified) if code.pr or code.pc else set())
        if keys:
            out[layer.name] = sorted(keys)
    return out

"""Quarantine: a worker that keeps computing wrong is found from the checks' verdicts and retired.

Every verdict of a coded layer (a product's located blocks, per attempt; a scrub's wrong stored
blocks) is evidence about the workers that computed the results (``protocol.blame``: a sequential
test per worker with a stated false-blame probability). A worker whose evidence reaches the
threshold is *quarantined*: the executor stops using it (a Dask worker is retired and closed) and
the trainer moves every layer off it (``CodedLayer.evacuate``: its blocks are rebuilt from the code
on the healthy workers, or, where the code cannot, restored from the last checkpoint). The last
worker is never quarantined: a run on one worker still checks every result, only slower.

Only coded layers give evidence: the uncoded baseline checks nothing, and replication's votes
name a block, not which copy's worker was wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from . import config
from .executors import Executor
from .layer import CodedLayer
from .protocol.blame import Blame, Evidence, tally
from .protocol.reports import ProductReport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quarantined:
    """One worker taken out of a run: its name, the step, and the evidence against it."""

    worker: str
    step: int
    evidence: Evidence

    def as_dict(self) -> dict:
        return {"worker": self.worker, "step": self.step, **self.evidence.as_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> Quarantined:
        evidence = Evidence(int(values["wrong"]), int(values["checked"]), float(values.get("score", 0.0)))
        return cls(str(values["worker"]), int(values["step"]), evidence)


class Quarantine:
    """The blame of one run's workers and the workers it retired (see the module docstring)."""

    def __init__(self, executor: Executor, enabled: bool | None = None) -> None:
        self.executor = executor
        self.enabled = bool(config.get("quarantine.enabled", True)) if enabled is None else enabled
        self.blame = Blame()
        self.retired: list[Quarantined] = []
        #: Workers whose evidence reached the threshold, not retired yet.
        self.pending: list[str] = []
        #: (layer, block) found wrong by the last product check of it, not scrubbed since.
        self._seen: set[tuple[str, tuple]] = set()

    def product(self, layer: CodedLayer, report: ProductReport) -> None:
        """Evidence from every attempt of one product of ``layer``.

        A block found wrong again by the next check may be one *stored* fault (a faulty update
        stays until a scrub rebuilds it) seen again, not a new error of its worker: a block counts
        as wrong once, until a check finds it right or a scrub checks it (:meth:`scrub`)."""
        if not self._watches(layer):
            return
        computed = layer.participants(report.operation)
        for found in report.detected_by_attempt.values():
            wrong = {tuple(label[:2]) for label in found}
            fresh = [label for label in wrong if (layer.name, label) not in self._seen]
            checked = {w: len(labels) for w, labels in computed.items()}
            for w, n in tally(layer.placement, wrong - set(fresh)).items():
                checked[w] -= n  # seen before: no new evidence either way
            self._seen -= {(layer.name, label) for labels in computed.values() for label in labels} - {
                (layer.name, label) for label in wrong
            }
            self._seen |= {(layer.name, label) for label in wrong}
            self._observe(checked, tally(layer.placement, fresh))

    def scrub(self, layer: CodedLayer, report: dict, innocent: Iterable = ()) -> None:
        """Evidence from one scrub of ``layer``'s stored blocks (``innocent``: labels known to be
        wrong for another reason, such as blocks erased by an evacuation)."""
        if not self._watches(layer):
            return
        skip = {tuple(label) for label in innocent}
        wrong = [tuple(b) for b in (*report["located"], *report["erased"]) if tuple(b) not in skip]
        held = tally(layer.placement, (label for label in layer.placement if tuple(label) not in skip))
        self._seen = {key for key in self._seen if key[0] != layer.name}
        self._observe(held, tally(layer.placement, wrong))

    def forget_sightings(self) -> None:
        """After a rollback: the blocks seen wrong are gone (restored from the checkpoint)."""
        self._seen.clear()

    def retire_pending(self, step: int) -> list[str]:
        """Retire every pending suspect (never the last worker); returns the workers retired."""
        retired = []
        for worker in self.pending:
            if len(self.executor.workers()) <= 1:
                logger.warning("worker %s keeps computing wrong, but it is the last one: it stays", worker)
                continue
            name = self.executor.name(worker)
            self.retired.append(Quarantined(name, step, self.blame.evidence[worker]))
            self.executor.retire(worker)
            logger.warning(
                "quarantined worker %s at step %d: %d of its %d checked results were wrong",
                name,
                step,
                self.blame.evidence[worker].wrong,
                self.blame.evidence[worker].checked,
            )
            retired.append(worker)
        self.blame.forget(self.pending)
        self.pending = []
        return retired

    def _watches(self, layer: CodedLayer) -> bool:
        return self.enabled and type(layer) is CodedLayer

    def _observe(self, computed: dict[str, int], wrong: dict[str, int]) -> None:
        for worker in self.blame.observe(computed, wrong):
            if worker not in self.pending:
                self.pending.append(worker)

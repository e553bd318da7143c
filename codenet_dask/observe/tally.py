"""Scheduler-side aggregation of the events a training run publishes (pure Python, no Dask).

The client sends small increments (``events.py`` builds them); this folds them into per-run,
per-layer and per-worker counters the dashboard page and the JSON route read. Keeping it a plain
data structure makes the aggregation testable without a scheduler and cheap on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

#: Block-level counters, per layer and per worker (see events.py for their exact meaning).
COUNTS: tuple[str, ...] = ("detected", "corrected", "recomputed", "rolled_back", "repaired")
#: Layer-level counters of operations (not blocks).
LAYER_EVENTS: tuple[str, ...] = ("products", "recomputations", "ops_rolled_back")
#: Runs kept in memory (the page shows the latest; older ones stay readable through the JSON route).
KEEP_RUNS = 8
#: Points of the per-step history kept per run (totals after each published step).
KEEP_HISTORY = 5000


def _zero(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


@dataclass
class RunTally:
    """Everything known about one training run."""

    run: str
    strategy: str = ""
    label: str = ""
    status: str = "running"
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    position: int = 0
    total: int = 0
    rollbacks: int = 0
    events: int = 0
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: dict[str, dict[str, int]] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    #: Workers the run quarantined: ``{worker, step, wrong, checked, score}`` each.
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: Totals of COUNTS after each step event, in arrival order (a redone step after a rollback counts again).
    history: list[list[int]] = field(default_factory=list)

    def layer(self, name: str) -> dict[str, Any]:
        return self.layers.setdefault(name, {"name": name, "shape": {}, **_zero(COUNTS), **_zero(LAYER_EVENTS)})

    def worker(self, address: str) -> dict[str, int]:
        return self.workers.setdefault(address, {"blocks": 0, **_zero(COUNTS)})

    def totals(self) -> dict[str, int]:
        return {name: sum(int(layer[name]) for layer in self.layers.values()) for name in COUNTS + LAYER_EVENTS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "strategy": self.strategy,
            "label": self.label,
            "status": self.status,
            "started": self.started,
            "updated": self.updated,
            "position": self.position,
            "total": self.total,
            "rollbacks": self.rollbacks,
            "events": self.events,
            "totals": self.totals(),
            "layers": [dict(v) for v in self.layers.values()],
            "workers": [{"worker": k, **v} for k, v in sorted(self.workers.items())],
            "final": self.final,
            "quarantined": [dict(q) for q in self.quarantined],
            "history": {"counts": list(COUNTS), "points": [list(p) for p in self.history]},
        }


class Tally:
    """Runs by id, in arrival order; ``apply`` takes one published event."""

    def __init__(self) -> None:
        self.runs: OrderedDict[str, RunTally] = OrderedDict()
        self.ignored = 0

    @property
    def latest(self) -> RunTally | None:
        return next(reversed(self.runs.values()), None)

    def apply(self, msg: Any) -> None:
        """Fold one event in; malformed ones are counted and dropped (a dashboard must not raise)."""
        try:
            self._apply(msg)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.ignored += 1

    def _apply(self, msg: dict[str, Any]) -> None:
        kind, run_id = msg["kind"], str(msg["run"])
        if kind == "start":
            self.runs.pop(run_id, None)
            self.runs[run_id] = RunTally(
                run_id,
                strategy=str(msg.get("strategy", "")),
                label=str(msg.get("label", "")),
                total=int(msg.get("total", 0)),
            )
            while len(self.runs) > KEEP_RUNS:
                self.runs.popitem(last=False)
            return
        run = self.runs.get(run_id)
        if run is None:  # events of a run that started before this plugin did: start it now
            self._apply({"kind": "start", "run": run_id})
            run = self.runs[run_id]
        run.events += 1
        run.updated = time.time()
        if kind == "layers":
            for shape in msg["layers"]:
                run.layer(shape["name"])["shape"] = {k: v for k, v in shape.items() if k != "blocks"}
            held: dict[str, int] = {}
            for shape in msg["layers"]:
                for address, n in shape.get("blocks", {}).items():
                    held[address] = held.get(address, 0) + int(n)
            for address in run.workers.keys() | held.keys():  # placement is replaced, counts are kept
                run.worker(address)["blocks"] = held.get(address, 0)
        elif kind == "step":
            run.position, run.total = int(msg["position"]), int(msg.get("total", run.total))
            run.rollbacks = int(msg.get("rollbacks", run.rollbacks))
            run.quarantined = [dict(q) for q in msg.get("quarantined", run.quarantined)]
            for name, counts in msg.get("layers", {}).items():
                layer = run.layer(name)
                for key, n in counts.items():
                    if key in COUNTS or key in LAYER_EVENTS:
                        layer[key] += int(n)
            for address, counts in msg.get("workers", {}).items():
                worker = run.worker(address)
                for key, n in counts.items():
                    if key in COUNTS:
                        worker[key] += int(n)
            totals = run.totals()
            run.history.append([totals[c] for c in COUNTS])
            del run.history[:-KEEP_HISTORY]
        elif kind == "finish":
            run.status = "finished"
            run.final = dict(msg.get("faults", {}))
            run.rollbacks = int(msg.get("rollbacks", run.rollbacks))
            run.quarantined = [dict(q) for q in msg.get("quarantined", run.quarantined)]
            run.position = int(msg.get("position", run.position))
        else:
            raise ValueError(kind)

    def snapshot(self, run: str | None = None) -> dict[str, Any]:
        """JSON-ready state of one run (default: the latest) plus the ids of all kept runs."""
        chosen = self.runs.get(run) if run else self.latest
        return {"runs": list(self.runs), "ignored": self.ignored, "run": chosen.as_dict() if chosen else None}

"""Client side: turn what a training run learns after each step into small events for the scheduler.

The Trainer already keeps everything in its :class:`~codenet_dask.ledger.FaultLedger` (one
``ProductReport`` per product, scrub repairs, rolled-back operations). The publisher diffs the
ledger since its last call and sends only increments with ``client.log_event``; the scheduler
plugin folds them into the counters the dashboard shows. Block coordinates become workers
through ``layer.placement`` (replicas included) and ``layer.owners``.

Counters (all counts of blocks, per layer and per worker):

- ``detected``: blocks a product's checks found wrong (any attempt);
- ``corrected``: blocks located and replaced in place;
- ``recomputed``: blocks found wrong in an attempt that was thrown away and recomputed;
- ``rolled_back``: detected blocks of operations a rollback later undid;
- ``repaired``: stored blocks a scrub rebuilt.

Per layer also ``products``, ``recomputations`` (product attempts thrown away) and
``ops_rolled_back``. Publishing must never break training: on a scheduler that cannot take the
plugin (e.g. one without codenet_dask installed) the publisher logs one warning and goes quiet.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from distributed import Client

from .plugin import TOPIC, register

if TYPE_CHECKING:
    from ..training import Trainer

logger = logging.getLogger(__name__)

UNPLACED = "(unplaced)"


def _placement(layer: Any) -> dict[tuple[int, ...], str]:
    """Block coordinate -> worker, for every block label a product report may name."""
    placement = {tuple(c): str(w) for c, w in layer.owners.items()}
    placement.update({tuple(c): str(w) for c, w in layer.placement.items()})
    return placement


def layer_shape(layer: Any, strategy: str, replicas: int | None) -> dict[str, Any]:
    """The code shape the page shows for one layer, and how many blocks each worker holds."""
    code = layer.code
    placement = _placement(layer)
    return {
        "name": layer.name,
        "strategy": strategy,
        "grid": [code.kr, code.kc],
        "parity": [code.pr, code.pc],
        "replicas": replicas if strategy == "replication" else None,
        "coded_blocks": len(placement),
        "blocks": dict(Counter(placement.values())),
    }


class DashboardPublisher:
    """Publishes one Trainer's counters; call :meth:`publish` after every step, :meth:`finish` at the end."""

    def __init__(self, trainer: Trainer, client: Client | None = None) -> None:
        self.trainer = trainer
        self.client = client or trainer.executor.client  # type: ignore[attr-defined]
        self.run_id = uuid.uuid4().hex[:12]
        self.enabled = True
        self.sent = 0
        self._products: set[tuple[str, int]] = set()
        self._rolled: set[tuple[str, int]] = set()
        self._repairs: dict[str, int] = {}
        self._detections: dict[tuple[str, int], list[str]] = {}
        self._placement: dict[str, dict[tuple[int, ...], str]] = {}
        self._layer_ids: tuple[int, ...] = ()
        try:
            register(self.client)
        except Exception as exc:
            self._disable(f"cannot register the dashboard plugin on the scheduler: {exc!r}")
            return
        config = trainer.config
        sizes = "-".join(map(str, getattr(trainer, "sizes", [])))
        self._send(
            {
                "kind": "start",
                "strategy": config.strategy,
                "label": f"{sizes} on {trainer.data.name}, {config.strategy}",
            }
        )

    # -- public ---------------------------------------------------------------------------
    def publish(self, position: int, total: int) -> None:
        """Send what the ledger gained since the last call (and the layers' shapes if they changed)."""
        if not self.enabled:
            return
        layers = list(self.trainer.layers)
        if not self._placement:
            self._refresh(layers)
        message = {
            "kind": "step",
            "position": position,
            "total": total,
            "rollbacks": self.trainer.rollbacks,
            "quarantined": [q.as_dict() for q in self.trainer.quarantine.retired],
            **self._increments(),
        }
        if tuple(map(id, layers)) != self._layer_ids:
            self._send_layers(layers)
        self._send(message)
        self._refresh(layers)  # the next step's reports come from these layers

    def finish(self) -> None:
        """Final increments and the ground-truth classification of every injected fault."""
        if not self.enabled:
            return
        self.publish(self.trainer.checkpoint_position, self.trainer.checkpoint_position)
        ledger = self.trainer.ledger
        led = ledger.summary()
        faults = {
            "injected": led["injected"],
            "detected": sum(len(r.detected) for r in ledger.products.values()),
            "corrected": led["corrected"],
            "recomputed": led["recomputed"],
            "rollbacks": self.trainer.rollbacks,
            "rolled_back": led["rolled-back"],
            "benign": led["benign"],
            "undetected": led["undetected"],
        }
        self._send(
            {
                "kind": "finish",
                "faults": faults,
                "rollbacks": self.trainer.rollbacks,
                "quarantined": [q.as_dict() for q in self.trainer.quarantine.retired],
                "position": self.trainer.checkpoint_position,
            }
        )

    # -- internals ------------------------------------------------------------------------
    def _increments(self) -> dict[str, dict[str, dict[str, int]]]:
        by_layer: dict[str, Counter] = defaultdict(Counter)
        by_worker: dict[str, Counter] = defaultdict(Counter)

        def count(what: str, layer: str, coords: Iterable[tuple[int, ...]]) -> list[str]:
            workers = [self._placement.get(layer, {}).get(tuple(c), UNPLACED) for c in coords]
            by_layer[layer][what] += len(workers)
            for w in workers:
                by_worker[w][what] += 1
            return workers

        ledger = self.trainer.ledger
        for key, report in list(ledger.products.items()):
            if key in self._products:
                continue
            self._products.add(key)
            by_layer[report.layer]["products"] += 1
            by_layer[report.layer]["recomputations"] += report.recomputed
            self._detections[key] = count("detected", report.layer, report.detected)
            count("corrected", report.layer, report.corrected)
            for attempt, coords in report.detected_by_attempt.items():
                if attempt != report.accepted_attempt:
                    count("recomputed", report.layer, coords)
        for key in sorted(set(ledger.rolled_back) - self._rolled):
            self._rolled.add(key)
            by_layer[key[0]]["ops_rolled_back"] += 1
            for w in self._detections.get(key, []):
                by_layer[key[0]]["rolled_back"] += 1
                by_worker[w]["rolled_back"] += 1
        for layer, repairs in ledger.repairs.items():
            done = self._repairs.get(layer, 0)
            count("repaired", layer, (coord for _, coord in repairs[done:]))
            self._repairs[layer] = len(repairs)
        return {
            "layers": {k: dict(v) for k, v in by_layer.items()},
            "workers": {k: dict(v) for k, v in by_worker.items()},
        }

    def _refresh(self, layers: list[Any]) -> None:
        self._placement = {layer.name: _placement(layer) for layer in layers}

    def _send_layers(self, layers: list[Any]) -> None:
        config = self.trainer.config
        self._send(
            {"kind": "layers", "layers": [layer_shape(layer, config.strategy, config.replicas) for layer in layers]}
        )
        self._layer_ids = tuple(map(id, layers))

    def _send(self, message: Mapping[str, Any]) -> None:
        try:
            self.client.log_event(TOPIC, {**message, "run": self.run_id})
            self.sent += 1
        except Exception as exc:
            self._disable(f"cannot publish to the scheduler: {exc!r}")

    def _disable(self, reason: str) -> None:
        self.enabled = False
        logger.warning("codenet dashboard off for this run: %s", reason)

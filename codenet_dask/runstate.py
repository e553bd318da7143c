"""A training run's state as the store keeps it with every checkpoint (the ``training`` group).

Everything a resumed run needs besides the coded blocks and the fault ledger (the journal): the
configuration (network, code, seeds, learning-rate schedule, fault spec), where the data came
from and its fingerprint, the checkpoint's step and every layer's operation counter (fault sites
and check vectors are keyed by them), rollbacks, evaluations and the outcome. ``export`` and
``inspect`` read the same record: it is the run's config and accuracy as the store's attributes.

Plain JSON data, validated on the way back in (a store is untrusted input). Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import StoreFormatError

#: Bump when the record's fields change meaning.
RECORD_VERSION = 1
STATUSES = ("running", "completed", "diverged", "gave-up")
#: Fields added after version 1 was written: a record without them takes their defaults.
LATER = frozenset({"quarantined"})


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class RunState:
    """One checkpoint's view of a training run."""

    config: dict[str, Any]
    data: dict[str, Any]
    layers: list[int]
    workers: int
    #: The checkpoint's step: steps done when its blocks were written.
    position: int
    #: Operation counter of every layer at the checkpoint.
    ops: dict[str, int]
    rollbacks: int = 0
    accuracy_by_epoch: list[float] = field(default_factory=list)
    last_loss: float = math.nan
    status: str = "running"
    reason: str | None = None
    #: The last step the run reached (the one that failed, for a diverged or given-up run).
    step: int = 0
    resumed_from_step: int = 0
    #: Workers quarantined so far, each ``{worker, step, wrong, checked, score}`` (``quarantine``).
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        """The final accuracy of a completed run (NaN otherwise)."""
        return self.accuracy_by_epoch[-1] if self.status == "completed" and self.accuracy_by_epoch else math.nan

    def to_record(self) -> dict[str, Any]:
        """Strict JSON data (no NaN): NaN and Inf become None."""
        record = asdict(self)
        record["last_loss"] = _finite(self.last_loss)
        record["accuracy_by_epoch"] = [_finite(a) for a in self.accuracy_by_epoch]
        record["test_accuracy"] = _finite(self.test_accuracy)
        return {"record_version": RECORD_VERSION, **record}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunState:
        """The state :meth:`to_record` wrote; a StoreFormatError naming what does not fit."""
        where = "training record"
        if record.get("record_version") != RECORD_VERSION:
            raise StoreFormatError(
                f"{where}: version {record.get('record_version')!r}; this codenet_dask reads version {RECORD_VERSION}"
            )
        names = {f.name for f in fields(cls)} - {name for name in LATER if name not in record}
        missing = names - set(record)
        if missing:
            raise StoreFormatError(f"{where}: fields {sorted(missing)} are missing")
        state = cls(**{name: record[name] for name in names})
        checks = [
            (isinstance(state.config, dict), "'config' must be an object"),
            (isinstance(state.data, dict), "'data' must be an object"),
            (isinstance(state.layers, list) and all(_count(w, 1) for w in state.layers), "'layers' must be widths"),
            (_count(state.workers, 1), "'workers' must be a positive integer"),
            (_count(state.position, 0) and _count(state.step, 0), "'position' and 'step' must be counts"),
            (_count(state.rollbacks, 0) and _count(state.resumed_from_step, 0), "'rollbacks' must be a count"),
            (
                isinstance(state.ops, dict) and all(isinstance(k, str) and _count(v, 0) for k, v in state.ops.items()),
                "'ops' must map layer names to counts",
            ),
            (state.status in STATUSES, f"'status' must be one of {', '.join(STATUSES)}"),
            (isinstance(state.accuracy_by_epoch, list), "'accuracy_by_epoch' must be a list"),
            (
                isinstance(state.quarantined, list) and all(isinstance(q, dict) for q in state.quarantined),
                "'quarantined' must be a list of objects",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise StoreFormatError(f"{where}: {message}")
        state.last_loss = math.nan if state.last_loss is None else float(state.last_loss)
        state.accuracy_by_epoch = [math.nan if a is None else float(a) for a in state.accuracy_by_epoch]
        return state


def _count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

"""Which worker keeps computing wrong: a sequential test per worker over the errors checks locate.

Every checked result is evidence about the worker that computed it: *wrong* (a check located an
error in it) or *right*. Soft errors of a healthy worker are rare and independent, and hit every
worker alike; a bad ("mercurial") worker is wrong most of the time (Hochschild et al., "Cores that
don't count", HotOS 2021). So a worker is compared with its peers: its *healthy rate* ``q0`` is
the larger of ``healthy`` and the error rate observed on all the other workers so far, and a CUSUM
of the log-likelihood ratio between "bad" (wrong with probability ``bad``) and "like its peers",

    S <- max(0, S + wrong * log(bad / q0) + right * log((1 - bad) / (1 - q0))),

reaches ``log(1 / false_blame)`` within a few wrong results of a bad worker (with the defaults,
healthy 0.05, bad 0.9 and false blame 1e-6, and clean peers: 5 wrong results in a row). A fault
injection that hits every worker at 15% raises every ``q0`` to ~15%, and nobody is blamed.

False blame: while a worker's results are wrong independently with probability at most its ``q0``,
the likelihood ratio is a non-negative supermartingale, so each excursion of S above 0 (each starts
at one of its wrong results) reaches the threshold with probability at most ``false_blame``
(Ville's inequality): such a worker with ``m`` wrong results in a run is quarantined with
probability at most ``m x false_blame`` (1e-4 for 100 errors at the default 1e-6).
Pure bookkeeping: no cluster, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .. import config
from ..errors import ConfigValueError


@dataclass
class Evidence:
    """What one worker's checked results showed so far."""

    wrong: int = 0
    checked: int = 0
    score: float = 0.0

    def as_dict(self) -> dict:
        return {"wrong": self.wrong, "checked": self.checked, "score": round(self.score, 3)}


@dataclass
class Blame:
    """The per-worker test of the module docstring; defaults from ``codenet.quarantine`` in dask config."""

    healthy: float = field(default_factory=lambda: _number("quarantine.healthy-rate", 0.05))
    bad: float = field(default_factory=lambda: _number("quarantine.bad-rate", 0.9))
    false_blame: float = field(default_factory=lambda: _number("quarantine.false-blame", 1e-6))
    evidence: dict[str, Evidence] = field(default_factory=dict)
    #: Sums over ``evidence`` (every worker's peers are all but itself).
    _wrong: int = 0
    _checked: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.healthy < self.bad < 1:
            raise ConfigValueError(
                f"codenet.quarantine needs 0 < healthy-rate < bad-rate < 1, got {self.healthy} and {self.bad}; "
                "fix them in codenet.yaml or DASK_CODENET__QUARANTINE__*"
            )
        if not 0 < self.false_blame < 1:
            raise ConfigValueError(
                f"codenet.quarantine.false-blame must be in (0, 1), got {self.false_blame}; "
                "fix it in codenet.yaml or DASK_CODENET__QUARANTINE__FALSE_BLAME"
            )

    @property
    def threshold(self) -> float:
        return math.log(1 / self.false_blame)

    def observe(self, checked: Mapping[str, int], wrong: Mapping[str, int]) -> list[str]:
        """Fold in one check: how many results each worker computed (``checked``) and how many of
        them were found wrong. Returns the workers whose score reached the threshold now."""
        rates = {w: self.peer_rate(w) for w in checked}  # as the check found them, before it counts
        reached = []
        for worker, n in checked.items():
            e = self.evidence.setdefault(worker, Evidence())
            bad = min(wrong.get(worker, 0), n)
            q0 = rates[worker]
            up, down = math.log(self.bad / q0), math.log((1 - self.bad) / (1 - q0))
            before = e.score
            e.wrong, e.checked = e.wrong + bad, e.checked + n
            self._wrong, self._checked = self._wrong + bad, self._checked + n
            e.score = max(0.0, e.score + bad * up + (n - bad) * down)
            if e.score >= self.threshold > before:
                reached.append(worker)
        return reached

    def peer_rate(self, worker: str) -> float:
        """``worker``'s healthy rate: ``healthy``, or the other workers' error rate if higher (at
        most halfway to ``bad``, so the two hypotheses stay apart)."""
        own = self.evidence.get(worker, Evidence())
        wrong, checked = self._wrong - own.wrong, self._checked - own.checked
        observed = wrong / checked if checked else 0.0
        return min(max(self.healthy, observed), (self.healthy + self.bad) / 2)

    def forget(self, workers: Iterable[str]) -> None:
        """Drop workers that left the run (their evidence is reported with their quarantine)."""
        for w in workers:
            gone = self.evidence.pop(w, Evidence())
            self._wrong, self._checked = self._wrong - gone.wrong, self._checked - gone.checked


def tally(owners: Mapping[tuple[int, ...], str], labels: Iterable[tuple[int, ...]]) -> dict[str, int]:
    """How many of ``labels`` (blocks, by their first two coordinates) each owner holds."""
    counts: dict[str, int] = {}
    for label in labels:
        w = owners[tuple(label[:2])]
        counts[w] = counts.get(w, 0) + 1
    return counts


def _number(key: str, default: float) -> float:
    """``codenet.<key>`` from dask config as a number (ConfigValueError naming it if it is not)."""
    value = config.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigValueError(f"codenet.{key} must be a number, got {value!r}") from None

"""RandomFaults: the seeded random injector that runs inside worker tasks.

Whether and how a task is hit is a pure function of ``(seed, site, attempt)`` (and, only for specs
with ``workers=``, of the worker's name). Dask may run a task twice (work stealing, a lost worker)
and assumes it gets the same answer (dask/distributed#6689), so no hidden state, no clock, no
global RNG: the site is hashed with BLAKE2b over a canonical JSON string, and the digest gives

- a uniform ``u`` in [0, 1) (from the first 8 bytes, independent of numpy's RNG stream), which
  picks at most one rule: rule i fires when ``u`` falls in its slice ``[sum r_<i, sum r_<=i)``
  of the rates that apply here — so each rule's rate is exact, a higher rate hits a superset of
  the tasks a lower one hits (coupled comparisons across rates), and the same seed hits the same
  tasks in every strategy that uses the same sites;
- a seed for the model's ``numpy`` Generator (the remaining bytes), which picks entry and bits.

A recomputation (``attempt + 1``) hashes differently, so its draw is independent of the first.
:meth:`RandomFaults.decide` is the same decision without values, for the client's ground truth.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass

import numpy as np

from . import log
from .context import WORKER
from .hook import Site
from .models import relative_change
from .records import FaultDecision, InjectedFault
from .spec import FaultRule, FaultSpec, parse_fault_spec


def current_worker() -> str | None:
    """The name of the worker running this task: the in-process executor's (``context.WORKER``), a
    Dask worker's, or None outside any worker.

    Does not import ``distributed``: if it is not loaded, this process cannot be a Dask worker.
    """
    local = WORKER.get()
    if local is not None:
        return local
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return str(distributed.get_worker().name)
    except (ValueError, AttributeError):
        return None


def site_digest(seed: int, site: Site, attempt: int) -> bytes:
    """32-byte BLAKE2b digest of the canonical (seed, site, attempt); stable across processes."""
    block = [int(b) for b in site.block]
    fields = [int(seed), str(site.step), str(site.layer), int(site.op), block, int(attempt)]
    canonical = json.dumps(fields, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=32, person=b"codenet-faults").digest()


def _uniform(digest: bytes) -> float:
    """u in [0, 1) with 53 random bits, from the first 8 bytes."""
    return (int.from_bytes(digest[:8], "little") >> 11) * 2.0**-53


@dataclass(frozen=True)
class RandomFaults:
    """CorruptionHook that corrupts a task's output at random, per ``spec``, reproducibly from ``seed``.

    >>> hook = RandomFaults.from_string("bitflip:1e-3,nan:1e-4", seed=7)
    >>> str(hook.spec)
    'bitflip:0.001,nan:0.0001'
    >>> site = Site("block-forward", "dense0", 1, (0, 0))
    >>> hook.decide(site, attempt=0) is None  # this site is spared, in every process and run
    True
    """

    spec: FaultSpec
    seed: int = 0
    #: The run whose log records this hook's faults (it does not change which faults are drawn).
    run: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.spec, FaultSpec):
            kind = type(self.spec).__name__
            raise TypeError(f"spec must be a FaultSpec (use RandomFaults.from_string), got {kind}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    @classmethod
    def from_string(cls, text: str, seed: int = 0, run: str = "") -> RandomFaults:
        return cls(parse_fault_spec(text), seed, run)

    def decide(self, site: Site, attempt: int, worker: str | int | None = None) -> FaultDecision | None:
        """The fault (if any) for this site and attempt on ``worker``; pure, needs no values."""
        if not self.spec.enabled:
            return None
        worker = None if worker is None else str(worker)
        rates = [(i, r, r.rate_at(site.step, worker)) for i, r in enumerate(self.spec.rules)]
        digest = site_digest(self.seed, site, attempt)
        u = _uniform(digest)
        edge = 0.0
        for index, rule, rate in rates:
            edge += rate
            if rate > 0 and u < edge:
                return self._decision(site, attempt, index, rule, digest, worker)
        return None

    def apply(self, site: Site, values: np.ndarray, attempt: int) -> np.ndarray:
        """Corrupt (or not) and record the ground truth in this process's log."""
        values, fault = self.apply_logged(site, values, attempt)
        if fault is not None:
            log.record(self.run, fault)
        return values

    def apply_logged(self, site: Site, values: np.ndarray, attempt: int) -> tuple[np.ndarray, InjectedFault | None]:
        """Like :meth:`apply`, plus the ground-truth record of the fault (None if clean)."""
        if not self.spec.enabled:
            return values, None
        worker = current_worker()
        decision = self.decide(site, attempt, worker)
        if decision is None:
            return values, None
        corrupted = decision.corrupt(values)
        record = InjectedFault(site, attempt, decision.model, relative_change(values, corrupted), worker)
        return corrupted, record

    @staticmethod
    def _decision(
        site: Site, attempt: int, index: int, rule: FaultRule, digest: bytes, worker: str | None
    ) -> FaultDecision:
        seed = int.from_bytes(digest[8:], "little")
        return FaultDecision(site, attempt, index, rule.model, seed, worker)

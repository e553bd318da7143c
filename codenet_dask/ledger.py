"""Ground-truth fault accounting: every injected fault, and what became of it.

The injector's log (what was injected, where, how large; ``faults.log``) is matched against what
the system reported (``ProductReport`` per product and attempt, scrub repairs, rollbacks). Each
injected fault lands in exactly one class:

- ``corrected``: its block was located and its value replaced in the accepted result (or, for a
  fault in stored weights, every later product corrected around it and a scrub rebuilt it);
- ``recomputed``: it hit an attempt whose result was thrown away (detected, product recomputed);
- ``rolled-back``: its operation never produced an accepted result (the caller rolled back);
- ``benign``: it was not caught, and changed its value by no more than the numerical tolerance;
- ``undetected``: it was not caught and changed a value beyond tolerance — the failure CodeNet
  exists to prevent. Uncoded runs have many; codenet and replication r=3 within capacity none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .faults import InjectedFault, Site
from .judge import Judge
from .protocol.reports import ProductReport

Outcome = Literal["corrected", "recomputed", "rolled-back", "benign", "undetected"]
OUTCOMES: tuple[Outcome, ...] = ("corrected", "recomputed", "rolled-back", "benign", "undetected")

#: Largest relative change of a value (vs the block's largest magnitude) that counts as benign:
#: what the worst-case roundoff bounds of a checked product can hide in each precision.
BENIGN_TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-2}

_PRODUCT_STEPS = ("block-forward", "block-backward", "project", "decode", "verify")


@dataclass
class FaultLedger:
    """Matches injected faults with reports; see the module docstring."""

    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))
    injected: list[InjectedFault] = field(default_factory=list)
    products: dict[tuple[str, int], ProductReport] = field(default_factory=dict)
    repairs: dict[str, list[tuple[int, tuple[int, ...]]]] = field(default_factory=dict)
    rolled_back: set[tuple[str, int]] = field(default_factory=set)
    #: Products a step submitted and then dropped, as one before them was not accepted as submitted
    #: (``steps.GraphStep``): whatever some worker computed of them was thrown away and redone.
    discarded: set[tuple[str, int]] = field(default_factory=set)
    #: Per layer, the first attempt of the initial encoding kept: one done again on healthy
    #: workers (after a quarantine) discards the attempts before it.
    reencoded: dict[str, int] = field(default_factory=dict)
    #: The independent judge of the run (``codenet_dask.judge``); without one, faults the system
    #: did not catch are classed by their size against ``BENIGN_TOLERANCE`` instead.
    judge: Judge | None = None

    @property
    def tolerance(self) -> float:
        return BENIGN_TOLERANCE[np.dtype(self.dtype)]

    def add_injected(self, faults: Iterable[InjectedFault]) -> None:
        known = {(f.site, f.attempt) for f in self.injected}
        self.injected += [f for f in faults if (f.site, f.attempt) not in known]

    def add_product(self, report: ProductReport) -> None:
        self.products[(report.layer, report.op)] = report
        self.repairs.setdefault(report.layer, []).extend((report.op, tuple(c)) for c in report.repaired)

    def add_scrub(self, layer: str, op: int, report: dict) -> None:
        self.repairs.setdefault(layer, []).extend((op, tuple(c)) for c in report["repaired"])

    def add_discarded(self, layer: str, op: int) -> None:
        self.discarded.add((layer, op))

    def add_rollback(self, layer: str, ops: Iterable[int]) -> None:
        self.rolled_back.update((layer, op) for op in ops)

    def classify(self, fault: InjectedFault) -> Outcome:
        """The one class this fault belongs to."""
        site = fault.site
        if (site.layer, site.op) in self.rolled_back:
            return "rolled-back"
        if (site.layer, site.op) in self.discarded:
            return "recomputed"
        if site.op == 0 and site.step in ("encode", "scrub") and fault.attempt < self.reencoded.get(site.layer, 0):
            return "recomputed"  # an initial encoding that was discarded and done again
        report = self.products.get((site.layer, site.op))
        if site.step in _PRODUCT_STEPS or (site.step == "activation" and report is not None):
            if report is None or report.accepted_attempt is None:
                return "rolled-back"
            if fault.attempt != report.accepted_attempt:
                return "recomputed"
            if self.judge is not None:
                return self._judged_product(fault, report)
            # An activation fault lives inside one consumer block task: it shows as that block.
            if (site.step.startswith("block-") or site.step == "activation") and site.block in (
                report.detected_by_attempt.get(fault.attempt, [])
            ):
                return "corrected"
            if site.step == "project" and fault.relative_magnitude > self.tolerance:
                return "corrected"  # the verifier excluded it; data never flows through projections
        elif self.judge is not None:
            return self._judged_weights(site)
        elif _own(site) is None:
            return "benign"  # a scrub's share or read: it decides what is rewritten (checked), never is
        elif self._weight_fault_handled(site):
            return "corrected"
        return "benign" if fault.relative_magnitude <= self.tolerance else "undetected"

    def _judged_product(self, fault: InjectedFault, report: ProductReport) -> Outcome:
        """A fault in an accepted attempt: undetected if the judge found the output wrong; else
        corrected where the system placed it, benign (below the standard) where it did not."""
        assert self.judge is not None
        verdict = self.judge.products.get((fault.site.layer, fault.site.op))
        if verdict is not None and not verdict.correct:
            return "undetected"
        found = report.detected_by_attempt.get(fault.attempt, [])
        # A block's own site names it; a projection site names (worker, kind, ...): kind 1 is one
        # block's values sent to the second round, (worker, 1, *label).
        block = tuple(fault.site.block)
        if fault.site.step == "project":
            block = block[2:] if block[1:2] == (1,) else ()
        return "corrected" if block in found else "benign"

    def _judged_weights(self, site: Site) -> Outcome:
        """A fault in stored weights (encode, update and its factors), judged over its own window:
        from its operation to the next weight fault on the same block (after that, what the judge
        sees is the later fault's). Undetected if the judge found its block wrong at a checkpoint in
        the window, or a product of the layer wrong while the block was; corrected if the block was
        wrong and then repaired (or the system rebuilt or corrected around it); benign if it never
        was wrong by the standard."""
        assert self.judge is not None
        matches = _weight_matcher(site)
        later = [
            f.site.op
            for f in self.injected
            if f.site.layer == site.layer
            and f.site.op > site.op
            and f.site.step in _WEIGHT_STEPS
            and any(matches(c, coords=True) for c in _coords(f.site))
        ]
        end = min(later, default=float("inf"))
        checks = [(op, kept, wrong) for op, kept, wrong in self.judge.checks.get(site.layer, []) if site.op <= op < end]
        hit = [any(matches(c, coords=True) for c in wrong) for _, _, wrong in checks]
        if hit and hit[0]:
            kept_wrong = any(kept and h for (_, kept, _), h in zip(checks, hit))
            until = next((op for (op, _, _), h in zip(checks, hit) if not h), end)
            wrong_use = any(
                not v.correct
                for (layer, op), v in self.judge.products.items()
                if layer == site.layer and site.op < op < until
            )
            return "undetected" if kept_wrong or wrong_use else "corrected"
        repaired = any(site.op <= op < end and matches(tuple(c)) for op, c in self.repairs.get(site.layer, []))
        detected = any(
            any(matches(tuple(d)) for d in r.detected)
            for (layer, op), r in self.products.items()
            if layer == site.layer and site.op < op < end
        )
        return "corrected" if repaired or detected else "benign"

    def _weight_fault_handled(self, site: Site) -> bool:
        """A fault in stored blocks (encode/update): rebuilt by a scrub, or corrected at each use."""
        matches = _weight_matcher(site)
        if any(op >= site.op and matches(tuple(c)) for op, c in self.repairs.get(site.layer, [])):
            return True
        later = [r for (layer, op), r in self.products.items() if layer == site.layer and op > site.op]
        return bool(later) and all(
            any(matches(tuple(d)) for d in r.detected_by_attempt.get(r.accepted_attempt, []))  # type: ignore[arg-type]  # None (never accepted) gets []
            for r in later
        )

    def outcomes(self) -> list[tuple[InjectedFault, Outcome]]:
        return [(f, self.classify(f)) for f in self.injected]

    def summary(self) -> dict[str, int]:
        """Counts per class; they add up to ``injected``."""
        counts = Counter(outcome for _, outcome in self.outcomes())
        return {"injected": len(self.injected), **{k: counts.get(k, 0) for k in OUTCOMES}}


_WEIGHT_STEPS = ("encode", "update", "activation", "scrub")


def _own(site: Site) -> tuple[int, ...] | None:
    """The block label a weight fault can have spoilt; ``None``: any block of its layer.

    Encode and update sites name one block, ``(a, b)`` or replica ``(a, b, r)``; an update's factor
    pieces are activated and encoded by every block for itself (sites ``(side, index, *label)``); a
    scrub's rewrite of a block is ``(worker, 2, *label)``, while its syndrome shares and the values
    it reads (``(worker, 0 | 1, ...)``), and an update's factor check (``(worker, 3, word)``: which
    entries are marked for rebuilding, ``kernels.factors``) decide what any block of the layer is
    rewritten with.
    """
    if site.step == "scrub":
        return tuple(site.block[2:]) if site.block[1] == 2 else None
    if site.op > 0 and site.step in ("activation", "encode"):
        return tuple(site.block[2:])
    return tuple(site.block)


def _coords(site: Site) -> list[tuple[int, ...]]:
    """The systematic block coordinates a weight fault spoils values of (a scrub's reads: none)."""
    own = _own(site)
    return [] if own is None else [own[:2]]


def _weight_matcher(site: Site) -> Callable[..., bool]:
    """Which stored block a weight fault can have spoilt (:func:`_own`), as a predicate on block
    labels. With ``coords=True`` the predicate takes a systematic block coordinate (the judge's)
    and matches any replica of it.
    """
    own = _own(site)

    def matches(label: tuple[int, ...], coords: bool = False) -> bool:
        if own is None:
            return True
        if coords:
            return tuple(label) == own[:2]
        return tuple(label) == own or (len(own) == 2 and tuple(label) == (*own, 0))

    return matches

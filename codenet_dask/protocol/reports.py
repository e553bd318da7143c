"""What the protocol reports about each operation (plain data, for the ledger, the CLI and the dashboard)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..codes import CodewordCheck


@dataclass
class ProductReport:
    """What one coded product found: blocks checked, errors detected/corrected, and where."""

    operation: str
    layer: str
    op: int = 0
    blocks_checked: int = 0
    detected: list[tuple[int, ...]] = field(default_factory=list)
    corrected: list[tuple[int, ...]] = field(default_factory=list)
    uncorrectable_codewords: list[int] = field(default_factory=list)
    recomputed: int = 0
    #: Attempts that passed their deadline (counted in ``recomputed`` too).
    timeouts: int = 0
    #: Blocks found wrong in each attempt, and which attempt's result was accepted (None: none).
    detected_by_attempt: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)
    accepted_attempt: int | None = None
    #: Stored blocks a scrub between attempts rebuilt (a faulty update had left them wrong).
    repaired: list[tuple[int, ...]] = field(default_factory=list)

    def merge_verdicts(self, attempt: int, verdicts: Sequence[tuple[CodewordCheck, ...]], label) -> None:
        """Fold in what every decoder of one attempt found (``label(t, j, a)`` names the block)."""
        detected, corrected = set(self.detected), set(self.corrected)
        found = set(self.detected_by_attempt.get(attempt, []))
        for t, per_decoder in enumerate(verdicts):
            for j, check in enumerate(per_decoder):
                for a in check.bad:
                    found.add(label(t, j, a))
                    if check.status == "corrected":
                        corrected.add(label(t, j, a))
                if check.status == "uncorrectable" and j not in self.uncorrectable_codewords:
                    self.uncorrectable_codewords.append(j)
        self.detected_by_attempt[attempt] = sorted(found)
        self.detected, self.corrected = sorted(detected | found), sorted(corrected)

    @property
    def errors_detected(self) -> int:
        return len(self.detected)

    @property
    def errors_corrected(self) -> int:
        return len(self.corrected)

    def as_dict(self) -> dict[str, object]:
        return {
            "operation": self.operation,
            "layer": self.layer,
            "op": self.op,
            "blocks_checked": self.blocks_checked,
            "errors_detected": self.errors_detected,
            "errors_corrected": self.errors_corrected,
            "detected_at": [list(x) for x in self.detected],
            "corrected_at": [list(x) for x in self.corrected],
            "uncorrectable_codewords": list(self.uncorrectable_codewords),
            "recomputed": self.recomputed,
            "timeouts": self.timeouts,
            "accepted_attempt": self.accepted_attempt,
            "repaired": [list(x) for x in self.repaired],
        }

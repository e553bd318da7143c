"""Ground-truth records of injected faults (what the injector decided and what it changed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hook import Site
from .models import ErrorModel


@dataclass(frozen=True)
class FaultDecision:
    """The fault that hits one (site, attempt): which rule, which model, and its private RNG seed."""

    site: Site
    attempt: int
    rule: int
    model: ErrorModel
    seed: int
    worker: str | None = None

    def corrupt(self, values: np.ndarray) -> np.ndarray:
        """The corrupted copy of ``values`` (the same copy every time)."""
        return self.model.corrupt(values, np.random.default_rng(self.seed))


@dataclass(frozen=True)
class InjectedFault:
    """Ground truth of one injected fault, for the ledger.

    ``relative_magnitude`` = max|corrupted - clean| / max|clean| (``models.relative_change``):
    ``inf`` for NaN/Inf, ``0.0`` if the fault changed nothing numerically.
    """

    site: Site
    attempt: int
    model: ErrorModel
    relative_magnitude: float
    worker: str | None = None

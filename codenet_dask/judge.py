"""The independent judge: is an accepted result right, whatever the checks said?

A result is right when it matches the same computation done fault-free in higher precision
(float64 for a float32 run, ``np.longdouble`` for a float64 one: ``higher``) within ``FACTOR``
(20) times that computation's own error in the working dtype (never less than one unit roundoff
of the result's magnitude, so an exactly representable clean result does not make the standard
zero). The judge knows nothing of codes, thresholds or reports:

- the weights: a long-double shadow of the systematic weights follows every accepted update
  (``W -= lr D X^T`` with the accepted factors) beside a fault-free twin in the working dtype; the
  stored weights are held against the shadow after every update and at every checkpoint. A block
  still wrong at a checkpoint (or the end of the run) was accepted wrong;
- every accepted product: the output against ``shadow @ x`` in long double (``x`` the accepted
  operand), next to the same product of the fault-free twin in the working dtype. (The weights a
  product should use are the shadow's: a wrong stored block the product corrected around does not
  make it wrong, one it let through does.)

The fault ledger (``ledger.FaultLedger``) takes its classes from these verdicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import exact

__all__ = ["FACTOR", "Judge", "Verdict", "error_ratio", "higher"]

#: An accepted result may be at most this many times the clean computation's own error.
FACTOR = 20.0


def higher(dtype: np.dtype) -> type:
    """The precision results of ``dtype`` are judged in: float64 for float32 (through BLAS, fast),
    long double for float64 (11 more bits on x86; its products from exact float64 GEMMs, ``exact``)."""
    return np.float64 if np.dtype(dtype) == np.float32 else np.longdouble


def _high_matmul(a: np.ndarray, b: np.ndarray, high: type) -> np.ndarray:
    """``a @ b`` in ``high``: float64 through BLAS, long double from exact float64 GEMMs
    (``exact.matmul``: the plain long double matmul is ~20 x slower)."""
    if high is np.longdouble:
        return exact.matmul(a, b)
    return a.astype(high) @ b.astype(high)


@dataclass(frozen=True)
class Verdict:
    """The judge's verdict on one accepted operation: ``ratio`` is its error in units of the
    standard (correct iff ``ratio <= FACTOR``); ``wrong`` names the blocks found wrong (weights)."""

    correct: bool
    ratio: float
    wrong: tuple[tuple[int, int], ...] = ()


def error_ratio(accepted: np.ndarray, exact: np.ndarray, clean: np.ndarray) -> float:
    """``max |accepted - exact|`` over ``max(max |clean - exact|, u max |exact|)``."""
    high = higher(clean.dtype)
    exact = np.asarray(exact, dtype=high)
    u = float(np.finfo(clean.dtype).eps) / 2
    with np.errstate(invalid="ignore", over="ignore"):
        own = float(np.max(np.abs(clean.astype(high) - exact), initial=0.0))
        unit = max(own, u * float(np.max(np.abs(exact), initial=0.0)), float(np.finfo(np.float64).tiny))
        got = float(np.max(np.abs(accepted.astype(high) - exact), initial=0.0))
    return got / unit if np.isfinite(got) else float("inf")


@dataclass
class _Weights:
    """One layer's shadow (long double) and fault-free twin (working dtype) of its systematic weights."""

    shadow: np.ndarray
    twin: np.ndarray
    blocks: tuple[int, int]  # block grid (kr, kc)
    block_shape: tuple[int, int]


@dataclass
class Judge:
    """Judges a training run's accepted products and weights; see the module docstring."""

    products: dict[tuple[str, int], Verdict] = field(default_factory=dict)
    #: Per layer, in order: (layer op, is a checkpoint, blocks wrong then) after every update and
    #: at every checkpoint.
    checks: dict[str, list[tuple[int, bool, frozenset]]] = field(default_factory=dict)
    _weights: dict[str, _Weights] = field(default_factory=dict)
    _saved: dict[str, _Weights] = field(default_factory=dict)

    def start(self, name: str, weights: np.ndarray, blocks: tuple[int, int], block_shape: tuple[int, int]) -> None:
        """Follow layer ``name`` from its initial (user-given, exact) weights."""
        self.follow(name, np.asarray(weights, dtype=higher(weights.dtype)), np.array(weights), blocks, block_shape)

    def follow(
        self, name: str, shadow: np.ndarray, twin: np.ndarray, blocks: tuple[int, int], block_shape: tuple[int, int]
    ) -> None:
        """Follow layer ``name`` from a given shadow and twin (a resumed run's, from its journal);
        they are also what a rollback returns to until the next checkpoint."""
        self._weights[name] = _Weights(shadow, twin, blocks, block_shape)
        self._saved[name] = copy.deepcopy(self._weights[name])

    def saved_weights(self) -> dict[str, _Weights]:
        """The shadows and twins as of the last checkpoint (what a resumed run continues from)."""
        return self._saved

    def product(self, name: str, op: int, operand: np.ndarray, accepted: np.ndarray, transpose: bool) -> Verdict:
        """Judge an accepted ``W @ operand`` (``W.T`` for backprop)."""
        w = self._weights[name]
        shadow, twin = (w.shadow.T, w.twin.T) if transpose else (w.shadow, w.twin)
        clean = twin @ operand
        ratio = error_ratio(accepted, _high_matmul(shadow, operand, shadow.dtype.type), clean)
        verdict = Verdict(bool(ratio <= FACTOR), float(ratio))
        self.products[(name, op)] = verdict
        return verdict

    def update(self, name: str, op: int, stored: np.ndarray, delta: np.ndarray, x: np.ndarray, lr: float) -> Verdict:
        """Follow an accepted update; ``stored``: the systematic weights the layer now holds."""
        w = self._weights[name]
        high = w.shadow.dtype.type
        w.shadow = w.shadow - high(lr) * _high_matmul(delta, x.T, high)
        w.twin = w.twin - w.twin.dtype.type(lr) * (delta @ x.T)
        verdict = self._compare(w, stored)
        self.checks.setdefault(name, []).append((op, False, frozenset(verdict.wrong)))
        return verdict

    def checkpoint(self, name: str, op: int, stored: np.ndarray) -> Verdict:
        """The stored weights as a checkpoint keeps them (after its scrub; ``op``: the layer's
        operation count then); remember the shadow for a rollback."""
        w = self._weights[name]
        verdict = self._compare(w, stored)
        self.checks.setdefault(name, []).append((op, True, frozenset(verdict.wrong)))
        self._saved[name] = copy.deepcopy(w)
        return verdict

    def rollback(self) -> None:
        """The run went back to its last checkpoint: so does the shadow."""
        self._weights = copy.deepcopy(self._saved)

    def _compare(self, w: _Weights, stored: np.ndarray) -> Verdict:
        (kr, kc), (bh, bw) = w.blocks, w.block_shape
        wrong, worst = [], 0.0
        for i in range(kr):
            for j in range(kc):
                window = (slice(i * bh, (i + 1) * bh), slice(j * bw, (j + 1) * bw))
                if stored[window].size == 0:
                    continue
                ratio = error_ratio(stored[window], w.shadow[window], w.twin[window])
                worst = max(worst, ratio)
                if not ratio <= FACTOR:
                    wrong.append((i, j))
        return Verdict(not wrong, worst, tuple(wrong))

    def weights_wrong_after(self, name: str, op: int) -> tuple[frozenset, frozenset | None]:
        """Blocks of ``name`` wrong at the first check at or after operation ``op``, and at the first
        checkpoint at or after it (None if none followed: the run ended or gave up)."""
        later = [(checkpoint, wrong) for o, checkpoint, wrong in self.checks.get(name, []) if o >= op]
        first = later[0][1] if later else frozenset()
        kept = next((wrong for checkpoint, wrong in later if checkpoint), None)
        return first, kept

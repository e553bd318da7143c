"""A pure-numpy reference of one GPD-coded dense layer: what an executor must reproduce.

The layer holds the P stored pieces of W (one per worker, encoded once) and runs the three products
of a training step on them exactly as the workers would — each worker's own product on its own
piece, its inputs encoded for it — then decodes with error location and correction. Nothing is
re-encoded after construction (``encode_count`` stays 1); the update keeps the pieces a codeword.

Each piece carries ``drift``: a bound on the standard deviation of its entries' distance from the
exact codeword, from the encoding and from every update's roundoff (roundings of different steps
independent and unbiased: variances add). Forward and backward checks take it into account, and
:meth:`PolyDotLayer.scrub` re-measures it from the pieces' own syndrome.

``fault``: a hook ``fault(kind, stacked) -> stacked`` applied to the workers' results of each step
kind ("forward", "backward", "update" — the new pieces) before anyone checks them, to inject
errors in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import UncorrectableError
from .polydot import PolyDotCheck, PolyDotCode
from .roundoff import unit_roundoff

FaultHook = Callable[[str, np.ndarray], np.ndarray]


@dataclass
class PolyDotLayer:
    """W (outputs x inputs) held as P GPD pieces; forward, backward and update with decoding.

    >>> from codenet_dask.codes import polydot_code
    >>> w = np.random.default_rng(0).standard_normal((8, 8))
    >>> layer = PolyDotLayer.encode(w, polydot_code(2, 2, 12))
    >>> x = np.ones((8, 2))
    >>> bool(np.allclose(layer.forward(x), w @ x)), layer.encode_count
    (True, 1)
    >>> layer.update(np.ones((8, 2)), x, lr=0.5)
    >>> bool(np.allclose(layer.weights(), w - 0.5 * np.ones((8, 2)) @ x.T)), layer.encode_count
    (True, 1)
    """

    code: PolyDotCode
    shape: tuple[int, int]
    pieces: np.ndarray = field(repr=False)
    drift: np.ndarray = field(repr=False)
    fault: FaultHook | None = field(default=None, repr=False)
    encode_count: int = 0
    checks: list[tuple[str, PolyDotCheck]] = field(default_factory=list, repr=False)

    @classmethod
    def encode(cls, w: np.ndarray, code: PolyDotCode, fault: FaultHook | None = None) -> PolyDotLayer:
        """Encode W once into the P pieces (the only encode of the layer's life)."""
        layer = cls(code, w.shape, code.encode_weights(w), code.encoding_drift(w), fault)
        layer.encode_count = 1
        return layer

    @property
    def dtype(self) -> np.dtype:
        """The real dtype the layer computes in."""
        return np.finfo(self.pieces.dtype).dtype

    def _inject(self, kind: str, stacked: np.ndarray) -> np.ndarray:
        return stacked if self.fault is None else self.fault(kind, stacked.copy())

    def _accept(self, kind: str, decoded) -> np.ndarray:
        self.checks.append((kind, decoded.check))
        if decoded.values is None:
            raise UncorrectableError(
                f"{kind} product of a {self.code.m}x{self.code.n} GPD layer is uncorrectable "
                f"({decoded.check.to_dict()}); recompute it or roll back",
                report=decoded.check,
            )
        return decoded.values

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``W x``: every worker multiplies its piece by its encoded ``x``; decoded from the results."""
        x_pieces = self.code.encode_forward_input(x.astype(self.dtype, copy=False))
        results = self._inject("forward", self.code.forward(self.pieces, x_pieces))
        scale = self.code.forward_scale(self.pieces, x_pieces, results, self.drift)
        bound = self.code.forward_bound(self.pieces, x_pieces)
        return self._accept("forward", self.code.decode_forward(results, scale, bound=bound))

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """``Wᵀ delta`` from the same pieces (no transposed copy, no re-encode)."""
        d_pieces = self.code.encode_backward_input(delta.astype(self.dtype, copy=False))
        results = self._inject("backward", self.code.backward(self.pieces, d_pieces))
        scale = self.code.backward_scale(self.pieces, d_pieces, results, self.drift)
        bound = self.code.backward_bound(self.pieces, d_pieces)
        return self._accept("backward", self.code.decode_backward(results, scale, bound=bound))

    def update(self, delta: np.ndarray, x: np.ndarray, lr: float) -> None:
        """``W <- W - lr delta xᵀ``: each worker updates its own piece with its encoded factors."""
        u, v = self.code.encode_update_factors(delta.astype(self.dtype), x.astype(self.dtype))
        new = self._inject("update", self.code.update(self.pieces, u, v, lr))
        ur = unit_roundoff(self.dtype)
        step = lr * np.sqrt(np.abs(u.astype(np.complex128)) ** 2 @ np.swapaxes(np.abs(v) ** 2, -1, -2))
        terms = 2 * u.shape[-1] + self.code.m + self.code.n
        # From the old piece and the factors, never from the (possibly wrong) new piece itself.
        biggest = np.max(np.abs(self.pieces), axis=(1, 2)).astype(np.float64) + np.max(step, axis=(1, 2))
        added = ur**2 * (terms * np.max(step, axis=(1, 2)) ** 2 + biggest**2)
        self.drift = np.sqrt(self.drift**2 + added)
        self.pieces = new

    def weights(self) -> np.ndarray:
        """W decoded from the pieces (least squares over all of them)."""
        return self.code.decode_weights(self.pieces, *self.shape)

    def scrub(self, repair: bool = True) -> PolyDotCheck:
        """Check the pieces are one codeword; rebuild located bad pieces; re-measure the drift.

        The out-of-code part of the drift is what the checks see; its energy over the syndrome's
        ``P - mn`` dimensions estimates the per-entry sd (a 4-sigma upper confidence bound is kept).
        """
        check = self.code.check_weights(self.pieces, self.drift[:, None, None])
        self.checks.append(("scrub", check))
        if check.status == "uncorrectable" or not repair:
            return check
        if check.bad:
            self.pieces = self.code.rebuild_pieces(self.pieces, check.bad)
        self.drift = np.full(self.code.workers, self._measured_drift())
        return check

    def _measured_drift(self) -> float:
        code = self.code.code("weights")
        g = code.generator()
        flat = self.pieces.reshape(self.code.workers, -1).astype(np.complex128 if self.code.complex_pieces else float)
        residual = flat - g @ (np.linalg.pinv(g) @ flat)
        dims = (self.code.workers - self.code.blocks) * flat.shape[1] * (2 if self.code.complex_pieces else 1)
        estimate = math.sqrt(float(np.sum(np.abs(residual) ** 2)) / dims)
        floor = unit_roundoff(self.dtype) * float(np.max(np.abs(flat)))
        return max(estimate * (1 + 4 / math.sqrt(dims)), floor)

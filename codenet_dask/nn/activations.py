"""Activations and loss gradients as operand transforms (``kernels.shards.Transform``).

Each is applied by every block that consumes it, to its own copy of its input piece: a faulty
activation then spoils one block product, which the product's codeword check catches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Relu:
    """``max(pre, 0)`` of the one source (a layer's verified pre-activation)."""

    def __call__(self, sources: Sequence[np.ndarray], window: slice) -> np.ndarray:
        return np.maximum(sources[0][window], 0)


@dataclass(frozen=True)
class ReluGrad:
    """``grad * (pre > 0)``: sources are (gradient, pre-activation)."""

    def __call__(self, sources: Sequence[np.ndarray], window: slice) -> np.ndarray:
        grad, pre = sources[0], sources[1]
        return np.where(pre[window] > 0, grad[window], 0).astype(grad.dtype, copy=False)


@dataclass(frozen=True)
class SoftmaxXentGrad:
    """Rows of the softmax cross-entropy gradient of the logits (the one source) w.r.t. the logits."""

    labels: np.ndarray = field(compare=False)
    classes: int = 0

    def __call__(self, sources: Sequence[np.ndarray], window: slice) -> np.ndarray:
        return softmax_grad(sources[0], self.labels, self.classes)[window]


def softmax_grad(logits: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``(softmax(logits) - onehot(labels)) / batch`` (padding rows beyond ``classes`` get zero)."""
    z = logits[:classes].astype(np.float64)
    z = z - z.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    p[labels, np.arange(labels.size)] -= 1.0
    grad = np.zeros_like(logits)
    grad[:classes] = p / labels.size
    return grad

"""The multi-layer perceptron's plain numpy math: initialisation, prediction, loss, accuracy."""

from __future__ import annotations

import itertools

import numpy as np


def init_weights(sizes: list[int], dtype: np.dtype, seed: int) -> list[np.ndarray]:
    """He-initialised weights (outputs x inputs) for layer widths ``sizes``."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((m, n)) * np.sqrt(2.0 / n)).astype(dtype) for n, m in itertools.pairwise(sizes)]


def predict(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class scores of a plain numpy forward pass (used for evaluation, not training)."""
    for w in weights[:-1]:
        x = np.maximum(w @ x, 0)
    return weights[-1] @ x


def accuracy(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict(weights, x), axis=0) == y))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(axis=0, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=0, keepdims=True))
    return float(-np.mean(log_p[labels, np.arange(labels.size)]))

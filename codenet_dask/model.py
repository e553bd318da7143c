"""A trained network for prediction in plain numpy: :func:`load_model` reads it from a store (decoded,
verified weights of the newest checkpoint) or from a file ``codenet-dask export`` wrote.

Samples are rows here, as in scikit-learn: ``predict(x)`` takes ``x`` of shape (samples, features)
and returns one class number per sample; ``predict_proba`` the softmax probabilities. The forward
pass is the training's own (ReLU hidden layers, a linear last layer), so a model scores its run's
test split exactly as the run reported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ShapeMismatchError
from .nn import accuracy
from .nn import predict as forward


@dataclass
class TrainedModel:
    """Weights (outputs x inputs per layer, in order) and what the store recorded about their run."""

    weights: list[np.ndarray]
    names: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        """Widths from input to output, e.g. [784, 128, 10]."""
        return [self.weights[0].shape[1], *(w.shape[0] for w in self.weights)]

    @property
    def record(self) -> dict[str, Any]:
        """The training run's record (config, data, accuracy, outcome); empty if none was stored."""
        record = self.attrs.get("record") or {}
        return json.loads(record) if isinstance(record, str) else dict(record)

    @property
    def classes_(self) -> np.ndarray:
        return np.arange(self.weights[-1].shape[0])

    def _columns(self, x: np.ndarray) -> np.ndarray:
        """Samples as contiguous columns in the weights' dtype: the layout the training evaluates."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.layers[0]:
            raise ShapeMismatchError(
                f"x must have shape (samples, {self.layers[0]}) for this {'-'.join(map(str, self.layers))} "
                f"network, got {x.shape}"
            )
        return np.ascontiguousarray(x.astype(self.weights[0].dtype, copy=False).T)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Class scores (logits), shape (samples, classes)."""
        return forward(self.weights, self._columns(x)).T

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities, shape (samples, classes); rows sum to 1."""
        z = self.decision_function(x)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most likely class of every sample."""
        return np.argmax(self.decision_function(x), axis=1)

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on ``(x, y)``."""
        return accuracy(self.weights, self._columns(x), np.asarray(y))


def load_model(path: str | os.PathLike[str], checkpoint: str | int | None = None) -> TrainedModel:
    """The network stored at ``path``: a codenet_dask store (its newest checkpoint, or ``checkpoint``;
    scrubbed, and refused if its blocks do not verify) or an exported ``.nc``/``.zarr``/``.npz``."""
    from .store import CodedStore
    from .store.export import read_exported, read_weights

    p = Path(path)
    if p.suffix.lower() in (".nc", ".npz") or (p.suffix.lower() == ".zarr" and not (p / "refs").is_dir()):
        names, weights, attrs = read_exported(p)
        return TrainedModel(weights, names, attrs)
    with CodedStore.open(p) as store:
        stored = read_weights(store, checkpoint)
    attrs = {"store": str(store.root), "checkpoint": stored.checkpoint.id, "step": stored.checkpoint.step}
    return TrainedModel(stored.weights, stored.names, {**attrs, "record": stored.record or {}})

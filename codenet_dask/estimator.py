"""A scikit-learn classifier whose training runs CodeNet on Dask workers.

:class:`CodedMLPClassifier` is the :class:`~codenet_dask.training.Trainer` behind the estimator
interface people already use (``fit``, ``predict``, ``predict_proba``, ``score``, ``partial_fit``,
``get_params``/``set_params``), so it drops into pipelines, ``cross_val_score`` and grid searches.
Samples are rows here, as scikit-learn expects; the Trainer's layers compute ``W @ X`` with samples
as columns, so the data is transposed once on the way in. Training happens on the cluster, every
product checked and corrected; prediction is a plain numpy forward pass with the weights the
Trainer verified (scrubbed grids) at the end of training.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import dask.array as da
import numpy as np
import xarray as xr
from distributed import Client
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .cluster import connect
from .codes import ProductCode
from .data import Dataset
from .errors import FaultSpecError
from .faults import parse_fault_spec
from .ledger import OUTCOMES
from .nn import predict
from .strategies import STRATEGIES, Strategy
from .training import TrainConfig, Trainer, TrainSummary

#: What a seed drawn for ``random_state=None`` or a RandomState may be (the Trainer's seeds are >= 0).
_MAX_SEED = 2**31 - 1


class CodedMLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained with coded (CodeNet) layers on Dask workers.

    Every layer's weights are encoded with a real-valued error-correcting code over the workers;
    each block product of a training step is checked, and wrong results are corrected or
    recomputed (a product wrong through ``max_attempts`` rolls the run back to its last
    checkpoint). ReLU hidden layers without biases, softmax cross-entropy, mini-batch SGD with
    the learning rate decayed by ``lr_decay`` after each epoch.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers; each must be at least ``grid``.
    strategy : {"codenet", "uncoded", "replication"}
        How layers are protected: the coded grid, nothing (the baseline), or ``replicas`` copies.
    grid : int
        Each layer's weights are cut into ``grid x grid`` systematic blocks.
    parity : tuple of int
        Parity block-rows and block-columns of the product code (``codenet`` only).
    replicas : int
        Copies of every block (``replication`` only).
    faults : str or None
        Soft errors injected on the workers, a ``--faults`` spec such as ``"bitflip:0.01"``;
        None (the default) injects none.
    epochs : int
        Passes over the data in :meth:`fit`.
    batch_size : int
        Samples per SGD step.
    lr : float
        The SGD step size of the first epoch.
    lr_decay : float
        Factor in (0, 1] applied to the step size after each epoch of :meth:`fit`.
    dtype : {"float64", "float32"}
        Precision of the weights and of every product.
    random_state : int, RandomState or None
        Seed of the initial weights, the batch order and the fault draws; an int reproduces a
        fit bit for bit.
    checkpoint_every : int
        Steps between checkpoints in the store (a rollback returns to the last one).
    scrub_every : int
        Steps between scrubs of the resident grids (rebuilding blocks a faulty update left wrong).
    max_attempts : int
        Attempts of a product before the run rolls back.
    client : distributed.Client, str or None
        Where to train: a Client (used as is, never closed), a scheduler address (connected for
        each fit), or None to start a LocalCluster sized for the machine for each fit and close it.
        A pickled estimator drops a Client (it comes back as None).
    store : str, path or None
        A new folder for :meth:`fit`'s checkpoint store, kept afterwards (it holds the coded
        weights); None keeps it in a temporary folder removed after the fit.

    Attributes
    ----------
    classes_ : ndarray
        The class labels seen in ``fit``.
    n_features_in_ : int
        Features of ``X`` seen in ``fit``.
    coefs_ : list of ndarray
        Weight matrices, ``coefs_[i]`` of shape (inputs, outputs) of layer i as in
        scikit-learn's MLPClassifier (there are no intercepts).
    history_ : xarray.Dataset
        ``loss`` per step (the mini-batch loss), ``rollbacks`` (cumulative) per step,
        ``accuracy`` per epoch (on the training data, with the verified weights) and
        ``learning_rate`` per epoch.
    fault_summary_ : xarray.Dataset
        ``faults`` (layer x outcome): every injected fault in exactly one class of the
        ground-truth ledger; ``detected`` (layer): blocks found wrong; ``rollbacks``.
    n_iter_ : int
        Epochs trained (``fit`` and every ``partial_fit`` since).
    """

    history_: xr.Dataset
    fault_summary_: xr.Dataset

    def __init__(
        self,
        hidden: tuple[int, ...] = (128,),
        strategy: str = "codenet",
        grid: int = 2,
        parity: tuple[int, int] = (2, 2),
        replicas: int = 3,
        faults: str | None = None,
        epochs: int = 3,
        batch_size: int = 64,
        lr: float = 0.1,
        lr_decay: float = 0.7,
        dtype: str = "float64",
        random_state: int | np.random.RandomState | None = 0,
        checkpoint_every: int = 25,
        scrub_every: int = 10,
        max_attempts: int = 3,
        client: Client | str | None = None,
        store: str | Path | None = None,
    ) -> None:
        self.hidden = hidden
        self.strategy = strategy
        self.grid = grid
        self.parity = parity
        self.replicas = replicas
        self.faults = faults
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.dtype = dtype
        self.random_state = random_state
        self.checkpoint_every = checkpoint_every
        self.scrub_every = scrub_every
        self.max_attempts = max_attempts
        self.client = client
        self.store = store

    # -- training -------------------------------------------------------------------------
    def fit(self, X, y) -> CodedMLPClassifier:
        """Train a new network on ``X`` (n_samples x n_features) and labels ``y``, ``epochs`` epochs."""
        config = self._config(epochs=self.epochs, seed=self._seed())
        X, y = self._validate_xy(X, y, reset=True)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self._check_fits(config, X.shape[1], self.classes_.size)
        store = self._new_store()
        weights, history, faults = self._train(config, X, codes, self.classes_.size, None, store)
        self._keep(weights, history, faults, appended=False)
        return self

    def partial_fit(self, X, y, classes=None) -> CodedMLPClassifier:
        """One more epoch over ``X``, ``y``, starting from the current weights.

        The first call on an unfitted estimator needs ``classes`` (all labels that will ever
        come). Each call is its own short run on the cluster (encode, one epoch, verify), at the
        constant learning rate ``lr`` and with the seed advanced by the epochs done, so
        successive calls see new batch orders and fault draws. It keeps no store.
        """
        if self.store is not None:
            raise ValueError(
                "partial_fit keeps no checkpoint store (each call is a short run of its own); "
                "set store=None, or use fit to keep one"
            )
        first = not hasattr(self, "coefs_")
        if first and classes is None:
            raise ValueError("the first call to partial_fit needs classes=, all labels the data will ever hold")
        config = self._config(epochs=1, seed=self._seed() + (0 if first else self.n_iter_), lr_decay=1.0)
        known = np.unique(np.asarray(classes)) if classes is not None else self.classes_
        if not first and not np.array_equal(known, self.classes_):
            raise ValueError(f"classes={known.tolist()} differ from classes_={self.classes_.tolist()} of the fit")
        X, y = self._validate_xy(X, y, reset=first)
        unknown = np.setdiff1d(y, known)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()} not in classes {known.tolist()}")
        self._check_fits(config, X.shape[1], known.size)
        start = None if first else [w.T for w in self.coefs_]
        weights, history, faults = self._train(config, X, np.searchsorted(known, y), known.size, start, None)
        self.classes_ = known
        self._keep(weights, history, faults, appended=not first)
        return self

    # -- prediction -----------------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities, n_samples x n_classes (a dask array for a dask array ``X``)."""
        check_is_fitted(self, "coefs_")
        if isinstance(X, da.Array):
            return self._lazy(X, self.predict_proba, self.coefs_[0].dtype, chunks=(X.chunks[0], (self.classes_.size,)))
        return softmax(self._scores(X), axis=0).T

    def predict(self, X):
        """Class labels of ``X`` (a dask array for a dask array ``X``)."""
        check_is_fitted(self, "coefs_")
        if isinstance(X, da.Array):
            return self._lazy(X, self.predict, self.classes_.dtype, drop_axis=1)
        return self.classes_[np.argmax(self._scores(X), axis=0)]

    def _scores(self, X) -> np.ndarray:
        """Logits, n_classes x n_samples, of a plain numpy forward pass with the verified weights."""
        X = validate_data(self, X, reset=False, dtype=self.coefs_[0].dtype)
        return predict([w.T for w in self.coefs_], X.T)

    def _lazy(self, X: da.Array, method, dtype: np.dtype, **chunking) -> da.Array:
        """``method`` block by block over the rows of a dask array, its features in one chunk."""
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X.shape}, but {type(self).__name__} expects (n_samples, {self.n_features_in_})"
            )
        return X.rechunk({1: -1}).map_blocks(method, dtype=dtype, **chunking)

    # -- scikit-learn protocol ------------------------------------------------------------
    def __sklearn_clone__(self) -> CodedMLPClassifier:
        """Clone as scikit-learn does, but share a live Client: a connection cannot be deep-copied."""
        if not isinstance(self.client, Client):
            return super().__sklearn_clone__()
        twin = clone(type(self)(**{**self.get_params(deep=False), "client": None}))
        twin.client = self.client
        return twin

    def __getstate__(self) -> dict:
        """What pickle keeps: everything but a live Client (it comes back as None)."""
        state = super().__getstate__()
        if isinstance(state.get("client"), Client):
            state = {**state, "client": None}
        return state

    # -- internals ------------------------------------------------------------------------
    def _seed(self) -> int:
        """The run's seed: ``random_state`` itself when it is an int, else one drawn from it."""
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            if self.random_state < 0:
                raise ValueError(f"random_state must be >= 0, got {self.random_state}")
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(_MAX_SEED))

    def _config(self, *, epochs: int, seed: int, lr_decay: float | None = None) -> TrainConfig:
        """The TrainConfig of these parameters, each checked, or a ValueError naming the bad one."""
        counts = {
            "grid": self.grid,
            "replicas": self.replicas,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "checkpoint_every": self.checkpoint_every,
            "scrub_every": self.scrub_every,
            "max_attempts": self.max_attempts,
        }
        for name, value in counts.items():
            _count(value, name)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy == "replication" and self.replicas < 2:
            raise ValueError(f"replicas must be at least 2 for strategy='replication', got {self.replicas}")
        hidden = _widths(self.hidden)
        parity = (0, 0) if self.strategy != "codenet" else _pair(self.parity)
        for name in ("lr", "lr_decay"):
            value = getattr(self, name)
            if not _real(value) or not value > 0 or (name == "lr_decay" and value > 1):
                bound = "in (0, 1]" if name == "lr_decay" else "a number > 0"
                raise ValueError(f"{name} must be {bound}, got {value!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        faults = "none" if self.faults is None else self.faults
        try:
            parse_fault_spec(faults)
        except FaultSpecError as exc:
            raise ValueError(f"faults={self.faults!r}: {exc}") from None
        if self.strategy == "codenet":
            ProductCode(self.grid, self.grid, *parity)  # CodeParameterError (a ValueError) names the problem
        return TrainConfig(
            strategy=cast(Strategy, self.strategy),  # checked against STRATEGIES above
            hidden=hidden,
            grid=int(self.grid),
            parity=parity,
            replicas=int(self.replicas),
            epochs=epochs,
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            lr_decay=float(self.lr_decay if lr_decay is None else lr_decay),
            dtype=self.dtype,
            faults=faults,
            seed=seed,
            checkpoint_every=int(self.checkpoint_every),
            scrub_every=int(self.scrub_every),
            max_attempts=int(self.max_attempts),
        )

    def _validate_xy(self, X, y, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """Checked numpy ``X`` (in the training dtype, already validated) and 1-D ``y``; dask arrays
        are computed (the Trainer batches from memory)."""
        X = X.compute() if isinstance(X, da.Array) else X
        y = y.compute() if isinstance(y, da.Array) else y
        X, y = validate_data(self, X, y, reset=reset, dtype=np.dtype(self.dtype))
        check_classification_targets(y)
        return X, y

    def _check_fits(self, config: TrainConfig, features: int, classes: int) -> None:
        """Two classes at least, and every layer at least ``grid`` wide on both sides (it is cut into
        grid x grid blocks); checked before a cluster starts."""
        if classes < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got 1 class")
        for what, width in (("n_features", features), ("classes", classes), *(("hidden", h) for h in config.hidden)):
            if width < config.grid:
                raise ValueError(
                    f"{what} = {width} is fewer than grid={config.grid} blocks per side; "
                    f"use grid <= {width} (every layer is cut into grid x grid blocks)"
                )

    def _new_store(self) -> Path | None:
        if self.store is None:
            return None
        path = Path(self.store).expanduser()
        if path.exists():
            raise ValueError(f"store {str(path)!r} already exists; give a new folder (or store=None)")
        return path

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Client]:
        """The Client given, or one on the scheduler address given, or on a LocalCluster it starts."""
        if isinstance(self.client, Client):
            yield self.client
            return
        with connect(scheduler=self.client) as client:
            yield client

    def _train(
        self,
        config: TrainConfig,
        X: np.ndarray,
        codes: np.ndarray,
        classes: int,
        start: Sequence[np.ndarray] | None,
        store: Path | None,
    ) -> tuple[list[np.ndarray], xr.Dataset, xr.Dataset]:
        """One Trainer run on ``X`` (as columns) and label indices ``codes``, evaluated on the same data."""
        x = np.ascontiguousarray(X.T)
        labels = codes.astype(np.int64)
        data = Dataset(x, labels, x, labels, classes, "fit")
        losses: dict[int, tuple[float, int]] = {}

        def record(row: dict) -> None:  # a rollback redoes steps: the redo's loss replaces the first
            losses[row["position"]] = (row["loss"], row["rollbacks"])

        with self._connection() as client:
            trainer = Trainer(client, data, config, store, initial_weights=start)
            try:
                summary = trainer.run(record)
                weights = trainer.verified_weights()
                faults = _fault_summary(trainer, summary)
            finally:
                trainer.close()
        return weights, _history(config, losses, summary.accuracy_by_epoch), faults

    def _keep(self, weights: list[np.ndarray], history: xr.Dataset, faults: xr.Dataset, *, appended: bool) -> None:
        """Store a finished run's results; ``appended`` continues the history and the fault counts."""
        self.coefs_ = [w.T for w in weights]
        if appended:
            history = _continued(self.history_, history)
            with xr.set_options(keep_attrs=True):
                faults = self.fault_summary_ + faults
        self.history_, self.fault_summary_ = history, faults
        self.n_iter_ = history.sizes["epoch"]


def _count(value, name: str) -> int:
    """A positive integer (numpy integers too, bools not), or a ValueError naming ``name``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def _widths(hidden) -> tuple[int, ...]:
    """Hidden widths as a tuple of positive ints (an int is one hidden layer)."""
    if isinstance(hidden, numbers.Integral):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ValueError(f"hidden must be a tuple of layer widths like (128,) or (), got {hidden!r}")
    return tuple(_count(h, "hidden") for h in hidden)


def _pair(parity) -> tuple[int, int]:
    try:
        rows, cols = parity
        return operator.index(rows), operator.index(cols)
    except (TypeError, ValueError):
        raise ValueError(
            f"parity must be two integers (block-rows, block-columns) like (2, 2), got {parity!r}"
        ) from None


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _history(config: TrainConfig, losses: dict[int, tuple[float, int]], accuracy: list[float]) -> xr.Dataset:
    """The run's course: per step (1-based) its loss and the rollbacks so far; per epoch its accuracy."""
    steps = sorted(losses)
    epochs = np.arange(1, len(accuracy) + 1)
    return xr.Dataset(
        {
            "loss": ("step", [losses[s][0] for s in steps], {"long_name": "mini-batch cross-entropy loss"}),
            "rollbacks": ("step", [losses[s][1] for s in steps], {"long_name": "rollbacks so far"}),
            "accuracy": ("epoch", accuracy, {"long_name": "accuracy on the training data, verified weights"}),
            "learning_rate": ("epoch", config.lr * config.lr_decay ** (epochs - 1), {"long_name": "SGD step size"}),
        },
        coords={"step": np.asarray(steps, dtype=np.int64), "epoch": epochs},
    )


def _continued(before: xr.Dataset, after: xr.Dataset) -> xr.Dataset:
    """``after`` appended to ``before``: its steps and epochs numbered on, its rollbacks added on."""
    after = after.assign_coords(step=after.step + before.sizes["step"], epoch=after.epoch + before.sizes["epoch"])
    after = after.assign(rollbacks=after.rollbacks + before.rollbacks[-1].item())
    per_step, per_epoch = ["loss", "rollbacks"], ["accuracy", "learning_rate"]
    return xr.merge(
        [
            xr.concat([before[per_step], after[per_step]], dim="step"),
            xr.concat([before[per_epoch], after[per_epoch]], dim="epoch"),
        ]
    )


def _fault_summary(trainer: Trainer, summary: TrainSummary) -> xr.Dataset:
    """The ledger's ground truth per layer: each injected fault in one class, blocks found wrong, rollbacks."""
    layers = [layer.name for layer in trainer.layers]
    counts = np.zeros((len(layers), len(OUTCOMES)), dtype=np.int64)
    for fault, outcome in trainer.ledger.outcomes():
        counts[layers.index(fault.site.layer), OUTCOMES.index(outcome)] += 1
    detected = [
        sum(len(report.detected) for (name, _), report in trainer.ledger.products.items() if name == layer)
        for layer in layers
    ]
    return xr.Dataset(
        {
            "faults": (("layer", "outcome"), counts, {"long_name": "injected faults by ground-truth outcome"}),
            "detected": ("layer", np.asarray(detected, dtype=np.int64), {"long_name": "blocks found wrong"}),
            "rollbacks": ((), summary.faults["rollbacks"], {"long_name": "rollbacks to the last checkpoint"}),
        },
        coords={"layer": layers, "outcome": list(OUTCOMES)},
        attrs={"strategy": summary.strategy, "fault_spec": trainer.config.faults, "workers": summary.workers},
    )

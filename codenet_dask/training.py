"""Training a multi-layer perceptron whose every layer is coded (or a baseline) on Dask workers.

Each SGD step runs, per layer, the checked products of :class:`~codenet_dask.layer.CodedLayer`:
feedforward through all layers (ReLU applied by each consuming block task itself), the softmax
cross-entropy gradient (computed by each consumer from the small logits), then from the top
layer down: backprop ``W^T D`` (before the update, with the old weights), and the update
``W -= lr D X^T`` on the coded blocks. A product still wrong after its recomputations raises
UncorrectableError: the run rolls back to the last checkpoint in the store and continues from
there (the lost steps are redone with fresh fault draws). Every ``scrub_every`` steps the
resident grids are scrubbed (rebuilding blocks a faulty update left wrong); every
``checkpoint_every`` steps the changed blocks are written and committed atomically.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from .data import Dataset, batches
from .errors import ShapeMismatchError, StepTimeoutError, UncorrectableError, WorkerLostError
from .executors import as_executor
from .faults import RandomFaults
from .layer import Activated, CodedLayer
from .ledger import FaultLedger
from .nn import Relu, ReluGrad, SoftmaxXentGrad, accuracy, cross_entropy, init_weights
from .store import CodedStore
from .strategies import ReplicatedLayer, Strategy, build_layer

#: What a rollback to the last checkpoint recovers from: products wrong beyond what recomputation
#: fixed, and work lost with a worker (pinned tasks noticing it, scatters and fetches to it failing).
RECOVERABLE = (UncorrectableError, WorkerLostError, StepTimeoutError, CommClosedError, KilledWorker, CancelledError)

#: Rollbacks after which a run gives up (the fault rate is beyond what checkpoints can absorb).
MAX_ROLLBACKS = 20


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how; the CLI's options map onto these fields."""

    strategy: Strategy = "codenet"
    hidden: tuple[int, ...] = (128,)
    grid: int = 2
    parity: tuple[int, int] = (2, 2)
    replicas: int = 3
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.1
    lr_decay: float = 0.7
    dtype: str = "float64"
    faults: str = "bitflip:0.01:steps=block-forward+block-backward+update,nan:0.002:steps=block-forward+block-backward"
    seed: int = 0
    checkpoint_every: int = 25
    scrub_every: int = 10
    max_attempts: int = 3


@dataclass
class TrainSummary:
    """The ``train --json`` object (the README's "Training" section lists its fields)."""

    strategy: str
    workers: int
    layers: list[int]
    epochs: int
    iterations: int
    test_accuracy: float
    final_loss: float
    wall_seconds: float
    faults: dict
    store: str
    dataset: str = "mnist"
    accuracy_by_epoch: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class Subscriber(Protocol):
    """Something that follows a run (the dashboard's publisher, ``codenet_dask.observe``)."""

    def publish(self, position: int, total: int) -> None: ...

    def finish(self) -> None: ...


class Trainer:
    """One training run on a cluster; see the module docstring."""

    def __init__(
        self,
        target: Any,
        data: Dataset,
        config: TrainConfig,
        store_path: str | Path | None = None,
        *,
        initial_weights: Sequence[np.ndarray] | None = None,
    ):
        """``target``: a ``distributed.Client`` or an executor (``codenet_dask.executors``).
        ``initial_weights`` (outputs x inputs per layer) continue a model trained before, e.g. by
        the estimator's ``partial_fit``; by default the weights are He-initialised from the seed."""
        self.executor = as_executor(target)
        self.data, self.config = data, config
        self.dtype = np.dtype(config.dtype)
        self.sizes = [data.features, *config.hidden, data.classes]
        self.initial_weights = _checked_weights(initial_weights, self.sizes, self.dtype)
        #: This run's id: its faults are logged under it, apart from other runs on the same cluster.
        self.run_id = uuid.uuid4().hex[:12]
        self.hook = RandomFaults.from_string(config.faults, seed=config.seed, run=self.run_id)
        #: Followers of the run (``codenet_dask.observe.DashboardPublisher``), told after every step.
        self.subscribers: list[Subscriber] = []
        self._tmp = None if store_path else tempfile.TemporaryDirectory(prefix="codenet-store-")
        self.store_path = Path(store_path) if store_path else Path(self._tmp.name) / "model"
        self.ledger = FaultLedger(dtype=self.dtype)
        self.rollbacks = 0
        self.layers: list[CodedLayer] = []
        self.checkpoint_position = 0
        self.checkpoint_ops: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def build(self) -> None:
        grid = (self.config.grid, self.config.grid)
        weights = self.initial_weights
        if weights is None:
            weights = init_weights(self.sizes, self.dtype, self.config.seed)
        for i, w in enumerate(weights):
            layer = build_layer(
                self.config.strategy,
                self.executor,
                w,
                grid=grid,
                parity=self.config.parity,
                replicas=self.config.replicas,
                name=f"dense{i}",
                hook=self.hook,
                seed=self.config.seed,
            )
            if layer.encode_report is not None:
                self.ledger.add_scrub(layer.name, 0, layer.encode_report)
            layer.max_attempts = self.config.max_attempts
            self.layers.append(layer)
        with CodedStore.create(self.store_path, model="mlp") as store:
            self._checkpoint(store, 0)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- one SGD step ---------------------------------------------------------------------
    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """Forward, loss gradient, backward and update of every layer; returns the batch loss."""
        x = self.layers[0].ship(x, "x")  # the first layer's forward and update share it
        pre, operand = [], x
        for i, layer in enumerate(self.layers):
            result = layer.forward(operand)
            self.ledger.add_product(result.report)
            pre.append(result)
            operand = Activated((result,), Relu()) if i < len(self.layers) - 1 else result
        logits = pre[-1].to_numpy()[: self.data.classes]
        delta = Activated((pre[-1],), SoftmaxXentGrad(y, self.data.classes))
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if i > 0:
                back = layer.backward(delta)
                self.ledger.add_product(back.report)
            layer.update(delta, x if i == 0 else Activated((pre[i - 1],), Relu()), lr)
            if i > 0:
                delta = Activated((back, pre[i - 1]), ReluGrad())
        return cross_entropy(logits.astype(np.float64), y)

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, store: CodedStore, position: int, scrubbed: bool = False) -> None:
        """Scrub (so no wrong block is stored; ``scrubbed``: the caller just did), then write the
        changed blocks and commit."""
        if not scrubbed:
            self._scrub()
        for layer in self.layers:
            layer.save(store)
        store.checkpoint(step=position)
        self.checkpoint_position = position
        self.checkpoint_ops = {layer.name: layer.ops for layer in self.layers}

    def _scrub(self) -> None:
        """Repair stored blocks a faulty update or encode left wrong (uncoded layers have nothing to check)."""
        if self.config.strategy == "uncoded":
            return
        for layer in self.layers:
            report = layer.scrub()
            self.ledger.add_scrub(layer.name, layer.ops, report)
            if report["unrepairable"]:
                raise UncorrectableError(f"layer {layer.name}: blocks {report['unrepairable']} cannot be rebuilt")

    def _rollback(self) -> int:
        """Restore every layer from the last checkpoint (onto the workers); returns its position."""
        self.rollbacks += 1
        for layer in self.layers:
            # Every operation since the checkpoint is undone, faults in it included (also when the
            # run gives up below: those faults were caught, not accepted).
            self.ledger.add_rollback(layer.name, range(self.checkpoint_ops[layer.name] + 1, layer.ops + 1))
        if self.rollbacks > MAX_ROLLBACKS:
            raise UncorrectableError(
                f"gave up after {MAX_ROLLBACKS} rollbacks: the fault rate is beyond what the code and "
                f"checkpoints can absorb; lower --faults or add parity"
            )
        restored = []
        self.executor.wait_for_workers(1, timeout=60)  # a lost worker's replacement may still be starting
        with CodedStore.open(self.store_path) as store:
            for layer in self.layers:
                kwargs = {"replicas": layer.copies} if isinstance(layer, ReplicatedLayer) else {}
                new = type(layer).from_store(
                    self.executor, store, layer.name, hook=self.hook, seed=self.config.seed, **kwargs
                )
                new.ops = layer.ops  # keep fault sites fresh: a redo is not a replay
                new.max_attempts = layer.max_attempts
                restored.append(new)
        self.layers = restored
        return self.checkpoint_position

    # -- the loop -------------------------------------------------------------------------
    def run(self, progress: Callable[[dict], None] | None = None) -> TrainSummary:
        start = time.perf_counter()
        if not self.layers:
            self.build()
        per_epoch = -(-self.data.y_train.size // self.config.batch_size)
        total = per_epoch * self.config.epochs
        epoch_batches: tuple[int, list] = (-1, [])
        position, loss, by_epoch = 0, float("nan"), []
        with CodedStore.open(self.store_path, mode="r+") as store:
            while position < total:
                for subscriber in self.subscribers:
                    subscriber.publish(position, total)
                epoch, index = divmod(position, per_epoch)
                if epoch_batches[0] != epoch:  # one epoch in memory; a rollback may regenerate one
                    epoch_batches = (
                        epoch,
                        list(
                            batches(
                                self.data.x_train,
                                self.data.y_train,
                                self.config.batch_size,
                                seed=self.config.seed,
                                epoch=epoch,
                            )
                        ),
                    )
                xb, yb = epoch_batches[1][index]
                lr = self.config.lr * self.config.lr_decay**epoch
                try:
                    loss = self.step(xb.astype(self.dtype, copy=False), yb, lr)
                    end_of_epoch = (position + 1) % per_epoch == 0
                    if end_of_epoch:  # before the checkpoint: an evaluation that fails rolls back past it
                        by_epoch.append(self.test_accuracy())  # scrubs first
                    if (position + 1) % self.config.checkpoint_every == 0:
                        self._checkpoint(store, position + 1, scrubbed=end_of_epoch)
                    elif (position + 1) % self.config.scrub_every == 0 and not end_of_epoch:
                        self._scrub()
                except RECOVERABLE:
                    position = self._rollback()
                    del by_epoch[position // per_epoch :]  # a rollback past an epoch's end takes its evaluation back
                    continue
                position += 1
                if progress:
                    progress(
                        {
                            "epoch": epoch + 1,
                            "position": position,
                            "of": total,
                            "loss": loss,
                            "rollbacks": self.rollbacks,
                            "test_accuracy": by_epoch[-1] if end_of_epoch else None,
                        }
                    )
            if self.checkpoint_position != position:  # the run ends at an epoch's end: evaluated, so scrubbed
                self._checkpoint(store, position, scrubbed=True)
        self.ledger.add_injected(self.executor.collect_faults(self.run_id))
        for subscriber in self.subscribers:
            subscriber.finish()
        led = self.ledger.summary()
        detected = sum(len(r.detected) for r in self.ledger.products.values())
        return TrainSummary(
            strategy=self.config.strategy,
            workers=len(self.executor.workers()),
            layers=self.sizes,
            epochs=self.config.epochs,
            iterations=total,
            test_accuracy=by_epoch[-1] if by_epoch else self.test_accuracy(),
            final_loss=loss,
            wall_seconds=time.perf_counter() - start,
            faults={
                "injected": led["injected"],
                "detected": detected,
                "corrected": led["corrected"],
                "recomputed": led["recomputed"],
                "rollbacks": self.rollbacks,
                "rolled_back": led["rolled-back"],
                "benign": led["benign"],
                "undetected": led["undetected"],
            },
            store=str(self.store_path) if self._tmp is None else "(temporary)",
            dataset=self.data.name,
            accuracy_by_epoch=by_epoch,
        )

    def test_accuracy(self) -> float:
        """Test accuracy of the current weights, scrubbed first so that no block a faulty update
        left wrong is evaluated (UncorrectableError if one cannot be rebuilt: roll back)."""
        return accuracy(self.verified_weights(), self.data.x_test, self.data.y_test)

    def verified_weights(self) -> list[np.ndarray]:
        """Every layer's weights (outputs x inputs), from grids scrubbed first: no block a faulty
        update left wrong is returned (UncorrectableError if one cannot be rebuilt)."""
        self._scrub()
        return [layer.gather_weights() for layer in self.layers]


def _checked_weights(
    weights: Sequence[np.ndarray] | None, sizes: list[int], dtype: np.dtype
) -> list[np.ndarray] | None:
    """``weights`` as arrays of ``dtype``, one (outputs x inputs) matrix per layer of ``sizes``."""
    if weights is None:
        return None
    expected = [(m, n) for n, m in itertools.pairwise(sizes)]
    arrays = [np.asarray(w, dtype=dtype) for w in weights]
    if [a.shape for a in arrays] != expected:
        raise ShapeMismatchError(
            f"initial weights have shapes {[a.shape for a in arrays]}, but layers {'-'.join(map(str, sizes))} "
            f"need {expected} (outputs x inputs)"
        )
    return arrays

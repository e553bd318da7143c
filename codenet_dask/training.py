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
import logging
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from . import journal
from .blas import one_thread
from .data import Dataset
from .errors import (
    DivergedError,
    GaveUpError,
    NonFiniteInputError,
    ShapeMismatchError,
    StepTimeoutError,
    StoreFormatError,
    UncorrectableError,
    WorkerLostError,
)
from .executors import as_executor
from .faults import RandomFaults
from .judge import Judge
from .layer import CodedLayer
from .ledger import FaultLedger
from .nn import SoftmaxXentGrad, cross_entropy, init_weights, predict, softmax_grad
from .protocol.reports import ProductReport
from .quarantine import Quarantine, Quarantined
from .runstate import RunState
from .steps import Event, GraphStep
from .store import CodedStore
from .strategies import ReplicatedLayer, Strategy, UncodedLayer, build_layer

#: What a rollback to the last checkpoint recovers from: products wrong beyond what recomputation
#: fixed, and work lost with a worker (pinned tasks noticing it, scatters and fetches to it failing).
RECOVERABLE = (UncorrectableError, WorkerLostError, StepTimeoutError, CommClosedError, KilledWorker, CancelledError)

log = logging.getLogger(__name__)

#: Rollbacks after which a run gives up (the fault rate is beyond what checkpoints can absorb).
MAX_ROLLBACKS = 20
#: The attempts of the k-th initial encoding of a layer start at k x this (more than any
#: ``max_attempts``), so an initialisation done again after a quarantine draws fresh faults.
REENCODE_STRIDE = 100

#: How a run ended (``running`` only inside a store whose run was interrupted).
Status = Literal["running", "completed", "diverged", "gave-up"]


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
    #: Checkpoints the store keeps (older ones are expired and garbage-collected after each new one).
    keep_checkpoints: int = 3
    #: Judge every accepted result against a fault-free long-double computation (``judge``).
    judge: bool = True

    def to_dict(self) -> dict:
        """Plain JSON data (tuples as lists), as the store records it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config :meth:`to_dict` wrote (fields it lacks take their defaults, as when it was written)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StoreFormatError(f"training config has fields {unknown} this codenet_dask does not know")
        typed: dict[str, Any] = {k: tuple(v) if k in ("hidden", "parity") else v for k, v in values.items()}
        return cls(**typed)


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
    #: ``completed``, ``diverged`` (NaN/Inf reached the weights or the loss) or ``gave-up``.
    status: Status = "completed"
    #: The last step the run reached: ``iterations`` if completed, else the step that failed.
    step: int = 0
    #: Why a run did not complete (None if it did).
    reason: str | None = None
    #: The checkpoint step a resumed run started from (0 for a fresh run).
    resumed_from_step: int = 0
    #: Workers taken out of the run for computing wrong: ``{worker, step, wrong, checked, score}``.
    quarantined: list[dict] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: RunState, ledger: FaultLedger, wall_seconds: float, store: str) -> TrainSummary:
        """The summary of a run's state (live, or as a store recorded it) and its fault ledger."""
        led = ledger.summary()
        config = TrainConfig.from_dict(state.config)
        return cls(
            strategy=config.strategy,
            workers=state.workers,
            layers=list(state.layers),
            epochs=config.epochs,
            iterations=-(-state.data["train"] // config.batch_size) * config.epochs,
            test_accuracy=state.test_accuracy,
            final_loss=state.last_loss,
            wall_seconds=wall_seconds,
            faults={
                "injected": led["injected"],
                "detected": sum(len(r.detected) for r in ledger.products.values()),
                "corrected": led["corrected"],
                "recomputed": led["recomputed"],
                "rollbacks": state.rollbacks,
                "rolled_back": led["rolled-back"],
                "benign": led["benign"],
                "undetected": led["undetected"],
            },
            store=store,
            dataset=state.data["name"],
            accuracy_by_epoch=list(state.accuracy_by_epoch),
            status=state.status,  # type: ignore[arg-type]
            step=state.step,
            reason=state.reason,
            resumed_from_step=state.resumed_from_step,
            quarantined=[dict(q) for q in state.quarantined],
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> dict:
        """:meth:`as_dict` with NaN/Inf as None, so the object is strict JSON (``null``)."""
        return _finite_or_none(self.as_dict())


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


class Subscriber(Protocol):
    """Something that follows a run (the dashboard's publisher, ``codenet_dask.observe``)."""

    def publish(self, position: int, total: int) -> None: ...

    def finish(self) -> None: ...


class _Judging:
    """One step's accepted operations (``steps.Event``), judged (``judge.Judge``) once the step has
    run: their outputs and the updated weights reach the client in the step's one gather (with the
    logits), not in a round trip per operation; a step that fails has what it accepted judged too."""

    def __init__(self, trainer: Trainer, x: np.ndarray, y: np.ndarray) -> None:
        self.trainer, self.judge = trainer, cast(Judge, trainer.judge)  # made only when there is a judge
        self.x, self.y = x, y
        self.events: Sequence[Event] = []

    def handles(self, events: Sequence[Event]) -> list[Any]:
        """What to gather for ``events`` (judged by :meth:`finish` next): one copy of every product
        output, every updated shard, in order."""
        self.events = events
        return [h for kind, _, item in events for h in ([item.any_copy] if kind != "update" else item[1])]

    def finish(self, gathered: Sequence[Any]) -> None:
        """Judge the step's operations, in order, from what :meth:`handles` gathered (BLAS on one
        thread: the judge's products are small, and more threads only contend with the workers,
        one per core on a LocalCluster: 2x slower on this 2-core machine)."""
        with one_thread():
            self._judge(gathered)

    def _judge(self, gathered: Sequence[Any]) -> None:
        layers, items = self.trainer.layers, iter(gathered)
        inputs: dict[int, np.ndarray] = {0: self.x}  # layer i's accepted input
        pre: dict[int, np.ndarray] = {}  # layer i's accepted output
        deltas: dict[int, np.ndarray] = {}  # the gradient w.r.t. layer i's output
        for kind, i, item in self.events:
            layer = layers[i]
            if kind == "update":
                op, handles, lr = item
                weights = layer.weights_of(layer.blocks_of([next(items) for _ in handles]))
                self.judge.update(layer.name, op, weights, deltas[i], inputs[i], lr)
                continue
            out = item.trimmed(next(items))
            if kind == "forward":
                self.judge.product(layer.name, item.report.op, inputs[i], out, transpose=False)
                pre[i] = out
                if i + 1 < len(layers):
                    inputs[i + 1] = np.maximum(out, 0)
                else:
                    deltas[i] = softmax_grad(out, np.asarray(self.y, dtype=np.int64), self.trainer.data.classes)
            else:
                self.judge.product(layer.name, item.report.op, deltas[i], out, transpose=True)
                deltas[i - 1] = np.where(pre[i - 1] > 0, out, 0).astype(out.dtype, copy=False)

    def finish_failed(self, events: Sequence[Event]) -> None:
        """Judge what a step that failed accepted, if it can still be fetched (a lost worker's
        cannot: the rollback undoes it all the same)."""
        try:
            self.finish(self.trainer.executor.gather(self.handles(events), "judge a failed step"))
        except RECOVERABLE:
            log.info(
                "the accepted results of the failed step %d could not be fetched for the judge",
                self.trainer.step_reached,
            )


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
        self.store_path = Path(store_path) if store_path else Path(self._tmp.name) / "model"  # type: ignore[union-attr]  # _tmp is set without store_path
        #: The independent judge of every accepted result (``codenet_dask.judge``; ``judge=False``: none).
        self.judge = Judge() if config.judge else None
        #: The judging of the last step, running beside the next one (``settle_judge``).
        self._judging: Future | None = None
        self._judge_pool: ThreadPoolExecutor | None = None
        self.ledger = FaultLedger(dtype=self.dtype, judge=self.judge)
        self.rollbacks = 0
        #: Graphs the steps submitted (one per step when every product is accepted as submitted).
        self.graphs = 0
        #: Blame of the workers from the checks' verdicts, and the workers retired (``quarantine``).
        self.quarantine = Quarantine(self.executor)
        self.layers: list[CodedLayer] = []
        self.checkpoint_position = 0
        self.checkpoint_ops: dict[str, int] = {}
        #: Where the run is: steps done, the step being run, losses and evaluations so far, the outcome.
        self.workers = 0
        self.position = self.step_reached = self.resumed_from_step = 0
        self.last_loss = float("nan")
        self.accuracy_by_epoch: list[float] = []
        self.status: Status = "running"
        self.reason: str | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def build(self) -> None:
        """Encode every layer, verify the encoding and write checkpoint 0. An encoding that does not
        verify (faults in it or in its scrubs beyond what the code repairs, or a quarantine that
        leaves a layer the code cannot rebuild) is done again on the healthy workers (nothing is
        trained yet: the initial weights are the checkpoint), with fresh fault sites (attempts
        from ``REENCODE_STRIDE`` up); ``max_attempts`` times on one cluster, then GaveUpError."""
        weights = self.initial_weights
        if weights is None:
            weights = init_weights(self.sizes, self.dtype, self.config.seed)
        failed = 0  # attempts on the same cluster
        for again in itertools.count():
            retired = len(self.quarantine.retired)
            try:
                self._encode(weights, again * REENCODE_STRIDE)
                self._scrub()
                break
            except UncorrectableError as exc:
                failed = 0 if len(self.quarantine.retired) > retired else failed + 1
                if failed >= self.config.max_attempts:
                    raise GaveUpError(
                        f"the initial encoding did not verify in {failed} attempts ({exc}); lower --faults or add parity"
                    ) from None
                log.warning("the initial encoding is done again on %d workers (%s)", len(self.executor.workers()), exc)
        with CodedStore.create(self.store_path, model="mlp") as store:
            self._checkpoint(store, 0, scrubbed=True)

    def _encode(self, weights: Sequence[np.ndarray], attempt: int) -> None:
        """Every layer encoded from ``weights`` on the executor's workers (fault sites of ``attempt``)."""
        self.workers = len(self.executor.workers())
        grid = (self.config.grid, self.config.grid)
        self.layers = []
        for i, w in enumerate(weights):
            name = f"dense{i}"
            if self.judge is not None:
                bh, bw = -(-w.shape[0] // grid[0]), -(-w.shape[1] // grid[1])
                self.judge.start(name, w, grid, (bh, bw))
            layer = build_layer(
                self.config.strategy,
                self.executor,
                w,
                grid=grid,
                parity=self.config.parity,
                replicas=self.config.replicas,
                name=name,
                hook=self.hook,
                seed=self.config.seed,
                **({"attempt": attempt} if attempt else {}),
            )
            if attempt:
                self.ledger.reencoded[name] = attempt
            layer.max_attempts = self.config.max_attempts
            self.layers.append(layer)
            if layer.encode_report is not None:
                self.ledger.add_scrub(name, 0, layer.encode_report)
                self.quarantine.scrub(layer, layer.encode_report)
                self._retire_suspects()

    def settle_judge(self) -> None:
        """Wait for the judging of the last step (and raise what it raised); before anything reads
        or moves the judge: checkpoints, rollbacks, the summary."""
        if self._judging is not None:
            judging, self._judging = self._judging, None
            judging.result()

    def _judge_thread(self) -> ThreadPoolExecutor:
        if self._judge_pool is None:
            self._judge_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codenet-judge")
        return self._judge_pool

    def close(self) -> None:
        self.settle_judge()
        if self._judge_pool is not None:
            self._judge_pool.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- one SGD step ---------------------------------------------------------------------
    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """Forward, loss gradient, backward and update of every layer, submitted as one graph and
        accepted in order (``steps.GraphStep``); returns the batch loss. The logits and everything
        the judge looks at come back in the step's one gather."""
        judged = _Judging(self, x, y) if self.judge is not None else None
        shipped = self.layers[0].ship(x, "x")  # the first layer's forward and update share it
        graph = GraphStep(self.layers, shipped, SoftmaxXentGrad(y, self.data.classes), lr)
        try:
            logits, gathered = graph.run(self.executor, self._add_product, judged.handles if judged else lambda e: [])
        except RECOVERABLE:
            if judged:
                self.settle_judge()
                judged.finish_failed(graph.events)
            raise
        finally:
            for name, op in graph.discarded:
                self.ledger.add_discarded(name, op)
        self.graphs += graph.rounds
        if judged:  # in a thread, while the cluster runs the next step (joined before the judge is read)
            self.settle_judge()
            self._judging = self._judge_thread().submit(judged.finish, gathered)
        return cross_entropy(logits[: self.data.classes].astype(np.float64), y)

    def _add_product(self, layer: CodedLayer, report: ProductReport) -> None:
        self.ledger.add_product(report)
        self.quarantine.product(layer, report)

    # -- quarantine -----------------------------------------------------------------------
    def _retire_suspects(self) -> None:
        """Retire the workers the blame points at and move every layer off them: their blocks are
        rebuilt from the code (UncorrectableError where it cannot: the caller rolls back)."""
        gone = self._retire_pending()
        if not gone:
            return
        self.workers = len(self.executor.workers())
        for layer in self.layers:  # only coded layers give evidence (``quarantine``)
            self._scrub_layer(layer, innocent=layer.evacuate(gone))

    def _blame_failed(self, exc: BaseException) -> None:
        """Evidence from a product that stayed uncorrectable, then retire the suspects without
        moving the layers: the rollback that follows restores them onto the healthy workers."""
        report = getattr(exc, "report", None)
        if isinstance(report, ProductReport):
            layer = next((la for la in self.layers if la.name == report.layer), None)
            if layer is not None:
                self.quarantine.product(layer, report)
        if self._retire_pending():
            self.workers = len(self.executor.workers())

    def _retire_pending(self) -> list[str]:
        """Retire the suspects, once the faults their logs hold are in the ledger (ground truth
        from a closed worker would be lost)."""
        if not self.quarantine.pending:
            return []
        self.ledger.add_injected(self.executor.collect_faults(self.run_id))
        return self.quarantine.retire_pending(self.step_reached)

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, store: CodedStore, position: int, scrubbed: bool = False) -> None:
        """Scrub (so no wrong block is stored; ``scrubbed``: the caller just did), then write the
        changed blocks and commit."""
        self.settle_judge()
        if not scrubbed:
            self._scrub()
        try:
            for layer in self.layers:
                blocks = layer.gather_blocks()  # once, for the store and the judge
                layer.save(store, blocks)
                if self.judge is not None:
                    self.judge.checkpoint(layer.name, layer.ops, layer.weights_of(blocks))
        except NonFiniteInputError as exc:  # the store refuses known-bad blocks: the weights diverged
            raise DivergedError(f"NaN/Inf reached the weights by step {position} ({exc})") from None
        self.checkpoint_position = position
        self.checkpoint_ops = {layer.name: layer.ops for layer in self.layers}
        self._commit_state(store, position)

    def _commit_state(self, store: CodedStore, position: int, message: str = "") -> None:
        """Write the run's state and fault ledger (faults collected from the workers so far) with
        the written blocks as one checkpoint; then expire checkpoints beyond ``keep_checkpoints``."""
        self.settle_judge()
        self.ledger.add_injected(self.executor.collect_faults(self.run_id))
        store.write_run(self.state().to_record(), journal.dumps(self.ledger))
        store.checkpoint(step=position, message=message)
        store.expire(self.config.keep_checkpoints)

    def _record_outcome(self, store: CodedStore) -> None:
        """The run's outcome into the store, next to its last checkpoint's blocks (writes of a
        checkpoint that failed half-way are dropped first)."""
        if store.has_uncommitted_changes():
            store.discard()
        self._commit_state(store, self.checkpoint_position, f"run {self.status} at step {self.step_reached}")

    def state(self) -> RunState:
        """The run as of its last checkpoint (and its outcome, once it has one), for the store."""
        return RunState(
            config=self.config.to_dict(),
            data=self.data.describe(),
            layers=list(self.sizes),
            workers=self.workers,
            position=self.checkpoint_position,
            ops=dict(self.checkpoint_ops),
            rollbacks=self.rollbacks,
            accuracy_by_epoch=list(self.accuracy_by_epoch),
            last_loss=self.last_loss,
            status=self.status,
            reason=self.reason,
            step=self.step_reached,
            resumed_from_step=self.resumed_from_step,
            quarantined=[q.as_dict() for q in self.quarantine.retired],
        )

    def restore(self, state: RunState, ledger: FaultLedger) -> None:
        """Continue the run of ``state`` (read from the store's latest checkpoint): its verified
        blocks go back to the workers, and counters, evaluations and the ledger come back as they
        were, so the rest of the run is the one an uninterrupted run would have done."""
        self.settle_judge()
        self.workers = len(self.executor.workers())
        kind = {"codenet": CodedLayer, "uncoded": UncodedLayer, "replication": ReplicatedLayer}[self.config.strategy]
        kwargs = {"replicas": self.config.replicas} if self.config.strategy == "replication" else {}
        with CodedStore.open(self.store_path) as store:
            self.layers = []
            for name, ops in state.ops.items():
                layer = kind.from_store(self.executor, store, name, hook=self.hook, seed=self.config.seed, **kwargs)
                layer.ops, layer.max_attempts = ops, self.config.max_attempts
                self.layers.append(layer)
        self.ledger = ledger
        self.judge = ledger.judge
        self.checkpoint_position = self.position = self.step_reached = self.resumed_from_step = state.position
        self.checkpoint_ops = dict(state.ops)
        self.rollbacks = state.rollbacks
        self.quarantine.retired = [Quarantined.from_dict(q) for q in state.quarantined]
        self.accuracy_by_epoch = list(state.accuracy_by_epoch)
        self.last_loss = state.last_loss

    def _scrub(self) -> None:
        """Repair stored blocks a faulty update or encode left wrong (uncoded layers have nothing to
        check), then verify what the scrub wrote: a scrub's writes may be faulty too, and what it
        leaves is what a checkpoint stores and an evaluation reads. The verifying scrubs write only
        where they find something wrong (``align=False``), and end once one writes nothing
        (entries a faulty share flagged that decode as right are no reason to scrub again)."""
        if self.config.strategy == "uncoded":
            return
        for layer in self.layers:
            self._scrub_layer(layer)

    def _scrub_layer(self, layer: CodedLayer, innocent: Sequence = ()) -> None:
        """One layer's scrub and its verifying passes (see :meth:`_scrub`); ``innocent``: blocks
        erased on purpose (an evacuation), no evidence against their new owners. A worker the
        verdicts quarantine on the way is retired and the layers moved off it (that scrubs them).

        What a pass writes (rebuilt entries, or an alignment) is verified by the next, which writes
        only what it finds wrong. A grid verified but not aligned (every pass found something to
        rebuild: a faulty update factor's marks, say) is aligned then, and verified again: each
        rebuild adds its sources' rigorous bounds times the code's gain to the rebuilt blocks', and
        only an alignment resets them, so without it they compound from scrub to scrub until the
        thresholds built from them see nothing (the Monte Carlo found products 1e5x their clean
        error accepted)."""
        report, first = layer.scrub(), True
        aligned, rebuilding, passes = not report["entries"], 0, 0  # nothing flagged: aligned (if it can be)
        while True:
            self.ledger.add_scrub(layer.name, layer.ops, report)
            self.quarantine.scrub(layer, report, innocent if first else ())
            if self.quarantine.pending:
                self._retire_suspects()
                return
            if report["unrepairable"]:
                raise UncorrectableError(f"layer {layer.name}: blocks {report['unrepairable']} cannot be rebuilt")
            rebuilding = rebuilding + 1 if report["repaired"] else 0
            passes += 1
            if rebuilding > layer.max_attempts or passes > 3 * (layer.max_attempts + 1):
                raise UncorrectableError(
                    f"layer {layer.name}: every scrub rebuilt entries again ({rebuilding} in a row, {passes} in all)"
                )
            wrote = bool(report["repaired"] or report["aligned"])
            if not first and not wrote and aligned:
                return  # a verifying pass that wrote nothing checked the aligned grid as it stays
            align = not first and not wrote
            report, first = layer.scrub(align=align), False
            aligned = aligned or (align and not report["entries"])

    def _rollback(self) -> int:
        """Restore every layer from the last checkpoint (onto the workers); returns its position."""
        self.settle_judge()
        self.rollbacks += 1
        for layer in self.layers:
            # Every operation since the checkpoint is undone, faults in it included (also when the
            # run gives up below: those faults were caught, not accepted).
            self.ledger.add_rollback(layer.name, range(self.checkpoint_ops[layer.name] + 1, layer.ops + 1))
        if self.rollbacks > MAX_ROLLBACKS:
            raise GaveUpError(
                f"gave up after {MAX_ROLLBACKS} rollbacks: the fault rate is beyond what the code and "
                f"checkpoints can absorb; lower --faults or add parity"
            )
        if self.judge is not None:
            self.judge.rollback()
        self.quarantine.forget_sightings()
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
        """Train to the end, or until the run diverges or gives up; the summary says which."""
        start = time.perf_counter()
        if not self.layers:
            try:
                self.build()
            except (GaveUpError, DivergedError) as exc:  # no verified initial encoding: nothing trained or stored
                self.status, self.reason = "gave-up" if isinstance(exc, GaveUpError) else "diverged", str(exc)
                self.ledger.add_injected(self.executor.collect_faults(self.run_id))
                return self.summary(time.perf_counter() - start)
        with CodedStore.open(self.store_path, mode="r+") as store:
            try:
                self._train(store, progress)
                self.status, self.reason = "completed", None
                if self.checkpoint_position != self.position:  # the run ends at an epoch's end: evaluated, so scrubbed
                    self._checkpoint(store, self.position, scrubbed=True)
                else:
                    self._record_outcome(store)
            except DivergedError as exc:
                self.status, self.reason = "diverged", str(exc)
                self._record_outcome(store)
            except GaveUpError as exc:
                self.status, self.reason = "gave-up", str(exc)
                self._record_outcome(store)
        self.ledger.add_injected(self.executor.collect_faults(self.run_id))
        for subscriber in self.subscribers:
            subscriber.finish()
        return self.summary(time.perf_counter() - start)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.data.y_train.size // self.config.batch_size)

    def _train(self, store: CodedStore, progress: Callable[[dict], None] | None) -> None:
        """The loop: steps from ``self.position`` to the end, checkpoints, scrubs, evaluations, rollbacks."""
        per_epoch = self.steps_per_epoch
        total = per_epoch * self.config.epochs
        epoch_batches: tuple[int, Sequence] = (-1, [])
        position, by_epoch = self.position, self.accuracy_by_epoch
        while position < total:
            for subscriber in self.subscribers:
                subscriber.publish(position, total)
            self.step_reached = position + 1
            epoch, index = divmod(position, per_epoch)
            if epoch_batches[0] != epoch:  # one epoch at a time; a rollback may regenerate one
                epoch_batches = (
                    epoch,
                    self.data.epoch_batches(self.config.batch_size, seed=self.config.seed, epoch=epoch),
                )
            xb, yb = epoch_batches[1][index]
            lr = self.config.lr * self.config.lr_decay**epoch
            try:
                loss = self.step(xb.astype(self.dtype, copy=False), yb, lr)
                if not math.isfinite(loss):
                    raise DivergedError(f"the loss of step {position + 1} is {loss}: NaN/Inf reached the outputs")
                self._retire_suspects()
                end_of_epoch = (position + 1) % per_epoch == 0
                if end_of_epoch:  # before the checkpoint: an evaluation that fails rolls back past it
                    by_epoch.append(self.test_accuracy())  # scrubs first
                if (position + 1) % self.config.checkpoint_every == 0:
                    self._checkpoint(store, position + 1, scrubbed=end_of_epoch)
                elif (position + 1) % self.config.scrub_every == 0 and not end_of_epoch:
                    self._scrub()
            except RECOVERABLE as exc:
                self._blame_failed(exc)
                position = self.position = self._rollback()
                del by_epoch[position // per_epoch :]  # a rollback past an epoch's end takes its evaluation back
                continue
            position = self.position = position + 1
            self.last_loss = loss
            if progress:
                progress(
                    {
                        "epoch": epoch + 1,
                        "position": position,
                        "of": total,
                        "loss": loss,
                        "rollbacks": self.rollbacks,
                        "test_accuracy": by_epoch[-1] if end_of_epoch else None,
                        "detected": sum(len(r.detected) for r in self.ledger.products.values()),
                    }
                )
        self.step_reached = total

    def summary(self, wall_seconds: float) -> TrainSummary:
        """The run's summary as of now (the ``train --json`` object)."""
        self.settle_judge()
        store = str(self.store_path) if self._tmp is None else "(temporary)"
        return TrainSummary.from_state(self.state(), self.ledger, wall_seconds, store)

    def test_accuracy(self) -> float:
        """Test accuracy of the current weights, scrubbed first so that no block a faulty update
        left wrong is evaluated (UncorrectableError if one cannot be rebuilt: roll back)."""
        weights = self.verified_weights()
        correct = total = 0
        for x, y in self.data.test_batches():  # the test set in pieces: it may be streamed from disk
            correct += int(np.sum(np.argmax(predict(weights, x.astype(self.dtype, copy=False)), axis=0) == y))
            total += y.size
        return correct / total

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

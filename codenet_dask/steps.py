"""One SGD step of a coded network as one graph: every operation submitted together, accepted in order.

A step is, in this order: the forward products of every layer, then from the top layer down the
backward product (not for the first layer) and the update. Each product's input is the previous
one's result, passed through an activation that every consuming block applies itself
(``codenet_dask.nn``). Waiting for each product before submitting the next would cost a client
round trip per product; instead every operation of the step is submitted at once
(:meth:`CodedLayer.submit`) and acceptance is decided inside the graph: a product whose operand
was not accepted skips its work, and an update runs only if every product before it was accepted
on every worker (``kernels.shards``). The client then gathers all verdicts (and the logits, and
what the judge reads) in one round trip and settles the products in order. In the common case
every one was accepted and the step is done. Otherwise the first product that was not is settled
the way a product always is (second round, recomputation, scrub: :meth:`CodedLayer.settle`), what
followed it is dropped (a product some workers computed before the markers reached them is
*discarded*: its faults were recomputed, never accepted) and the rest of the step is submitted
again from there. Updates are never undone: one runs only after everything it depends on was
accepted, so the blocks stay one codeword whatever happens to the step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .executors import Executor, Handle
from .kernels.shards import Transform
from .layer import Activated, CodedLayer, Operand, ProductResult, Shipped, Submitted
from .nn import Relu, ReluGrad
from .protocol.reports import ProductReport

Kind = Literal["forward", "backward", "update"]
Op = tuple[Kind, int]
#: What the judge follows, in the step's order: ("forward" | "backward", layer, result) or
#: ("update", layer, (op, the layer's shard handles after it, learning rate)).
Event = tuple[Kind, int, Any]


def step_order(depth: int) -> list[Op]:
    """The operations of one step of a ``depth``-layer network, in the order they depend on each
    other (the first layer has no backward product: nothing consumes it)."""
    order: list[Op] = [("forward", i) for i in range(depth)]
    for i in reversed(range(depth)):
        if i:
            order.append(("backward", i))
        order.append(("update", i))
    return order


@dataclass
class GraphStep:
    """One step over ``layers``: input ``x`` (shipped for the first layer), the loss gradient
    ``loss_grad`` (a transform of the logits each consumer applies), learning rate ``lr``."""

    layers: Sequence[CodedLayer]
    x: Shipped
    loss_grad: Transform
    lr: float
    forward: dict[int, ProductResult] = field(default_factory=dict)
    backward: dict[int, ProductResult] = field(default_factory=dict)
    #: The operations settled so far, in order (what the judge follows).
    events: list[Event] = field(default_factory=list)
    #: (layer, op) of products submitted and then dropped because one before them was not accepted.
    discarded: list[tuple[str, int]] = field(default_factory=list)
    #: Graphs submitted: 1 when every product was accepted as submitted.
    rounds: int = 0

    def run(
        self,
        executor: Executor,
        accepted: Callable[[CodedLayer, ProductReport], None],
        extra: Callable[[Sequence[Event]], list[Handle]] = lambda events: [],
    ) -> tuple[np.ndarray, list[Any]]:
        """Run the step; returns the logits and the values of ``extra(events)`` (handles to fetch
        with them: the judge's). ``accepted`` is told of every product once settled, in order.
        Raises what :meth:`CodedLayer.settle` raises (UncorrectableError: roll back), and
        StepTimeoutError or WorkerLostError from the step's wait."""
        todo = step_order(len(self.layers))
        while todo:
            self.rounds += 1
            batch = self._submit(todo)
            products = [sub for _, sub in batch if isinstance(sub, Submitted)]
            verdicts = [h for sub in products for h in sub.verdicts]
            first = self.rounds == 1
            tentative = [self.forward[len(self.layers) - 1].any_copy, *extra(self._tentative(batch))] if first else []
            unchecked = [h for sub in products if not sub.verdicts for h in sub.first.outputs]
            executor.wait([*verdicts, *tentative, *unchecked], "training step")
            gathered = executor.gather([*verdicts, *tentative], "training step")
            clean = self._settle(batch, gathered[: len(verdicts)], todo, accepted)
            if clean and first:
                return self.logits(gathered[len(verdicts)]), gathered[len(verdicts) + 1 :]
        final = executor.gather([self.forward[len(self.layers) - 1].any_copy, *extra(self.events)], "training step")
        return self.logits(final[0]), final[1:]

    def logits(self, gathered: Any) -> np.ndarray:
        return self.forward[len(self.layers) - 1].trimmed(gathered)

    # -- internals ------------------------------------------------------------------------------
    def _operand(self, kind: Kind, i: int) -> Operand:
        """The input of layer ``i``'s ``kind`` product (for ``update``: its column factor)."""
        if kind == "backward":
            return self._delta(i)
        return self.x if i == 0 else Activated((self.forward[i - 1],), Relu())

    def _delta(self, i: int) -> Operand:
        """The loss gradient with respect to layer ``i``'s output (its row factor, and its
        backward product's operand)."""
        if i == len(self.layers) - 1:
            return Activated((self.forward[i],), self.loss_grad)
        return Activated((self.backward[i + 1], self.forward[i]), ReluGrad())

    def _submit(self, todo: Sequence[Op]) -> list[tuple[Op, Submitted | Event]]:
        """Every operation of ``todo`` started: a product's Submitted, an update's judge event
        (an update gated on every product before it here)."""
        batch: list[tuple[Op, Submitted | Event]] = []
        for kind, i in todo:
            layer = self.layers[i]
            if kind == "update":
                before = [sub for _, sub in batch if isinstance(sub, Submitted)]
                layer.update(self._delta(i), self._operand("forward", i), self.lr, after=before)
                batch.append(((kind, i), ("update", i, (layer.ops, list(layer.shards.values()), self.lr))))
                continue
            sub = layer.submit(kind, self._operand(kind, i))
            (self.forward if kind == "forward" else self.backward)[i] = sub.result
            batch.append(((kind, i), sub))
        return batch

    @staticmethod
    def _tentative(batch: Sequence[tuple[Op, Submitted | Event]]) -> list[Event]:
        """The events of ``batch`` if every product in it is accepted as submitted."""
        return [_event(op, item) for op, item in batch]

    def _settle(
        self,
        batch: Sequence[tuple[Op, Submitted | Event]],
        verdicts: Sequence[Any],
        todo: list[Op],
        accepted: Callable[[CodedLayer, ProductReport], None],
    ) -> bool:
        """Settle ``batch`` in order, taking what is done off ``todo``; True if every product was
        accepted as submitted. At the first that was not, it is settled (second round,
        recomputation) and the products after it are discarded (their updates never ran)."""
        at = 0
        for position, (op, sub) in enumerate(batch):
            if not isinstance(sub, Submitted):  # an update: it ran, as every product before it was accepted
                self.events.append(sub)
                todo.pop(0)
                continue
            mine = verdicts[at : at + len(sub.verdicts)]
            at += len(sub.verdicts)
            clean = all(v.accepted for v in mine)
            result = sub.layer.settle(sub, mine)
            accepted(sub.layer, result.report)
            self.events.append(_event(op, sub))
            todo.pop(0)
            if not clean:
                self.discarded += [
                    (later.layer.name, later.result.report.op)
                    for _, later in batch[position + 1 :]
                    if isinstance(later, Submitted)
                ]
                return False
        return True


def _event(op: Op, item: Submitted | Event) -> Event:
    """The judge's event of one operation of a batch."""
    return (op[0], op[1], item.result) if isinstance(item, Submitted) else item

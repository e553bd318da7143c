"""The baselines CodeNet is compared with, behind the same layer interface.

- ``uncoded``: the ``kr x kc`` systematic blocks only, products summed unchecked. Fastest; a soft
  error goes straight into the result.
- ``replication``: every block stored ``r`` times on different workers (where the cluster has
  them) and every block product computed ``r`` times. ``r = 2`` detects a disagreement and
  recomputes; ``r >= 3`` takes the majority.
- ``codenet``: :class:`~codenet_dask.layer.CodedLayer`.

All three use the same block grid, workers, keys, fault hook and recomputation loop, so a
comparison differs only in the redundancy scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import CodeParameterError, UncorrectableError
from .faults import CorruptionHook
from .kernels.blocks import CodedBlock
from .kernels.shards import Label
from .layer import CodedLayer, holders, scatter_pieces
from .protocol.placement import Coord
from .protocol.plans import replace_plan, replica_plan, systematic_plan
from .protocol.types import Plan

Strategy = Literal["codenet", "uncoded", "replication"]
STRATEGIES: tuple[str, ...] = ("codenet", "uncoded", "replication")


class UncodedLayer(CodedLayer):
    """No redundancy: same grid and workers as the coded layer, nothing checked."""

    decode_kind = "uncoded"

    @classmethod
    def encode(
        cls,
        target: Any,
        weights: np.ndarray,
        grid: tuple[int, int] = (4, 4),
        parity: tuple[int, int] = (0, 0),
        **kwargs,
    ) -> UncodedLayer:
        if tuple(parity) != (0, 0):
            raise CodeParameterError("an uncoded layer has no parity; use parity=(0, 0) or strategy='codenet'")
        return super().encode(target, weights, grid, (0, 0), **kwargs)  # type: ignore[return-value]

    def _blocks_checked(self, step: str) -> int:
        return 0

    def scrub(self) -> dict:
        raise CodeParameterError("an uncoded layer carries no redundancy to check; use codenet or replication")


@dataclass
class ReplicatedLayer(CodedLayer):
    """Each systematic block on ``replicas`` workers; products compared (r=2) or voted (r>=3).

    Blocks are labelled ``(a, b, r)``; replicas of one block have distinct labels, keys and fault
    sites, so Dask never mistakes one for another.
    """

    decode_kind = "replicated"
    replicas: int = 3

    @classmethod
    def encode(
        cls,
        target: Any,
        weights: np.ndarray,
        grid: tuple[int, int] = (4, 4),
        parity: tuple[int, int] = (0, 0),
        *,
        replicas: int = 3,
        hook: CorruptionHook | None = None,
        **kwargs,
    ) -> ReplicatedLayer:
        if not (isinstance(replicas, int) and replicas >= 2):
            raise CodeParameterError(f"replication needs at least 2 replicas, got {replicas!r}")
        if tuple(parity) != (0, 0):
            raise CodeParameterError("replication has no parity blocks; give --replicas instead of --parity")
        layer: ReplicatedLayer = super().encode(target, weights, grid, (0, 0), hook=hook, **kwargs)  # type: ignore[assignment]
        layer._replicate(replicas, np.asarray(weights))
        return layer

    @classmethod
    def from_store(
        cls, target: Any, store, name: str, checkpoint=None, *, replicas: int = 3, **kwargs
    ) -> ReplicatedLayer:
        """Restore replica 0 from a checkpoint and copy it to the other replicas' workers."""
        layer: ReplicatedLayer = super().from_store(target, store, name, checkpoint, **kwargs)  # type: ignore[assignment]
        layer._replicate(replicas)
        return layer

    def _replicate(self, replicas: int, weights: np.ndarray | None = None) -> None:
        """Put every block on ``replicas - 1`` further workers, round robin (fresh keys).

        With ``weights`` (encoding) each replica is made from the user's weights like replica 0,
        through its own fault site: a faulty encode spoils one replica, which the vote outvotes.
        Without (restoring a verified checkpoint) the replicas are copies of replica 0.
        """
        addresses = self.executor.workers()
        kc = self.code.kc
        placement = {
            (a, b, r): addresses[(a * kc + b + r) % len(addresses)]
            for (a, b) in self.placement
            for r in range(replicas)
        }
        key = f"encode-{self.keys.stem()}"
        # Encoding: replicas 1.. are made from the weights; replica 0 (restoring: every replica) is copied.
        fresh = {} if weights is None else {label: w for label, w in placement.items() if label[2] > 0}
        plan = Plan()
        sources = {label: self.shards[self.placement[label[:2]]] for label in placement if label not in fresh}
        copies = replica_plan(sources, placement, self.hook, self.name, key, plan)
        if weights is not None:
            pieces = scatter_pieces(self.executor, weights, self.block_shape, fresh)
            copies.update(systematic_plan(pieces, fresh, self.hook, self.name, key, plan))
        self.replicas, self.placement = replicas, placement
        self.workers = holders(addresses, placement)
        self._assemble(copies, plan)

    @property
    def copies(self) -> int:
        return self.replicas

    def _label(self, job):
        """Replication's verdicts come per block (index ``t * codewords + j``), positions are replicas."""
        forward = job.step == "forward"
        codewords = self.code.kc if forward else self.code.kr

        def label(_: int, index: int, r: int) -> Label:
            t, j = divmod(index, codewords)
            return (t, j, r) if forward else (j, t, r)

        return label

    def _blocks_checked(self, step: str) -> int:
        return self.copies * self.code.kr * self.code.kc

    def gather_blocks(self) -> dict[Coord, CodedBlock]:
        """Every block as its replicas' majority (bit-identical copies), for checkpoints.

        A faulty update leaves one replica wrong for good; saving replica 0 blindly could store it.
        """
        majority, _ = self._vote_replicas()
        return majority

    def _scrub(self, op: int) -> dict:
        """Overwrite replicas that disagree with their block's majority by a fresh copy of it.

        With r = 2 a disagreement has no majority: UncorrectableError (roll back).
        """
        majority, outvoted = self._vote_replicas()
        by_worker: dict[str, dict[Label, CodedBlock]] = {}
        for label in outvoted:
            by_worker.setdefault(self.placement[label], {})[label] = majority[label[:2]]
        if by_worker:
            index = {w: i for i, w in enumerate(self.workers)}
            plan, patched = replace_plan(self.keys.stem(op), self.shards, by_worker, index)
            handles = self.executor.run(plan, list(patched.values()))
            self.executor.wait(handles, f"scrub {self.name}")
            self.shards.update(zip(patched, handles))
        return {"repaired": [list(k) for k in outvoted], "unrepairable": [], "ok": True}

    def _vote_replicas(self) -> tuple[dict[Coord, CodedBlock], list[Label]]:
        """Per block, the value a majority of replicas hold, and the replicas that differ."""
        everything = super().gather_blocks()
        majority, outvoted = {}, []
        for a, b in sorted({label[:2] for label in everything}):
            copies = [everything[(a, b, r)] for r in range(self.copies)]
            votes = [sum(np.array_equal(c.values, d.values) for d in copies) for c in copies]
            best = int(np.argmax(votes))
            if votes[best] * 2 <= len(copies):
                raise UncorrectableError(
                    f"layer {self.name}: the {len(copies)} replicas of block {(a, b)} have no majority; roll back"
                )
            majority[(a, b)] = copies[best]
            outvoted += [(a, b, r) for r, c in enumerate(copies) if not np.array_equal(c.values, copies[best].values)]
        return majority, outvoted


def build_layer(
    strategy: Strategy,
    target: Any,
    weights: np.ndarray,
    grid: tuple[int, int] = (4, 4),
    parity: tuple[int, int] = (2, 2),
    replicas: int = 3,
    **kwargs,
) -> CodedLayer:
    """A layer of the named strategy on ``target`` (a Client or an executor; ``parity`` for codenet,
    ``replicas`` for replication)."""
    if strategy == "codenet":
        return CodedLayer.encode(target, weights, grid, parity, **kwargs)
    if strategy == "uncoded":
        return UncodedLayer.encode(target, weights, grid, **kwargs)
    if strategy == "replication":
        return ReplicatedLayer.encode(target, weights, grid, replicas=replicas, **kwargs)
    raise CodeParameterError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


__all__: Sequence[str] = ("STRATEGIES", "ReplicatedLayer", "Strategy", "UncodedLayer", "build_layer")

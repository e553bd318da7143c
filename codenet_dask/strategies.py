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

import uuid
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from distributed import Client, Future, wait

from . import tasks
from .blocks import CodedBlock
from .errors import CodeParameterError, UncorrectableError
from .faults import CorruptionHook, Site
from .graph import Coord, Plan, ProductSpec, replicated_plan, uncoded_plan, update_plan
from .layer import CodedLayer, Operand

Strategy = Literal["codenet", "uncoded", "replication"]
STRATEGIES: tuple[str, ...] = ("codenet", "uncoded", "replication")


class UncodedLayer(CodedLayer):
    """No redundancy: same grid and workers as the coded layer, nothing checked."""

    @classmethod
    def encode(cls, client: Client, weights: np.ndarray, grid: tuple[int, int] = (4, 4),
               parity: tuple[int, int] = (0, 0), **kwargs) -> "UncodedLayer":
        if tuple(parity) != (0, 0):
            raise CodeParameterError("an uncoded layer has no parity; use parity=(0, 0) or strategy='codenet'")
        return super().encode(client, weights, grid, (0, 0), **kwargs)  # type: ignore[return-value]

    def _product_plan(self, spec: ProductSpec, pieces: list, v: np.ndarray) -> Plan:
        return uncoded_plan(spec, pieces, self.hook)

    def _blocks_checked(self, step: str) -> int:
        return 0

    def scrub(self) -> dict:
        raise CodeParameterError("an uncoded layer carries no redundancy to check; use codenet or replication")


@dataclass
class ReplicatedLayer(CodedLayer):
    """Each systematic block on ``replicas`` workers; products compared (r=2) or voted (r>=3)."""

    replicas: dict[Coord, list[Future]] = field(default_factory=dict)
    replica_owners: dict[tuple[int, int, int], str] = field(default_factory=dict)

    @classmethod
    def encode(cls, client: Client, weights: np.ndarray, grid: tuple[int, int] = (4, 4),
               parity: tuple[int, int] = (0, 0), *, replicas: int = 3, hook: CorruptionHook | None = None,
               **kwargs) -> "ReplicatedLayer":
        if not (isinstance(replicas, int) and replicas >= 2):
            raise CodeParameterError(f"replication needs at least 2 replicas, got {replicas!r}")
        if tuple(parity) != (0, 0):
            raise CodeParameterError("replication has no parity blocks; give --replicas instead of --parity")
        layer: ReplicatedLayer = super().encode(client, weights, grid, (0, 0), hook=hook, **kwargs)  # type: ignore[assignment]
        layer._replicate(replicas)
        return layer

    @classmethod
    def from_store(cls, client: Client, store, name: str, checkpoint=None, *, replicas: int = 3,
                   **kwargs) -> "ReplicatedLayer":
        """Restore replica 0 from a checkpoint and copy it to the other replicas' workers."""
        layer: ReplicatedLayer = super().from_store(client, store, name, checkpoint, **kwargs)  # type: ignore[assignment]
        layer._replicate(replicas)
        return layer

    def _replicate(self, replicas: int) -> None:
        """Copy every block (replica 0) to ``replicas - 1`` further workers, round robin."""
        addresses = sorted(self.client.scheduler_info()["workers"])
        kc, token = self.code.kc, uuid.uuid4().hex[:8]  # fresh keys: a restore must not reuse old copies
        for (a, b), first in self.blocks.items():
            owners = [addresses[(a * kc + b + r) % len(addresses)] for r in range(replicas)]
            copies = [first] + [
                self.client.submit(
                    tasks.replicate_block, first, self.hook, Site("encode", self.name, 0, (a, b, r)), 0,
                    key=(f"encode-{self.name}-{token}", a, b, r), workers=[owners[r]], allow_other_workers=False,
                )
                for r in range(1, replicas)
            ]
            self.replicas[(a, b)] = copies
            self.replica_owners.update({(a, b, r): owners[r] for r in range(replicas)})
        wait([f for copies in self.replicas.values() for f in copies])

    @property
    def copies(self) -> int:
        return len(next(iter(self.replicas.values())))

    def _product_plan(self, spec: ProductSpec, pieces: list, v: np.ndarray) -> Plan:
        return replicated_plan(
            spec, self.copies,
            lambda a, j, r: self.replicas[spec.coord(a, j)][r],
            lambda a, j, r: self.replica_owners[(*spec.coord(a, j), r)],
            pieces, self.hook,
        )

    def _blocks_checked(self, step: str) -> int:
        return self.copies * self.code.kr * self.code.kc

    def _holders(self) -> set[str]:
        return set(self.replica_owners.values())

    def update(self, delta: Operand, x: Operand, lr: float) -> None:
        """Every replica applies the same update to its own copy."""
        self._check_lr(lr)
        d_pieces, x_pieces = self._update_pieces(delta, x)
        self.ops += 1
        futures_by_replica = []
        for r in range(self.copies):
            plan = update_plan(
                self.name, self.ops, self.code, lambda a, b, r=r: self.replicas[(a, b)][r], d_pieces, x_pieces,
                float(lr), lambda a, b, r=r: self.replica_owners[(a, b, r)], self.hook, replica=r,
                key_layer=self.key_name,
            )
            futures_by_replica.append((plan.outputs, self.client.get(plan.to_hlg(), plan.outputs, sync=False)))
        self._wait([f for _, futures in futures_by_replica for f in futures])
        for r, (keys, futures) in enumerate(futures_by_replica):
            for key, future in zip(keys, futures):
                self.replicas[(key[1], key[2])][r] = future
        self.blocks = {coord: copies[0] for coord, copies in self.replicas.items()}

    def gather_blocks(self) -> dict[Coord, CodedBlock]:
        """Every block as its replicas' majority (bit-identical copies), for checkpoints.

        A faulty update leaves one replica wrong for good; saving replica 0 blindly could store it.
        """
        majority, _ = self._vote_replicas()
        return majority

    def scrub(self) -> dict:
        """Overwrite replicas that disagree with their block's majority by a fresh copy of it."""
        self.ops += 1
        majority, outvoted = self._vote_replicas()
        for (a, b, r) in outvoted:
            self.replicas[(a, b)][r] = self.client.scatter(
                majority[(a, b)], workers=[self.replica_owners[(a, b, r)]], hash=False)
        self.blocks = {coord: copies[0] for coord, copies in self.replicas.items()}
        return {"repaired": [list(k) for k in outvoted], "unrepairable": [], "ok": True}

    def _vote_replicas(self) -> tuple[dict[Coord, CodedBlock], list[tuple[int, int, int]]]:
        """Per block, the value a majority of replicas hold, and the replicas that differ."""
        coords = list(self.replicas)
        fetched = self.client.gather([self.replicas[c] for c in coords])
        majority, outvoted = {}, []
        for coord, copies in zip(coords, fetched):
            votes = [sum(np.array_equal(c.values, d.values) for d in copies) for c in copies]
            best = int(np.argmax(votes))
            if votes[best] * 2 <= len(copies):
                raise UncorrectableError(
                    f"layer {self.name}: the {len(copies)} replicas of block {coord} have no majority; roll back")
            majority[coord] = copies[best]
            outvoted += [(*coord, r) for r, c in enumerate(copies) if not np.array_equal(c.values, copies[best].values)]
        return majority, outvoted


def build_layer(
    strategy: Strategy,
    client: Client,
    weights: np.ndarray,
    grid: tuple[int, int] = (4, 4),
    parity: tuple[int, int] = (2, 2),
    replicas: int = 3,
    **kwargs,
) -> CodedLayer:
    """A layer of the named strategy on ``client`` (``parity`` for codenet, ``replicas`` for replication)."""
    if strategy == "codenet":
        return CodedLayer.encode(client, weights, grid, parity, **kwargs)
    if strategy == "uncoded":
        return UncodedLayer.encode(client, weights, grid, **kwargs)
    if strategy == "replication":
        return ReplicatedLayer.encode(client, weights, grid, replicas=replicas, **kwargs)
    raise CodeParameterError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


__all__: Sequence[str] = ("STRATEGIES", "ReplicatedLayer", "Strategy", "UncodedLayer", "build_layer")

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

from .codes import mds_code
from .errors import CodeParameterError
from .faults import CorruptionHook
from .kernels import factors, scrub, shards
from .kernels.blocks import CodedBlock
from .layer import CodedLayer, holders, scatter_pieces
from .protocol.placement import Coord
from .protocol.plans import replica_plan, systematic_plan
from .protocol.types import Plan

Strategy = Literal["codenet", "uncoded", "replication"]
STRATEGIES: tuple[str, ...] = ("codenet", "uncoded", "replication")


class UncodedLayer(CodedLayer):
    """No redundancy: same grid and workers as the coded layer, nothing checked."""

    checked = False

    def _codewords(self, step: str) -> tuple[shards.SummedCodeword, ...]:
        """One trivial codeword per output chunk: the chunk is the plain sum of its blocks."""
        outputs = self.code.kr if step == "forward" else self.code.kc
        return tuple(shards.SummedCodeword(mds_code(1, 0), (t,)) for t in range(outputs))

    def _members(self, step: str) -> dict[str, list[shards.Member]]:
        return _by_output_chunk(self, step)

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

    def _factor_words(self) -> tuple[factors.FactorWord, ...]:
        return ()  # nothing checked

    def scrub(self, align: bool = True) -> dict:
        raise CodeParameterError("an uncoded layer carries no redundancy to check; use codenet or replication")


@dataclass
class ReplicatedLayer(CodedLayer):
    """Each systematic block on ``replicas`` workers; products compared (r=2) or voted (r>=3).

    Blocks are labelled ``(a, b, r)``; replicas of one block have distinct labels, keys and fault
    sites, so Dask never mistakes one for another.
    """

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
        verify_encoding: bool = True,
        **kwargs,
    ) -> ReplicatedLayer:
        """Every replica made from ``weights`` on its own worker; with ``verify_encoding`` the copies
        are scrubbed once (``encode_report``) before any product uses them."""
        if not (isinstance(replicas, int) and replicas >= 2):
            raise CodeParameterError(f"replication needs at least 2 replicas, got {replicas!r}")
        if tuple(parity) != (0, 0):
            raise CodeParameterError("replication has no parity blocks; give --replicas instead of --parity")
        layer: ReplicatedLayer = super().encode(target, weights, grid, (0, 0), hook=hook, **kwargs)  # type: ignore[assignment]
        layer._replicate(replicas, np.asarray(weights))
        if verify_encoding:
            layer.encode_report = layer._scrub(op=0)
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
        placement: dict[shards.Label, str] = {
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
            pieces = scatter_pieces(
                self.executor, weights, self.block_shape, {(w, label) for label, w in fresh.items()}
            )
            copies.update(
                systematic_plan(
                    {lab: pieces[(w, lab)] for lab, w in fresh.items()}, fresh, self.hook, self.name, key, plan
                )
            )
        self.replicas, self.placement = replicas, placement
        self.workers = holders(addresses, placement)
        self._assemble(copies, plan)

    @property
    def copies(self) -> int:
        return self.replicas

    def _codewords(self, step: str) -> tuple[shards.SummedCodeword, ...]:
        """Per output chunk, the repetition code over the copies (copy 0 systematic): the chunk
        summed over a copy's blocks is a codeword of it, as every copy holds the same weights."""
        outputs = self.code.kr if step == "forward" else self.code.kc
        return tuple(shards.SummedCodeword(mds_code(1, self.copies - 1), (t,)) for t in range(outputs))

    def _members(self, step: str) -> dict[str, list[shards.Member]]:
        return _by_output_chunk(self, step)

    def _blocks_checked(self, step: str) -> int:
        return self.copies * self.code.kr * self.code.kc

    def blocks_of(self, gathered: Sequence[shards.Shard]) -> dict[Coord, CodedBlock]:
        """Every block as replica 0 holds it (for checkpoints, which scrub first: a replica a faulty
        update left wrong is repaired from the others before anything is saved)."""
        return {label[:2]: block for label, block in super().blocks_of(gathered).items() if label[2] == 0}  # type: ignore[misc]

    def _factor_words(self) -> tuple[factors.FactorWord, ...]:
        """Every block's copies under the repetition code, for both factors: they use the same."""
        if self.copies < 2:
            return ()
        code = mds_code(1, self.copies - 1)
        blocks = sorted({label[:2] for label in self.placement})
        return tuple(
            factors.FactorWord(code, tuple((a, b, r) for r in range(self.copies)), side)
            for a, b in blocks
            for side in (factors.ROWS, factors.COLS)
        )

    def _stored_words(self) -> tuple[scrub.StoredWord, ...]:
        """Every block's copies under the repetition code: r = 2 detects a disagreement, r >= 3
        repairs a copy the others outvote, entry by entry."""
        code = mds_code(1, self.copies - 1)
        blocks = sorted({label[:2] for label in self.placement})
        return tuple(scrub.StoredWord(code, tuple((a, b, r) for r in range(self.copies))) for a, b in blocks)


def _by_output_chunk(layer: CodedLayer, step: str) -> dict[str, list[shards.Member]]:
    """Members for codewords per output chunk: block (a, b[, r]) contributes copy r to chunk a
    forward (piece b), to chunk b backward (piece a)."""
    members: dict[str, list[shards.Member]] = {w: [] for w in layer.workers}
    for label, w in sorted(layer.placement.items()):
        a, b, r = label[0], label[1], (label[2] if len(label) > 2 else 0)
        chunk, piece = (a, b) if step == "forward" else (b, a)
        members[w].append(shards.Member(label, chunk, r, piece))
    return members


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

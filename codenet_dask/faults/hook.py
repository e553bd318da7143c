"""The corruption hook: which step, which block, what corruption.

Every task that computes something a soft error could spoil (encode, block products, projections,
decode, verify, update, scrub) passes its output through ``hook.apply(site, values, attempt)``. The hook is
a small frozen object shipped inside the task graph, so it runs *on the worker*, and it is a pure
function of (site, attempt): a task that Dask runs twice gives the same result twice, and a
recomputation (a new attempt, with a new task key) is by default clean, like a transient error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from . import corruptions

Step = Literal[
    "encode", "activation", "block-forward", "block-backward", "project", "decode", "verify", "update", "scrub"
]
STEPS: tuple[str, ...] = (
    "encode",
    "activation",
    "block-forward",
    "block-backward",
    "project",
    "decode",
    "verify",
    "update",
    "scrub",
)
Kind = Literal["bitflip", "add", "nan", "inf", "-inf", "zero"]


@dataclass(frozen=True)
class Site:
    """Where a value is computed: step kind, layer name, operation count, block coordinates."""

    step: str
    layer: str
    op: int
    block: tuple[int, ...]


class CorruptionHook(Protocol):
    """Anything that may replace a freshly computed block by a wrong one."""

    def apply(self, site: Site, values: np.ndarray, attempt: int) -> np.ndarray: ...


@dataclass(frozen=True)
class NoFaults:
    """The hook of a fault-free run."""

    def apply(self, site: Site, values: np.ndarray, attempt: int) -> np.ndarray:
        return values


@dataclass(frozen=True)
class Corruption:
    """Corrupt the result at one site. ``None`` in a field matches anything.

    ``index`` is the entry hit (wrapped into the block's shape); ``bit`` is used by ``bitflip``,
    ``relative`` by ``add`` (a multiple of the block's largest magnitude).
    """

    step: str
    block: tuple[int, ...] | None = None
    layer: str | None = None
    op: int | None = None
    kind: Kind = "bitflip"
    index: tuple[int, int] = (0, 0)
    bit: int = 62
    relative: float = 1.0
    attempts: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}; use one of {', '.join(STEPS)}")
        if self.kind not in ("bitflip", "add", "nan", "inf", "-inf", "zero"):
            raise ValueError(f"unknown corruption kind {self.kind!r}; use bitflip, add, nan, inf, -inf or zero")

    def matches(self, site: Site, attempt: int) -> bool:
        return (
            site.step == self.step
            and attempt in self.attempts
            and (self.block is None or tuple(self.block) == site.block)
            and (self.layer is None or self.layer == site.layer)
            and (self.op is None or self.op == site.op)
        )

    def corrupt(self, values: np.ndarray) -> np.ndarray:
        if values.size == 0:
            return values
        shape = values.shape if values.ndim else (1,)
        index = tuple(int(i) % s for i, s in zip(self.index, shape))[: values.ndim]
        if self.kind == "bitflip":
            return corruptions.flip_bit(values, index, self.bit)
        if self.kind == "add":
            return corruptions.add_relative(values, index, self.relative)
        if self.kind == "zero":
            return corruptions.stuck_at_zero(values)
        return corruptions.set_value(values, index, float(self.kind))


@dataclass(frozen=True)
class CorruptionPlan:
    """A set of targeted corruptions; the test hook of the coded core.

    >>> plan = CorruptionPlan((Corruption("block-forward", block=(1, 0), kind="nan"),))
    >>> plan.apply(Site("block-forward", "dense0", 1, (1, 0)), np.ones(2), attempt=0)
    array([nan,  1.])
    >>> plan.apply(Site("block-forward", "dense0", 1, (1, 0)), np.ones(2), attempt=1)  # the retry is clean
    array([1., 1.])
    """

    corruptions: tuple[Corruption, ...] = field(default_factory=tuple)

    def apply(self, site: Site, values: np.ndarray, attempt: int) -> np.ndarray:
        for c in self.corruptions:
            if c.matches(site, attempt):
                values = c.corrupt(values)
        return values

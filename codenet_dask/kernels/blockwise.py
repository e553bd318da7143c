"""The one-task-per-block form of a checked product (``codenet_dask.matmul`` on dask arrays).

Each function computes one step of one block and passes its output through the fault hook, which
sees exactly what a soft error could spoil: the fresh output of the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..codes import SystematicMDSCode
from ..errors import UncorrectableError
from ..faults.hook import CorruptionHook, Site
from . import checks
from .blocks import CodedBlock


def block_product(
    block: CodedBlock, rhs: np.ndarray, transpose: bool, hook: CorruptionHook, site: Site, attempt: int
) -> checks.BlockResult:
    """One coded block times its piece of the input; the fault hook spoils the product."""
    result = checks.block_product(block, rhs, transpose)
    return replace(result, values=hook.apply(site, result.values, attempt))


def project(
    result: checks.BlockResult, v: np.ndarray, hook: CorruptionHook, site: Site, attempt: int
) -> checks.Projection:
    """The producer-side summary the independent verifier uses."""
    summary = checks.project(result, v)
    return replace(summary, z=hook.apply(site, summary.z, attempt))


def decode(
    code: SystematicMDSCode,
    codewords: Sequence[Sequence[checks.BlockResult]],
    target: int,
    v: np.ndarray,
    hook: CorruptionHook,
    site: Site,
    attempt: int,
) -> checks.DecodedChunk:
    """The consumer's own check-correct-sum of one output chunk."""
    decoded = checks.decode_chunk(code, codewords, target, v)
    if decoded.values is None:
        return decoded
    return replace(decoded, values=hook.apply(site, decoded.values, attempt))


def verify(
    code: SystematicMDSCode,
    decoded: checks.DecodedChunk,
    codewords: Sequence[Sequence[checks.Projection]],
    target: int,
    v: np.ndarray,
    hook: CorruptionHook,
    site: Site,
    attempt: int,
    raise_on_reject: bool = True,
) -> np.ndarray | checks.Rejected:
    """Independent acceptance of a decoded chunk.

    Returns the decoded array itself: a soft error here can only spoil the verdict (the
    observed projection), which turns into a false alarm and a recomputation, never into data.
    A rejected chunk raises UncorrectableError, or with ``raise_on_reject=False`` comes back as a
    small :class:`~codenet_dask.checks.Rejected` marker the client recognises by its type without fetching it.
    """
    try:
        if decoded.values is None:
            return checks.accept_chunk(decoded, np.empty(0), np.empty(0), np.empty(0), np.empty(0), v)
        expected, tolerance, magnitude = checks.expected_projection(code, codewords, target, decoded.values.dtype)
        observed = hook.apply(site, decoded.values.astype(np.float64) @ v, attempt)
        return checks.accept_chunk(decoded, observed, expected, tolerance, magnitude, v)
    except UncorrectableError as exc:
        if raise_on_reject:
            raise
        return checks.Rejected(type(exc).__name__, str(exc))


def checks_of(decoded: checks.DecodedChunk) -> tuple:
    """Only the verdicts of a decode (small: what the client gathers for the report)."""
    return decoded.checks

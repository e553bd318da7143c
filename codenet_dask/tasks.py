"""The functions Dask runs on workers: each computes one step and passes it through the hook.

The hook (a fault injector, or the targeted test hook) sees exactly what a soft error could spoil:
the fresh output of the step, before anything is derived from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import checks
from .blocks import CodedBlock, encoding_error
from .codes import ProductCode, SystematicMDSCode
from .codes.grid import check_grid, locate_in_grid
from .errors import NonFiniteInputError, UncorrectableError
from .faults import CorruptionHook, Site


def encode_parity(
    sources: Sequence[CodedBlock], coeffs: np.ndarray, hook: CorruptionHook, site: Site, attempt: int
) -> CodedBlock:
    """A parity block ``sum_i coeffs[i] * sources[i]`` with its encoding-error bound."""
    dtype = sources[0].dtype
    values = sum(dtype.type(c) * s.values for c, s in zip(coeffs, sources))
    abs_max = float(sum(abs(c) * s.max_abs for c, s in zip(coeffs, sources)))
    err = encoding_error(len(sources), abs_max, dtype) + float(sum(abs(c) * s.err for c, s in zip(coeffs, sources)))
    return CodedBlock.from_values(hook.apply(site, np.asarray(values), attempt), err)


def local_copy(values: np.ndarray) -> np.ndarray:
    """An operand kept on this worker under a key of its own (see ``CodedLayer.ship``)."""
    return values


def checked_input(values: np.ndarray) -> np.ndarray:
    """User data entering a coded product: NaN/Inf here is bad input, not a soft error."""
    if not np.all(np.isfinite(values)):
        raise NonFiniteInputError("an input chunk holds NaN or Inf; clean the data before multiplying")
    return values


def systematic_block(values: np.ndarray, hook: CorruptionHook, site: Site, attempt: int) -> CodedBlock:
    """A systematic block as stored on its worker (exact: no encoding error)."""
    values = np.array(checked_input(values), copy=True)
    return CodedBlock.from_values(hook.apply(site, values, attempt), 0.0)


def replicate_block(source: dict, label: tuple[int, int, int], layer: str, hook: CorruptionHook) -> CodedBlock:
    """Replica r of block (a, b), copied from the shard holding it (the copy itself may be hit)."""
    block = source[label[:2]]
    if label[2] == 0:
        return block
    site = Site("encode", layer, 0, label)
    return CodedBlock.from_values(hook.apply(site, block.values.copy(), 0), block.err, block.updates)


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


@dataclass(frozen=True)
class ScrubOutcome:
    """What a scrub of a resident grid found, and the blocks it rebuilt."""

    repaired: dict
    report: dict


def locate_grid(code: ProductCode, projections: Sequence[dict], block_shape: tuple[int, int], seed: int) -> dict:
    """The grid check of every worker's projections, without repair: the report."""
    merged: dict = {}
    for part in projections:
        merged.update(part)
    return locate_in_grid(code, merged, block_shape, seed).to_dict()


def scrub_grid(code: ProductCode, shards: Sequence[dict], seed: int) -> ScrubOutcome:
    """Check the resident coded grid (all workers' shards) and rebuild the blocks it shows wrong."""
    blocks: dict = {}
    for shard in shards:
        blocks.update(shard)
    checked = check_grid(code, blocks, repair=True, seed=seed)
    return ScrubOutcome({key: checked.blocks[key] for key in checked.report.repaired}, checked.report.to_dict())


def scrub_report(outcome: ScrubOutcome) -> dict:
    """Only the (small) report of a scrub, for the client."""
    return outcome.report


def patch_shard(shard: dict, outcomes: Sequence[ScrubOutcome], labels: Sequence[tuple]) -> dict:
    """The shard with the blocks a scrub rebuilt put back in place."""
    out = dict(shard)
    out.update({label: outcome.repaired[label] for label, outcome in zip(labels, outcomes)})
    return out


def patch_blocks(shard: dict, blocks: dict) -> dict:
    """The shard with some blocks replaced by given ones (fresh replicas from a majority)."""
    out = dict(shard)
    out.update(blocks)
    return out

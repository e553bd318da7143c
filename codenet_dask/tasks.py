"""The functions Dask runs on workers: each computes one step and passes it through the hook.

The hook (a fault injector, or the targeted test hook) sees exactly what a soft error could spoil:
the fresh output of the step, before anything is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from . import checks
from .blocks import CodedBlock, apply_update, encoding_error
from .codes import ProductCode, SystematicMDSCode
from .codes.grid import check_grid
from .errors import NonFiniteInputError, UncorrectableError
from .faults import CorruptionHook, Site


def encode_parity(
    sources: Sequence[CodedBlock], coeffs: np.ndarray, hook: CorruptionHook, site: Site, attempt: int
) -> CodedBlock:
    """A parity block ``sum_i coeffs[i] * sources[i]`` with its encoding-error bound."""
    dtype = sources[0].dtype
    values = sum(dtype.type(c) * s.values for c, s in zip(coeffs, sources))
    abs_max = float(sum(abs(c) * s.max_abs for c, s in zip(coeffs, sources)))
    err = encoding_error(len(sources), abs_max, dtype) + float(
        sum(abs(c) * s.err for c, s in zip(coeffs, sources))
    )
    return CodedBlock.from_values(hook.apply(site, np.asarray(values), attempt), err)


def checked_input(values: np.ndarray) -> np.ndarray:
    """User data entering a coded product: NaN/Inf here is bad input, not a soft error."""
    if not np.all(np.isfinite(values)):
        raise NonFiniteInputError("an input chunk holds NaN or Inf; clean the data before multiplying")
    return values


def systematic_block(values: np.ndarray, hook: CorruptionHook, site: Site, attempt: int) -> CodedBlock:
    """A systematic block as stored on its worker (exact: no encoding error)."""
    values = np.array(checked_input(values), copy=True)
    return CodedBlock.from_values(hook.apply(site, values, attempt), 0.0)


def activate(
    kind: str, source: np.ndarray, mask: np.ndarray | None, hook: CorruptionHook, site: Site, attempt: int
) -> np.ndarray:
    """A consumer's own copy of an activated input piece: ``relu(source)`` or ``source * (mask > 0)``.

    Runs inside the consuming block task, so a fault here spoils only that block's product,
    which its codeword check then catches (CodeNet's decentralised activation).
    """
    if kind == "relu":
        values = np.maximum(source, 0)
    elif kind == "relu-grad":
        values = np.where(mask > 0, source, 0).astype(source.dtype, copy=False)
    else:
        raise ValueError(f"unknown activation {kind!r}")
    return hook.apply(site, values, attempt)


def softmax_grad(
    logits: Sequence[np.ndarray], labels: np.ndarray, classes: int, index: int,
    hook: CorruptionHook, site: Site, attempt: int,
) -> np.ndarray:
    """Rows ``index`` of ``(softmax(logits) - onehot(labels)) / batch``, computed by each consumer.

    ``logits`` are the output layer's verified chunks (padding rows beyond ``classes`` are
    ignored and get a zero gradient).
    """
    full = np.concatenate(list(logits))
    z = full[:classes].astype(np.float64)
    z = z - z.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    p[labels, np.arange(labels.size)] -= 1.0
    grad = np.zeros_like(full)
    grad[:classes] = p / labels.size
    size = logits[0].shape[0]
    return hook.apply(site, grad[index * size:(index + 1) * size], attempt)


def replicate_block(block: CodedBlock, hook: CorruptionHook, site: Site, attempt: int) -> CodedBlock:
    """Another worker's copy of a block (the copy itself may be hit by a fault)."""
    return CodedBlock.from_values(hook.apply(site, block.values.copy(), attempt), block.err, block.updates)


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
) -> np.ndarray | Rejected:
    """Independent acceptance of a decoded chunk.

    Returns the decoded array itself: a soft error here can only spoil the verdict (the
    observed projection), which turns into a false alarm and a recomputation, never into data.
    A rejected chunk raises UncorrectableError, or with ``raise_on_reject=False`` comes back as a
    small :class:`Rejected` marker the client recognises by its type without fetching it.
    """
    try:
        if decoded.values is None:
            return checks.accept_chunk(decoded, np.empty(0), np.empty(0), np.empty(0), v)
        expected, tolerance = checks.expected_projection(code, codewords, target, decoded.values.dtype)
        observed = hook.apply(site, decoded.values.astype(np.float64) @ v, attempt)
        return checks.accept_chunk(decoded, observed, expected, tolerance, v)
    except UncorrectableError as exc:
        if raise_on_reject:
            raise
        return Rejected(type(exc).__name__, str(exc))


@dataclass(frozen=True)
class Rejected:
    """A verify task's refusal of a decoded chunk: recompute it (or roll back)."""

    error: str
    reason: str


def sum_results(
    codewords: Sequence[Sequence[checks.BlockResult]], target: int, hook: CorruptionHook, site: Site, attempt: int
) -> np.ndarray:
    """Uncoded decode: the plain sum of this output's block results, unchecked."""
    total = sum(results[target].values for results in codewords)
    return hook.apply(site, np.asarray(total), attempt)


def vote(
    codewords: Sequence[Sequence[checks.BlockResult]], hook: CorruptionHook, site: Site, attempt: int
) -> checks.DecodedChunk:
    """Replication's decode: per block, the value a majority of replicas agree on, summed."""
    decoded = checks.vote_chunk(codewords)
    if decoded.values is None:
        return decoded
    return replace(decoded, values=hook.apply(site, decoded.values, attempt))


def accept(decoded: checks.DecodedChunk) -> np.ndarray | Rejected:
    """The voted chunk, or a Rejected marker when some block had no agreeing majority."""
    if decoded.values is None:
        return Rejected("UncorrectableError", "replicas disagree with no majority")
    return decoded.values


def checks_of(decoded: checks.DecodedChunk) -> tuple:
    """Only the verdicts of a decode (small: what the client gathers for the report)."""
    return decoded.checks


def encoded_factor(
    pieces: Sequence[np.ndarray], coeffs: np.ndarray | None, hook: CorruptionHook, site: Site, attempt: int
) -> tuple[np.ndarray, float]:
    """This block's piece of an encoded update factor, and its encoding-error bound.

    ``coeffs`` None means a systematic position: the piece itself, exact.
    """
    if coeffs is None:
        return pieces[0], 0.0
    dtype = pieces[0].dtype
    values = sum(dtype.type(c) * p for c, p in zip(coeffs, pieces))
    abs_max = float(max(np.max(sum(abs(c) * np.abs(p) for c, p in zip(coeffs, pieces)), initial=0.0), 0.0))
    return hook.apply(site, np.asarray(values), attempt), encoding_error(len(pieces), abs_max, dtype)


def update(
    block: CodedBlock,
    delta_pieces: Sequence[np.ndarray],
    delta_coeffs: np.ndarray | None,
    input_pieces: Sequence[np.ndarray],
    input_coeffs: np.ndarray | None,
    lr: float,
    hook: CorruptionHook,
    site: Site,
    attempt: int,
) -> CodedBlock:
    """``W~[a, b] -= lr * D~[a] @ X~[b].T``: the block encodes its own factors, never W."""
    encode_site = replace(site, step="encode")
    delta, delta_err = encoded_factor(delta_pieces, delta_coeffs, hook, replace(encode_site, block=site.block + (0,)), attempt)
    inputs, inputs_err = encoded_factor(input_pieces, input_coeffs, hook, replace(encode_site, block=site.block + (1,)), attempt)
    updated = apply_update(block, delta, delta_err, inputs, inputs_err, lr)
    return replace(updated, values=hook.apply(site, updated.values, attempt))


@dataclass(frozen=True)
class ScrubOutcome:
    """What a scrub of a resident grid found, and the blocks it rebuilt."""

    repaired: dict
    report: dict


def scrub_grid(code: ProductCode, blocks: dict, seed: int) -> ScrubOutcome:
    """Check the resident coded grid's code relations and rebuild the blocks they show wrong."""
    checked = check_grid(code, blocks, repair=True, seed=seed)
    return ScrubOutcome({key: checked.blocks[key] for key in checked.report.repaired}, checked.report.to_dict())


def scrub_report(outcome: ScrubOutcome) -> dict:
    """Only the (small) report of a scrub, for the client."""
    return outcome.report


def repaired_block(outcome: ScrubOutcome, coord: tuple[int, int]) -> CodedBlock:
    """One rebuilt block, fetched by its owner."""
    return outcome.repaired[coord]

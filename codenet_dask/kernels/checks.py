"""Checking coded block products: the numerical kernels behind the verify/decode tasks.

A coded product produces, for each summed index j, one codeword of block results
``R[j][a] = W~[a, j] @ X[j]`` (forward; backward is the same with W~ transposed). Every consumer
checks codewords on *projections* ``z = R @ V`` (V: batch x few, seeded and random), with a
rigorous roundoff bound on each projection entry computed from the operand norms that travel with
each result. A result that no correct computation could produce (NaN/Inf, or an entry beyond the
Cauchy-Schwarz bound of its row and input column) is an erasure, i.e. a wrong block at a known
position. Pure numpy: runs inside worker tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..codes import CodewordCheck, SystematicMDSCode, check_codeword, gamma, rebuild_blocks
from ..errors import UncorrectableError
from .blocks import CodedBlock

#: Random projections per result row used for checking (2: robust to unlucky cancellation).
PROJECTIONS = 2


def projection_matrix(batch: int, seed: int) -> np.ndarray:
    """The seeded random ``batch x PROJECTIONS`` matrix every checker of a product shares."""
    return np.random.default_rng(seed).standard_normal((batch, PROJECTIONS))


@dataclass(frozen=True)
class BlockResult:
    """One block product with the norms that bound its roundoff.

    ``operand_norms[r]`` bounds the 2-norm of the r-th row of the weight operand as used,
    ``operand_err`` how far that operand may be from the exact codeword, ``input_norms2/1`` the
    2- and 1-norms of the input's columns, ``inner`` the length of the dot products.
    """

    values: np.ndarray
    operand_norms: np.ndarray
    operand_err: float
    input_norms2: np.ndarray
    input_norms1: np.ndarray
    inner: int


def block_product(block: CodedBlock, rhs: np.ndarray, transpose: bool) -> BlockResult:
    """``block @ rhs`` (or ``block.T @ rhs``) with the bookkeeping its checkers need."""
    weights = block.values.T if transpose else block.values
    norms = block.col_norms if transpose else block.row_norms
    return BlockResult(
        values=weights @ rhs,
        operand_norms=norms,
        operand_err=block.err,
        input_norms2=np.linalg.norm(rhs, axis=0).astype(np.float64),
        input_norms1=np.abs(rhs).sum(axis=0, dtype=np.float64),
        inner=rhs.shape[0],
    )


@dataclass(frozen=True)
class Projection:
    """What a checker needs of one block result: its projection, roundoff bound, magnitude."""

    z: np.ndarray
    noise: np.ndarray
    magnitude: np.ndarray
    erased: bool


def project(result: BlockResult, v: np.ndarray) -> Projection:
    """Summarise a block result for checking; flag it erased if it is provably wrong.

    One pass over the result (``z = R @ V``); everything else comes from the norms that travel
    with it. By Cauchy-Schwarz a correct entry obeys ``|R[r, b]| <= |w_r| |x_b| (1 + g) + err
    |x_b|_1``, so that bound, projected on ``|V|``, caps ``|R| @ |V|`` without reading ``R`` again:
    it bounds the projection's own roundoff, and a projection beyond it (a huge wrong entry) or
    non-finite (NaN/Inf) proves the result wrong: an erasure.
    """
    values = result.values
    rows = values.shape[0] if values.ndim else 0
    meta = (result.operand_norms, result.input_norms2, result.input_norms1)
    if (
        values.ndim != 2
        or values.shape[1] != v.shape[0]
        or not all(np.all(np.isfinite(m)) and np.all(m >= 0) for m in meta)
        or not np.isfinite(result.operand_err)
    ):
        return _erased(rows, v.shape[1])
    with np.errstate(all="ignore"):
        z = values.astype(np.float64, copy=False) @ v
    if not np.all(np.isfinite(z)):
        return _erased(rows, v.shape[1])
    g_prod = gamma(result.inner + 2, values.dtype)
    abs_v = np.abs(v)
    spread = np.outer(result.operand_norms, result.input_norms2 @ abs_v)
    offset = result.operand_err * (result.input_norms1 @ abs_v)[None, :]
    magnitude = (1 + g_prod) * spread + offset
    noise = g_prod * spread + offset + gamma(v.shape[0] + 1, np.float64) * magnitude
    return Projection(z=z, noise=noise, magnitude=magnitude, erased=False)


def _erased(rows: int, width: int) -> Projection:
    nan = np.full((rows, width), np.nan)
    return Projection(z=nan, noise=nan, magnitude=nan, erased=True)


def _impossible(p: Projection) -> bool:
    """A projection no correct computation gives: non-finite, or beyond its magnitude bound."""
    with np.errstate(invalid="ignore"):
        return p.erased or not bool(np.all(np.abs(p.z) <= p.magnitude * (1 + 1e-12) + np.finfo(np.float64).tiny))


def check_projections(code: SystematicMDSCode, projections: Sequence[Projection]) -> CodewordCheck:
    """Classify one codeword of block results from their projections."""
    erased = [a for a, p in enumerate(projections) if _impossible(p)]
    return check_codeword(
        code,
        np.stack([p.z.ravel() for p in projections]),
        np.stack([p.noise.ravel() for p in projections]),
        erased,
    )


@dataclass(frozen=True)
class DecodedChunk:
    """One output chunk decoded by its consumer; ``values`` is None if any codeword failed."""

    values: np.ndarray | None
    checks: tuple[CodewordCheck, ...]


def decode_chunk(
    code: SystematicMDSCode,
    codewords: Sequence[Sequence[BlockResult]],
    target: int,
    v: np.ndarray,
) -> DecodedChunk:
    """``sum_j codewords[j][target]``, each term checked and, if wrong, rebuilt from its codeword.

    The consumer projects the results it received itself, so no producer's summary is trusted.
    """
    checks = []
    total: np.ndarray | None = None
    for results in codewords:
        verdict = check_projections(code, [project(r, v) for r in results])
        checks.append(verdict)
        if verdict.status == "uncorrectable":
            continue
        if target in verdict.bad:
            term = rebuild_blocks(code, [r.values for r in results], verdict.bad, [target])[target]
        else:
            term = results[target].values
        total = term.copy() if total is None else total + term
    failed = any(c.status == "uncorrectable" for c in checks)
    return DecodedChunk(values=None if failed else total, checks=tuple(checks))


def expected_projections(
    code: SystematicMDSCode,
    codewords: Sequence[Sequence[Projection]],
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``decoded @ V`` must be for every output chunk (stacked), from projections alone.

    The verifier checks each codeword's projections itself and rebuilds the projections of wrong
    systematic positions from the good ones; returns (expected, tolerance, magnitude), the last a
    bound on ``|decoded| @ |V|`` for a correct decode. Raises UncorrectableError if a codeword is
    beyond capacity.
    """
    k = code.k
    expected: list = [0.0] * k
    tolerance: list = [0.0] * k
    magnitude: list = [0.0] * k
    for projections in codewords:
        verdict = check_projections(code, projections)
        if verdict.status == "uncorrectable":
            raise UncorrectableError("verification found a codeword beyond correction capacity")
        wrong = [t for t in verdict.bad if t < k]
        known = [a for a in range(code.n) if a not in verdict.bad]
        rebuild = dict(zip(wrong, code.rebuild_matrix(known, wrong))) if wrong else {}
        for t in range(k):
            if t in rebuild:
                coeffs = rebuild[t]
                z = sum(c * projections[a].z for c, a in zip(coeffs, known))
                mag = sum(abs(c) * projections[a].magnitude for c, a in zip(coeffs, known))
                noise = (
                    sum(abs(c) * projections[a].noise for c, a in zip(coeffs, known)) + gamma(code.n + 1, dtype) * mag
                )
            else:
                z, noise, mag = projections[t].z, projections[t].noise, projections[t].magnitude
            expected[t], tolerance[t], magnitude[t] = expected[t] + z, tolerance[t] + noise, magnitude[t] + mag
    # The decoder's own sum over codewords rounds too.
    slack = gamma(len(codewords) + 1, dtype)
    return (
        np.concatenate([np.asarray(e) for e in expected]),
        np.concatenate([np.asarray(t) + slack * np.asarray(m) for t, m in zip(tolerance, magnitude)]),
        np.concatenate([np.asarray(m) for m in magnitude]),
    )


def expected_projection(
    code: SystematicMDSCode,
    codewords: Sequence[Sequence[Projection]],
    target: int,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`expected_projections` of one output chunk ``target``."""
    rows = codewords[0][0].z.shape[0]
    window = slice(target * rows, (target + 1) * rows)
    return tuple(part[window] for part in expected_projections(code, codewords, dtype))  # type: ignore[return-value]


def accept_chunk(
    decoded: DecodedChunk,
    observed: np.ndarray,
    expected: np.ndarray,
    tolerance: np.ndarray,
    magnitude: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    """The decoded chunk, if its observed projection ``decoded @ V`` matches the expectation.

    Raises UncorrectableError if a codeword failed, DecodeMismatchError if the decode was wrong.
    """
    if decoded.values is None:
        raise UncorrectableError("a codeword holds more wrong blocks than the code can correct")
    return accept_values(decoded.values, observed, expected, tolerance, magnitude, v)


def accept_values(
    values: np.ndarray,
    observed: np.ndarray,
    expected: np.ndarray,
    tolerance: np.ndarray,
    magnitude: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    """``values`` if their observed projection matches the expected one; else DecodeMismatchError.

    The roundoff of ``observed = values @ V`` is bounded through ``|values| @ |V|``, which for a
    correct decode is at most ``magnitude + tolerance``: no second pass over ``values``. (Wrong
    values larger than that only get a tighter check.)
    """
    if not np.all(np.isfinite(values)):
        raise DecodeMismatchError("decoded values hold NaN/Inf: the decode step was faulty")
    with np.errstate(all="ignore"):
        slack = gamma(v.shape[0] + 1, np.float64) * (magnitude + tolerance)
        ok = observed.shape == expected.shape and bool(
            np.all(np.abs(observed - expected) <= 2 * (tolerance + slack) + np.finfo(np.float64).tiny)
        )
    if not ok:
        raise DecodeMismatchError("decoded values disagree with the independent check")
    return values


@dataclass(frozen=True)
class Rejected:
    """A verify task's refusal of a decoded result: recompute it (or roll back).

    Small, and recognised by the client from the future's type without fetching it.
    """

    error: str
    reason: str


@dataclass(frozen=True)
class Skipped:
    """Work not done because something it depends on was not accepted: a product whose operand is
    a rejected, pending or skipped result, an update whose gate holds a verdict other than
    accepted. A step's operations are submitted together and accepted inside the graph; what
    follows an operation that was not accepted is skipped (no arithmetic, no fault site) and the
    client redoes it once that operation is settled."""

    reason: str = "an input was not accepted"


class DecodeMismatchError(UncorrectableError):
    """A decode task's output failed the independent verification: recompute the decode."""

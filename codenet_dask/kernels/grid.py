"""Check and repair a coded weight grid at rest (a product-code decoder over stored blocks).

Every block-column of the coded grid is a codeword of the row code and every block-row one of the
column code. Each block is summarised by random projections (``W v`` for the column codewords,
``uᵀ W`` for the row codewords) with a rigorous bound on how far each projected entry may sit from
the exact codeword's: the block's own ``err`` bookkeeping plus the roundoff of the projection.
:func:`check_codeword` turns those into verdicts; this module combines the verdicts of both
directions like a product-code decoder: a block is bad if it is missing or non-finite, or located
in its row or its column; bad blocks are rebuilt from whichever codeword still has enough good,
vouched-for blocks, and the whole grid is re-checked until nothing changes.

Row and column checks alone can be fooled after rebuilds (a rebuilt block makes its own codeword
consistent; errors can travel around a rectangle of rebuilds), so the final word is global: a
stored block is verified only if it takes part in some check of the whole product code among the
trusted blocks, and a rebuilt block is a repair only if it follows from verified blocks alone and
agrees with them. Everything else is reported (``unverified`` / ``unrepairable``) rather than
silently accepted. Pure numpy: no Dask, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

import numpy as np

from ..codes import CodewordCheck, ProductCode, SystematicMDSCode, check_codeword, gamma, unit_roundoff
from ..codes.decoder import benign_slack
from ..errors import ShapeMismatchError
from .blocks import CodedBlock, encoding_error

BlockKey = tuple[int, int]
Direction = Literal["column", "row"]

#: Projections per block and direction; two random vectors make a wrong block escape with prob. 0.
PROJECTIONS = 2
#: A block rebuilt this many times and still located again is given up on.
MAX_REBUILDS = 2


@dataclass(frozen=True)
class GridReport:
    """Exact coordinates of what a grid check found.

    ``erased``: missing, non-finite or with unusable bookkeeping on input. ``located``: present but
    shown wrong by the code relations. ``repaired``: rebuilt and re-verified clean.
    ``unrepairable``: bad and not repaired (with ``repair=False``: every bad block).
    ``unverified``: not shown wrong, but the code cannot vouch for them: no check of the whole
    product code among the trusted blocks involves them (too much damage around them, errors the
    checks could detect but not place, or no parity at all).
    """

    shape: tuple[int, int]
    checked: tuple[BlockKey, ...]
    erased: tuple[BlockKey, ...]
    located: tuple[BlockKey, ...]
    repaired: tuple[BlockKey, ...]
    unrepairable: tuple[BlockKey, ...]
    unverified: tuple[BlockKey, ...]

    @property
    def bad(self) -> tuple[BlockKey, ...]:
        """Every block found wrong (erased or located), repaired or not."""
        return tuple(sorted(set(self.erased) | set(self.located)))

    @property
    def clean(self) -> bool:
        """Nothing wrong was found and every block was vouched for."""
        return not (self.bad or self.unverified)

    @property
    def ok(self) -> bool:
        """The grid is now trustworthy: clean, or every bad block repaired and verified."""
        return not (self.unrepairable or self.unverified)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON reports."""
        return {
            "shape": list(self.shape),
            "checked": len(self.checked),
            "erased": [list(k) for k in self.erased],
            "located": [list(k) for k in self.located],
            "repaired": [list(k) for k in self.repaired],
            "unrepairable": [list(k) for k in self.unrepairable],
            "unverified": [list(k) for k in self.unverified],
            "ok": self.ok,
        }


@dataclass(frozen=True)
class GridCheck:
    """A :class:`GridReport` and the grid after repair (unrepairable blocks are ``None``)."""

    report: GridReport
    blocks: dict[BlockKey, CodedBlock | None] = field(repr=False)


@dataclass
class BlockProjection:
    """One block's projections and their noise bounds, flattened for :func:`check_codeword`.

    All a check needs of a block (:func:`project_blocks`): a few floats per row and column, so a
    distributed grid can be checked without moving its blocks.
    """

    right: np.ndarray
    right_noise: np.ndarray
    left: np.ndarray
    left_noise: np.ndarray


def _usable(block: CodedBlock | None) -> TypeGuard[CodedBlock]:
    """A block can take part in checks: present, finite values, sane bookkeeping."""
    if block is None:
        return False
    if not (np.isfinite(block.err) and block.err >= 0 and np.isfinite(block.max_abs)):
        return False
    return bool(np.isfinite(block.values).all())


def projecting_vectors(block_shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded ``v`` (bw x k) and ``u`` (bh x k) every checker of one scrub projects with."""
    bh, bw = block_shape
    rng = np.random.default_rng(seed)
    return rng.standard_normal((bw, PROJECTIONS)), rng.standard_normal((bh, PROJECTIONS))


def project_blocks(
    blocks: Mapping[BlockKey, CodedBlock | None], block_shape: tuple[int, int], seed: int
) -> dict[BlockKey, BlockProjection | None]:
    """What a grid check needs of each block (None: missing or unusable, an erasure).

    Runs where the blocks are (one task per worker); :func:`locate_in_grid` takes the union.
    """
    v, u = projecting_vectors(block_shape, seed)
    return {
        key: _project(blk, v, u) if _usable(blk) and blk.shape == tuple(block_shape) else None
        for key, blk in blocks.items()
    }


def _project(block: CodedBlock, v: np.ndarray, u: np.ndarray) -> BlockProjection:
    """``W v`` and ``uᵀ W`` in float64 with elementwise bounds on their distance from the exact codeword's.

    Distance = stored error (``err`` per entry, times the 1-norm of the projecting vector) plus the
    float64 roundoff of the projection itself (``gamma(m) |W| |v|``).
    """
    w = np.asarray(block.values, dtype=np.float64)
    abs_w = np.abs(w)
    bh, bw = w.shape
    right = w @ v
    right_noise = block.err * np.abs(v).sum(axis=0)[None, :] + gamma(bw + 1, np.float64) * (abs_w @ np.abs(v))
    left = u.T @ w
    left_noise = block.err * np.abs(u).sum(axis=0)[:, None] + gamma(bh + 1, np.float64) * (np.abs(u).T @ abs_w)
    return BlockProjection(right.ravel(), right_noise.ravel(), left.ravel(), left_noise.ravel())


def _normalise(
    code: ProductCode, blocks: Mapping[BlockKey, CodedBlock | None] | np.ndarray
) -> dict[BlockKey, CodedBlock | None]:
    nr, nc = code.coded_shape
    if isinstance(blocks, np.ndarray):
        if blocks.shape != (nr, nc):
            raise ShapeMismatchError(f"expected a {nr}x{nc} array of blocks, got shape {blocks.shape}")
        return {(a, b): blocks[a, b] for a in range(nr) for b in range(nc)}
    extra = [k for k in blocks if not (isinstance(k, tuple) and len(k) == 2 and 0 <= k[0] < nr and 0 <= k[1] < nc)]
    if extra:
        raise ShapeMismatchError(f"block keys {extra[:3]} lie outside the {nr}x{nc} coded grid")
    return {(a, b): blocks.get((a, b)) for a in range(nr) for b in range(nc)}


def _block_geometry(grid: Mapping[BlockKey, CodedBlock | None]) -> tuple[tuple[int, int], np.dtype] | None:
    present = [blk for blk in grid.values() if blk is not None]
    if not present:
        return None
    shape, dtype = present[0].shape, present[0].dtype
    for key, blk in grid.items():
        if blk is not None and (blk.shape != shape or blk.dtype != dtype):
            raise ShapeMismatchError(f"block {key} is {blk.shape} {blk.dtype}; the grid's blocks are {shape} {dtype}")
    return shape, dtype


class _GridDecoder:
    """State of one iterative decode: current blocks, the bad set, cached projections.

    Built from the blocks themselves, or from their projections alone (``projections``; then
    nothing can be rebuilt, only located).
    """

    def __init__(
        self,
        code: ProductCode,
        grid: dict[BlockKey, CodedBlock | None],
        seed: int,
        block_shape: tuple[int, int] | None = None,
        projections: Mapping[BlockKey, BlockProjection | None] | None = None,
    ) -> None:
        self.code = code
        self.nr, self.nc = code.coded_shape
        self.blocks = grid
        if block_shape is None:
            geometry = _block_geometry(grid)
            block_shape = geometry[0] if geometry else (1, 1)
        self.v, self.u = projecting_vectors(block_shape, seed)
        if projections is None:
            self.erased = {k for k, blk in grid.items() if not _usable(blk)}
            self._proj: dict[BlockKey, BlockProjection] = {}
        else:
            self.erased = {k for k in grid if projections.get(k) is None}
            self._proj = {k: p for k, p in projections.items() if p is not None}
        self.bad = set(self.erased)
        self.located: set[BlockKey] = set()
        self.rebuilds: dict[BlockKey, int] = {}
        #: The codeword each rebuilt block was last rebuilt from.
        self.source: dict[BlockKey, tuple[Direction, int]] = {}

    # -- checks -------------------------------------------------------------------------------
    def projection(self, key: BlockKey) -> BlockProjection:
        if key not in self._proj:
            blk = self.blocks[key]
            assert blk is not None
            self._proj[key] = _project(blk, self.v, self.u)
        return self._proj[key]

    def members(self, direction: Direction, index: int) -> list[BlockKey]:
        """Block coordinates of one codeword, in codeword order."""
        if direction == "column":
            return [(a, index) for a in range(self.nr)]
        return [(index, b) for b in range(self.nc)]

    def mds(self, direction: Direction) -> SystematicMDSCode:
        return self.code.row_code if direction == "column" else self.code.col_code

    def check(self, direction: Direction, index: int) -> CodewordCheck:
        keys = self.members(direction, index)
        erased = [i for i, k in enumerate(keys) if k in self.bad]
        known = [i for i in range(len(keys)) if i not in erased]
        if not known:
            return CodewordCheck(tuple(erased), (), "uncorrectable", float("inf"))
        pick = (lambda p: (p.right, p.right_noise)) if direction == "column" else (lambda p: (p.left, p.left_noise))
        pairs = {i: pick(self.projection(keys[i])) for i in known}
        width = next(iter(pairs.values()))[0].size
        z = np.zeros((len(keys), width))
        noise = np.zeros((len(keys), width))
        for i, (zz, nn) in pairs.items():
            z[i], noise[i] = zz, nn
        return check_codeword(self.mds(direction), z, noise, erased)

    def check_all(self) -> dict[tuple[Direction, int], CodewordCheck]:
        out: dict[tuple[Direction, int], CodewordCheck] = {}
        for b in range(self.nc):
            out[("column", b)] = self.check("column", b)
        for a in range(self.nr):
            out[("row", a)] = self.check("row", a)
        return out

    def locate_until_stable(self) -> dict[tuple[Direction, int], CodewordCheck]:
        """Re-check every codeword, adding located blocks to the bad set, until none are new."""
        while True:
            results = self.check_all()
            new: set[BlockKey] = set()
            for (direction, index), res in results.items():
                keys = self.members(direction, index)
                new.update(keys[i] for i in res.located)
            new -= self.bad
            if not new:
                return results
            self.bad |= new
            self.located |= new

    def redundancy(self, direction: Direction, index: int) -> int:
        """Parity left in a codeword once its bad blocks are treated as erasures."""
        keys = self.members(direction, index)
        return self.mds(direction).p - sum(k in self.bad for k in keys)

    def independent_redundancy(self, direction: Direction, index: int) -> int:
        """Redundancy that can vouch for a codeword's blocks.

        Blocks rebuilt *from this codeword* do not count: a rebuild makes its own codeword
        consistent by construction, so that consistency proves nothing about the sources. (Without
        this, a wrong source in a codeword with no redundancy left would be "verified" by the very
        block rebuilt from it.)
        """
        keys = self.members(direction, index)
        own = sum(self.source.get(k) == (direction, index) for k in keys if k not in self.bad)
        return self.redundancy(direction, index) - own

    def vouched(self, key: BlockKey, results: Mapping[tuple[Direction, int], CodewordCheck]) -> bool:
        """Some codeword holding ``key`` checks consistent with independent redundancy to spare."""
        a, b = key
        direction: Direction
        for direction, index in (("column", b), ("row", a)):
            if (
                results[(direction, index)].status != "uncorrectable"
                and self.independent_redundancy(direction, index) >= 1
            ):
                return True
        return False

    def checked_locally(self, key: BlockKey, results: Mapping[tuple[Direction, int], CodewordCheck]) -> bool:
        """Some codeword holding ``key`` is consistent and has parity to spare (may be manufactured
        by rebuilds; :class:`_GlobalVerifier` sorts that out)."""
        a, b = key
        around: tuple[tuple[Direction, int], ...] = (("column", b), ("row", a))
        return any(results[(d, i)].status != "uncorrectable" and self.redundancy(d, i) >= 1 for d, i in around)

    # -- repair -------------------------------------------------------------------------------
    def rebuild_round(self, results: Mapping[tuple[Direction, int], CodewordCheck]) -> bool:
        """Rebuild every bad block some codeword can supply; True if anything was rebuilt."""
        plan: dict[tuple[Direction, int], list[BlockKey]] = {}
        for key in sorted(self.bad):
            if self.rebuilds.get(key, 0) >= MAX_REBUILDS:
                continue
            a, b = key
            options = []
            direction: Direction
            for direction, index in (("column", b), ("row", a)):
                if results[(direction, index)].status == "uncorrectable" or self.redundancy(direction, index) < 0:
                    continue
                sources = [k for k in self.members(direction, index) if k not in self.bad]
                trusted = all(self.vouched(s, results) for s in sources)
                options.append((trusted, self.redundancy(direction, index), direction == "column", direction, index))
            if options:
                # Prefer sources other codewords vouch for; unvouched sources are allowed because
                # the rebuilt block is re-checked (with the redundancy its rebuild restores) before
                # any repair is claimed.
                *_, direction, index = max(options)
                plan.setdefault((direction, index), []).append(key)
        rebuilt: dict[BlockKey, CodedBlock] = {}
        for (direction, index), wanted in plan.items():
            for key, blk in self.rebuild(direction, index, wanted).items():
                rebuilt[key] = blk
                self.source[key] = (direction, index)
        for key, blk in rebuilt.items():
            self.blocks[key] = blk
            self._proj.pop(key, None)
            self.bad.discard(key)
            self.rebuilds[key] = self.rebuilds.get(key, 0) + 1
        return bool(rebuilt)

    def rebuild(self, direction: Direction, index: int, wanted: list[BlockKey]) -> dict[BlockKey, CodedBlock]:
        """Recompute ``wanted`` from the codeword's good blocks, with a rigorous ``err`` for each."""
        keys = self.members(direction, index)
        code = self.mds(direction)
        known = [i for i, k in enumerate(keys) if k not in self.bad]
        positions = [keys.index(k) for k in wanted]
        coeffs = code.rebuild_matrix(known, positions)
        sources = [self.blocks[keys[i]] for i in known]
        assert all(s is not None for s in sources)
        dtype = sources[0].dtype  # type: ignore[union-attr]
        # Inexact coefficients (pinv in float64, then cast to the block dtype) count as roundoff.
        gen_known = code.generator[known]
        coeff_rel = float(np.linalg.cond(gen_known)) * gamma(code.n + code.k, np.float64) + unit_roundoff(dtype)
        terms = len(known)
        out: dict[BlockKey, CodedBlock] = {}
        for row, key in zip(coeffs, wanted):
            acc = np.zeros(sources[0].shape, dtype=dtype)  # type: ignore[union-attr]
            for c, src in zip(row, sources):
                acc = acc + src.values * dtype.type(c)  # type: ignore[union-attr]
            abs_c = np.abs(row)
            scale = float(sum(ac * s.max_abs for ac, s in zip(abs_c, sources)))  # type: ignore[union-attr]
            err = (
                float(sum(ac * s.err for ac, s in zip(abs_c, sources)))  # type: ignore[union-attr]
                + (gamma(terms + 1, dtype) + coeff_rel) * scale
            )
            updates = max(s.updates for s in sources)  # type: ignore[union-attr]
            out[key] = CodedBlock.from_values(acc, err=err, updates=updates)
        return out


@dataclass(frozen=True)
class _Verdict:
    verified: tuple[BlockKey, ...]
    repaired: tuple[BlockKey, ...]


class _GlobalVerifier:
    """Decides what the code really vouches for, on the whole product code at once.

    Row and column checks are local: after rebuilds, a codeword can look consistent only because
    a block was rebuilt from it, and errors can travel along chains of rebuilds and cancel around
    a rectangle. Globally, block (a, b) of the grid is ``kron(G_r[a], G_c[b]) @ m`` for the
    message m, so with ``G`` the Kronecker generator:

    - a stored block is *verified* iff the blocks trusted with it are consistent with the code and
      it takes part in some check on them (its row of ``G`` lies in the span of the others');
      a block in no check ("free") could be wrong without any evidence, so it is unverified;
    - a rebuilt block is a *repair* iff its row of ``G`` lies in the span of the verified blocks
      (its value follows from them alone) and its values are consistent with them.
    Consistency is tested on the projections with rigorous thresholds, like every other check.
    """

    RANK_TOL = 1e-9

    def __init__(self, code: ProductCode, decoder: _GridDecoder) -> None:
        self.decoder = decoder
        self.generator = np.kron(code.row_code.generator, code.col_code.generator)
        self.nc = code.coded_shape[1]
        # The same tolerance policy as the codeword checks: a deviation within the codes'
        # benign slack of its noise bound is roundoff-level, not evidence of an error.
        self.slack = max(
            benign_slack(code.row_code) if code.pr else 1.0, benign_slack(code.col_code) if code.pc else 1.0
        )

    def rows(self, keys: list[BlockKey]) -> np.ndarray:
        return self.generator[[a * self.nc + b for a, b in keys]]

    def left_null(self, keys: list[BlockKey]) -> np.ndarray:
        """Orthonormal rows H with ``H @ G_keys = 0``: every check among ``keys``."""
        g = self.rows(keys)
        u, sv, _ = np.linalg.svd(g, full_matrices=True)
        rank = int(np.sum(sv > self.RANK_TOL * (sv[0] if sv.size else 1.0)))
        return u[:, rank:].T

    def consistent(self, keys: list[BlockKey]) -> bool:
        """The blocks' projections fit one codeword within their noise bounds."""
        if not keys:
            return True
        h = self.left_null(keys)
        if h.shape[0] == 0:
            return True
        proj = [self.decoder.projection(k) for k in keys]
        z = np.stack([p.right for p in proj])
        noise = np.stack([p.right_noise for p in proj])
        g = self.rows(keys)
        abs_h = np.abs(h)
        fitted = np.linalg.lstsq(g, z, rcond=None)[0]
        # H is computed, so H @ G is only ~0: bound that leak with the fitted message.
        leak = (np.abs(h @ g) + gamma(g.shape[1] + 2, np.float64) * (abs_h @ np.abs(g))) @ np.abs(fitted)
        tau = (abs_h @ noise + gamma(len(keys) + 2, np.float64) * (abs_h @ np.abs(z)) + 2 * leak) * self.slack
        return bool(np.all(np.abs(h @ z) <= np.maximum(tau, np.finfo(np.float64).tiny)))

    def in_span(self, key: BlockKey, keys: list[BlockKey]) -> bool:
        if not keys:
            return False
        g, row = self.rows(keys), self.rows([key])[0]
        coeffs = np.linalg.lstsq(g.T, row, rcond=None)[0]
        return bool(np.linalg.norm(g.T @ coeffs - row) <= self.RANK_TOL * max(1.0, float(np.linalg.norm(row))))

    def verify(self, stored: list[BlockKey], rebuilt: list[BlockKey]) -> _Verdict:
        if not stored or not self.consistent(stored):
            return _Verdict((), ())  # evidence of errors no check could place: vouch for nothing
        h = self.left_null(stored)
        involved = np.linalg.norm(h, axis=0) > self.RANK_TOL if h.shape[0] else np.zeros(len(stored), bool)
        verified = [k for k, used in zip(stored, involved) if used]
        repaired = [k for k in rebuilt if self.in_span(k, verified) and self.consistent([*verified, k])]
        if repaired and not self.consistent(verified + repaired):
            repaired = []
        return _Verdict(tuple(verified), tuple(repaired))


def encode_blocks(code: ProductCode, systematic: np.ndarray) -> dict[BlockKey, CodedBlock]:
    """The coded grid of ``systematic`` blocks ``(kr, kc, bh, bw)`` as CodedBlocks with rigorous ``err``.

    Same order as the cluster's encode (row parities, then column parities of every block-row), so
    the bookkeeping matches what workers would hold. For tests, benchmarks and fresh stores.
    """
    if systematic.ndim != 4 or systematic.shape[:2] != (code.kr, code.kc):
        raise ShapeMismatchError(
            f"expected systematic blocks of shape ({code.kr}, {code.kc}, bh, bw), got {systematic.shape}"
        )
    nr, nc = code.coded_shape
    out: dict[BlockKey, CodedBlock] = {
        (i, j): CodedBlock.from_values(np.array(systematic[i, j]), 0.0) for i in range(code.kr) for j in range(code.kc)
    }

    def parity(sources: list[CodedBlock], coeffs: np.ndarray) -> CodedBlock:
        dtype = sources[0].dtype
        values = sum(dtype.type(c) * s.values for c, s in zip(coeffs, sources))
        abs_max = float(sum(abs(c) * s.max_abs for c, s in zip(coeffs, sources)))
        err = encoding_error(len(sources), abs_max, dtype) + float(sum(abs(c) * s.err for c, s in zip(coeffs, sources)))
        return CodedBlock.from_values(np.asarray(values), err)

    row_a, col_a = code.row_code.parity_matrix, code.col_code.parity_matrix
    for q in range(code.pr):
        for j in range(code.kc):
            out[(code.kr + q, j)] = parity([out[(i, j)] for i in range(code.kr)], row_a[q])
    for i in range(nr):
        for q in range(code.pc):
            out[(i, code.kc + q)] = parity([out[(i, j)] for j in range(code.kc)], col_a[q])
    return {(a, b): out[(a, b)] for a in range(nr) for b in range(nc)}


def check_grid(
    code: ProductCode,
    blocks: Mapping[BlockKey, CodedBlock | None] | np.ndarray,
    *,
    repair: bool = True,
    seed: int = 0,
) -> GridCheck:
    """Check every block of a coded grid at rest and, if ``repair``, rebuild the bad ones.

    ``blocks`` maps ``(a, b)`` to a :class:`CodedBlock` or ``None`` (missing), or is an ``nr x nc``
    object array. ``seed`` picks the projecting vectors. The input mapping is not modified.
    """
    grid = _normalise(code, blocks)
    _block_geometry(grid)
    decoder = _GridDecoder(code, dict(grid), seed)
    results = decoder.locate_until_stable()
    if repair:
        while decoder.rebuild_round(results):
            results = decoder.locate_until_stable()
    return GridCheck(report=_conclude(code, decoder, list(grid), results), blocks=decoder.blocks)


def locate_in_grid(
    code: ProductCode,
    projections: Mapping[BlockKey, BlockProjection | None],
    block_shape: tuple[int, int],
    seed: int,
) -> GridReport:
    """:func:`check_grid` without repair, from the blocks' projections alone (:func:`project_blocks`
    with the same ``seed``): the same verdicts, and no block has to move. Blocks absent from
    ``projections`` count as missing."""
    nr, nc = code.coded_shape
    keys = [(a, b) for a in range(nr) for b in range(nc)]
    decoder = _GridDecoder(code, dict.fromkeys(keys), seed, block_shape, projections)
    return _conclude(code, decoder, keys, decoder.locate_until_stable())


def _conclude(
    code: ProductCode,
    decoder: _GridDecoder,
    keys: list[BlockKey],
    results: Mapping[tuple[Direction, int], CodewordCheck],
) -> GridReport:
    """The report of a finished decode; rebuilt blocks it cannot vouch for are dropped (None)."""
    found_bad = decoder.erased | decoder.located
    rebuilt = {k for k in decoder.rebuilds if k not in decoder.bad}
    original = [k for k in keys if k not in found_bad]
    # Blocks no consistent codeword with redundancy even sees may hold undetected errors.
    seen = [k for k in original if decoder.checked_locally(k, results)]
    verdict = _GlobalVerifier(code, decoder).verify(seen, sorted(rebuilt))
    repaired = set(verdict.repaired)
    for key in rebuilt - repaired:  # rebuilt but not verified: never hand it out
        decoder.blocks[key] = None
    unrepairable = (decoder.bad | (rebuilt - repaired)) & found_bad
    for key in unrepairable:
        decoder.blocks[key] = None
    unverified = set(original) - set(verdict.verified)
    return GridReport(
        shape=(decoder.nr, decoder.nc),
        checked=tuple(sorted(keys)),
        erased=tuple(sorted(decoder.erased)),
        located=tuple(sorted(decoder.located)),
        repaired=tuple(sorted(repaired)),
        unrepairable=tuple(sorted(unrepairable)),
        unverified=tuple(sorted(unverified)),
    )

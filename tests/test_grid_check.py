"""The at-rest grid check: exhaustive erasure and error patterns on small product-code grids.

Expected outcomes come from independent oracles (a boolean peeling decoder for erasures, ground
truth for errors), never from the decoder under test.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from codenet_dask.codes import ProductCode
from codenet_dask.errors import ShapeMismatchError
from codenet_dask.kernels.blocks import CodedBlock
from codenet_dask.kernels.grid import GridCheck, check_grid, encode_blocks, locate_in_grid, project_blocks

Key = tuple[int, int]


def coded(code: ProductCode, bh: int = 3, bw: int = 4, dtype=np.float64, seed: int = 0) -> dict[Key, CodedBlock]:
    rng = np.random.default_rng(seed)
    return encode_blocks(code, rng.standard_normal((code.kr, code.kc, bh, bw)).astype(dtype))


def corrupt(block: CodedBlock, rng: np.random.Generator) -> CodedBlock:
    """A wrong block: a random subset of entries moved by 1e-3..1 of the block's scale."""
    values = block.values.copy()
    mask = rng.random(values.shape) < 0.5
    mask.flat[rng.integers(values.size)] = True
    scale = float(np.abs(values).max())
    values[mask] += (rng.choice([-1, 1], mask.sum()) * 10 ** rng.uniform(-3, 0, mask.sum()) * scale).astype(
        values.dtype
    )
    return replace(block, values=values)


def peel(erased: set[Key], nr: int, nc: int, pr: int, pc: int) -> set[Key]:
    """Oracle: what iterative row/column erasure decoding cannot recover."""
    stuck = set(erased)
    changed = True
    while changed:
        changed = False
        for b in range(nc):
            col = {(a, b) for a in range(nr)} & stuck
            if 0 < len(col) <= pr:
                stuck -= col
                changed = True
        for a in range(nr):
            row = {(a, b) for b in range(nc)} & stuck
            if 0 < len(row) <= pc:
                stuck -= row
                changed = True
    return stuck


def global_oracle(code: ProductCode, erased: set[Key]) -> tuple[set[Key], set[Key]]:
    """Oracle by rank, on the whole product code (generator ``kron(G_r, G_c)``), for erasures.

    Returns (free, recoverable): ``free`` stored blocks take part in no check among the stored
    blocks (nothing can vouch for them); ``recoverable`` erased blocks follow from the others.
    """
    nr, nc = code.coded_shape
    g = np.kron(code.row_code.generator, code.col_code.generator)

    def rank(keys) -> int:
        return int(np.linalg.matrix_rank(g[[a * nc + b for a, b in keys]], tol=1e-9)) if keys else 0

    known = [(a, b) for a in range(nr) for b in range(nc) if (a, b) not in erased]
    full = rank(known)
    free = {k for k in known if rank([x for x in known if x != k]) < full}
    verified = [k for k in known if k not in free]
    base = rank(verified)
    return free, {e for e in erased if rank([*verified, e]) == base}


def assert_sound(result: GridCheck, truth: dict[Key, CodedBlock]) -> None:
    """Every block handed out (not None, not flagged unverified) is within its rigorous bound of the truth."""
    for key, blk in result.blocks.items():
        if blk is None or key in result.report.unverified:
            continue
        distance = np.abs(blk.values.astype(np.float64) - truth[key].values).max()
        assert distance <= blk.err + truth[key].err, (key, distance, blk.err, truth[key].err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 2, 1, 1), (3, 2, 2, 1), (4, 3, 2, 2), (2, 2, 0, 2)])
def test_clean_grid_has_no_false_positives(shape, dtype):
    code = ProductCode(*shape)
    for seed in range(5):
        truth = coded(code, 5, 7, dtype, seed)
        report = check_grid(code, truth, seed=seed).report
        assert not report.bad
        assert report.ok if (code.pr or code.pc) else True
        assert len(report.checked) == code.coded_shape[0] * code.coded_shape[1]


def test_large_magnitudes_and_rebuilt_err_keep_checks_clean():
    code = ProductCode(3, 3, 2, 2)
    truth = coded(code, 16, 16, np.float32)
    scaled = {k: CodedBlock.from_values(b.values * np.float32(1e6), b.err * 1e6) for k, b in truth.items()}
    grid = dict(scaled)
    grid[(0, 0)] = None
    first = check_grid(code, grid)
    assert first.report.repaired == ((0, 0),)
    again = check_grid(code, first.blocks, seed=7).report  # the rebuilt block's err must hold up
    assert again.clean


@pytest.mark.parametrize("shape", [(2, 2, 1, 1), (2, 1, 1, 2)])
def test_every_erasure_pattern(shape):
    code = ProductCode(*shape)
    nr, nc = code.coded_shape
    truth = coded(code)
    keys = list(truth)
    for r in range(len(keys) + 1):
        for pattern in itertools.combinations(keys, r):
            grid = {k: (None if k in pattern else truth[k]) for k in keys}
            result = check_grid(code, grid)
            rep = result.report
            stuck = peel(set(pattern), nr, nc, code.pr, code.pc)
            free, recoverable = global_oracle(code, set(pattern))
            assert set(rep.erased) == set(pattern)
            assert not rep.located
            assert set(rep.unverified) == free, pattern
            assert set(rep.repaired) == recoverable - stuck, pattern
            assert set(rep.unrepairable) == set(pattern) - set(rep.repaired), pattern
            assert all(result.blocks[k] is None for k in rep.unrepairable)
            assert_sound(result, truth)


def test_rebuild_chains_cannot_vouch_for_themselves():
    """3x3 grid, 1+1 parity: (0,0) lost, (0,1) and (1,0) wrong. Rebuilding (0,0) from either
    codeword makes that codeword consistent by construction; nothing may be claimed."""
    code = ProductCode(2, 2, 1, 1)
    truth = coded(code)
    rng = np.random.default_rng(9)
    grid = dict(truth)
    grid[(0, 0)] = None
    grid[(0, 1)] = corrupt(truth[(0, 1)], rng)
    grid[(1, 0)] = corrupt(truth[(1, 0)], rng)
    result = check_grid(code, grid)
    assert_sound(result, truth)
    assert not result.report.repaired and result.report.unrepairable == ((0, 0),)
    assert {(0, 1), (1, 0)} <= set(result.report.unverified)
    assert not result.report.ok


def test_random_erasure_patterns_4x5_with_nonfinite_and_bad_bookkeeping():
    code = ProductCode(2, 3, 2, 2)
    truth = coded(code, 4, 3)
    keys = list(truth)
    rng = np.random.default_rng(1)
    for trial in range(150):
        pattern = {k for k in keys if rng.random() < 0.3}
        grid: dict[Key, CodedBlock | None] = {}
        for k in keys:
            if k not in pattern:
                grid[k] = truth[k]
                continue
            kind = trial % 4
            if kind == 0:
                grid[k] = None
            elif kind == 1:
                values = truth[k].values.copy()
                values.flat[rng.integers(values.size)] = rng.choice([np.nan, np.inf, -np.inf])
                grid[k] = replace(truth[k], values=values)
            elif kind == 2:
                grid[k] = replace(truth[k], err=float("nan"))
            else:
                grid[k] = replace(truth[k], err=-1.0)
        result = check_grid(code, grid, seed=trial)
        stuck = peel(pattern, 4, 5, 2, 2)
        free, recoverable = global_oracle(code, pattern)
        assert set(result.report.erased) == pattern
        assert set(result.report.repaired) == recoverable - stuck
        assert set(result.report.unrepairable) == pattern - set(result.report.repaired)
        assert set(result.report.unverified) == free
        assert_sound(result, truth)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_error_pattern_up_to_three_is_located_and_repaired(dtype):
    code = ProductCode(2, 2, 2, 2)
    truth = coded(code, 3, 2, dtype)
    keys = list(truth)
    rng = np.random.default_rng(2)
    for r in (1, 2, 3):
        for pattern in itertools.combinations(keys, r):
            grid = {k: (corrupt(truth[k], rng) if k in pattern else truth[k]) for k in keys}
            result = check_grid(code, grid, seed=r)
            rep = result.report
            assert set(rep.located) == set(pattern), pattern
            assert set(rep.repaired) == set(pattern), pattern
            assert not rep.unrepairable and not rep.unverified and rep.ok
            assert_sound(result, truth)


def test_beyond_capacity_errors_are_never_accepted():
    """4 unknown errors on a 4x4 grid with 2+2 parity (all 36 squares, 250 other patterns):
    often beyond capacity, never silently wrong."""
    code = ProductCode(2, 2, 2, 2)
    truth = coded(code, 3, 2)
    keys = list(truth)
    rng = np.random.default_rng(3)
    squares = 0
    patterns = list(itertools.combinations(keys, 4))
    is_square = [len({k[0] for k in p}) == 2 and len({k[1] for k in p}) == 2 for p in patterns]
    others = [i for i, sq in enumerate(is_square) if not sq]
    chosen = [i for i, sq in enumerate(is_square) if sq] + list(rng.choice(others, 250, replace=False))
    for pattern in (patterns[i] for i in chosen):
        grid = {k: (corrupt(truth[k], rng) if k in pattern else truth[k]) for k in keys}
        result = check_grid(code, grid)
        rep = result.report
        assert_sound(result, truth)
        for k in pattern:  # each wrong block is flagged somewhere, and only repaired if verified
            assert k in rep.located or k in rep.unverified, (pattern, k)
        rows, cols = {k[0] for k in pattern}, {k[1] for k in pattern}
        if len(rows) == 2 and len(cols) == 2:  # a 2x2 square: no codeword can locate anything
            squares += 1
            assert set(rep.unverified) == set(pattern) and not rep.repaired
            assert not rep.ok
    assert squares == 36


def test_mixed_erasures_and_errors():
    code = ProductCode(3, 3, 2, 2)
    truth = coded(code, 4, 4)
    keys = list(truth)
    rng = np.random.default_rng(4)
    for trial in range(60):
        chosen = rng.choice(len(keys), size=4, replace=False)
        erased = {keys[i] for i in chosen[:2]}
        wrong = {keys[i] for i in chosen[2:]}
        grid = {k: None if k in erased else corrupt(truth[k], rng) if k in wrong else truth[k] for k in keys}
        result = check_grid(code, grid, seed=trial)
        assert_sound(result, truth)
        assert set(result.report.erased) == erased
        assert set(result.report.located) <= wrong
        for k in wrong:
            assert k in result.report.located or k in result.report.unverified
        assert result.report.ok == (set(result.report.repaired) == erased | wrong)


@pytest.mark.parametrize("shape", [(2, 2, 1, 1), (2, 2, 2, 2), (3, 2, 2, 1)])
def test_random_erasures_and_errors_beyond_capacity_are_never_accepted(shape):
    code = ProductCode(*shape)
    truth = coded(code, 3, 2)
    keys = list(truth)
    rng = np.random.default_rng(sum(shape))
    for trial in range(120):
        picked = rng.choice(len(keys), size=int(rng.integers(2, 7)), replace=False)
        split = int(rng.integers(0, len(picked) + 1))
        erased, wrong = {keys[i] for i in picked[:split]}, {keys[i] for i in picked[split:]}
        grid = {k: None if k in erased else corrupt(truth[k], rng) if k in wrong else truth[k] for k in keys}
        result = check_grid(code, grid, seed=trial)
        assert_sound(result, truth)
        for k in wrong:
            assert k in result.report.located or k in result.report.unverified, (erased, wrong, k)


def test_repair_false_reports_without_rebuilding():
    code = ProductCode(2, 2, 2, 2)
    truth = coded(code)
    grid = dict(truth)
    grid[(0, 0)] = None
    grid[(2, 3)] = corrupt(truth[(2, 3)], np.random.default_rng(0))
    result = check_grid(code, grid, repair=False)
    assert result.report.erased == ((0, 0),) and result.report.located == ((2, 3),)
    assert not result.report.repaired and set(result.report.unrepairable) == {(0, 0), (2, 3)}
    assert result.blocks[(0, 0)] is None and result.blocks[(2, 3)] is None


def test_no_parity_means_nothing_is_verified():
    code = ProductCode(2, 2, 0, 0)
    truth = coded(code)
    rep = check_grid(code, truth).report
    assert set(rep.unverified) == set(truth) and not rep.ok


def test_input_is_not_modified_and_array_input_works():
    code = ProductCode(2, 2, 1, 1)
    truth = coded(code)
    grid = dict(truth)
    grid[(1, 1)] = None
    array = np.empty((3, 3), dtype=object)
    for (a, b), blk in grid.items():
        array[a, b] = blk
    result = check_grid(code, array)
    assert result.report.repaired == ((1, 1),) and array[1, 1] is None and grid[(1, 1)] is None


def test_shape_errors():
    code = ProductCode(2, 2, 1, 1)
    truth = coded(code)
    bad = dict(truth)
    bad[(0, 0)] = CodedBlock.from_values(np.zeros((2, 2)))
    with pytest.raises(ShapeMismatchError):
        check_grid(code, bad)
    with pytest.raises(ShapeMismatchError):
        check_grid(code, {**truth, (5, 0): truth[(0, 0)]})
    with pytest.raises(ShapeMismatchError):
        check_grid(code, np.empty((2, 2), dtype=object))


@pytest.mark.parametrize("shape", [(2, 2, 2, 2), (3, 2, 1, 2), (4, 4, 2, 2)])
def test_projections_alone_reach_the_same_verdicts(shape):
    """locate_in_grid on per-worker projections (the cluster's scrub, no block moved) finds exactly
    what check_grid(repair=False) finds on the blocks: every pattern of up to three damaged blocks
    (missing, NaN or wrong), split over two 'workers'."""
    code = ProductCode(*shape)
    truth = coded(code, 4, 5)
    keys = sorted(truth)
    rng = np.random.default_rng(sum(shape))
    patterns = [()] + [c for r in (1, 2, 3) for c in itertools.combinations(keys, r)]
    for pattern in [patterns[i] for i in rng.choice(len(patterns), size=min(len(patterns), 60), replace=False)]:
        grid: dict[Key, CodedBlock | None] = dict(truth)
        for key in pattern:
            kind = rng.integers(3)
            grid[key] = (
                None
                if kind == 0
                else corrupt(truth[key], rng)
                if kind == 1
                else replace(truth[key], values=np.full_like(truth[key].values, np.nan))
            )
        seed = int(rng.integers(1000))
        halves = [{k: b for k, b in grid.items() if (k[0] + k[1]) % 2 == w} for w in (0, 1)]
        projections = {k: p for half in halves for k, p in project_blocks(half, (4, 5), seed).items()}
        assert locate_in_grid(code, projections, (4, 5), seed) == check_grid(code, grid, repair=False, seed=seed).report

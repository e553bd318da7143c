"""``codenet_dask.matmul`` as a drop-in for ``a @ b``: random chunkings, with and without corruption."""

from __future__ import annotations

import itertools

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codenet_dask
from codenet_dask import UncorrectableError
from codenet_dask.faults import Corruption, CorruptionPlan


def chunking(draw, length: int) -> tuple[int, ...]:
    cuts = sorted(set(draw(st.lists(st.integers(1, length - 1), max_size=3)))) if length > 1 else []
    edges = [0, *cuts, length]
    return tuple(b - a for a, b in itertools.pairwise(edges))


@st.composite
def problems(draw):
    n, m, q = draw(st.integers(2, 40)), draw(st.integers(2, 40)), draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    a_chunks = (chunking(draw, n), chunking(draw, m))
    b_chunks = (chunking(draw, m), chunking(draw, q))
    parity = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return n, m, q, dtype, a_chunks, b_chunks, parity, seed


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ b.astype(np.float64)


def tolerance(dtype) -> float:
    return 1e-10 if dtype == np.float64 else 1e-3


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(problem=problems(), corrupt=st.booleans())
def test_random_chunkings_match_numpy(client, problem, corrupt):
    n, m, q, dtype, a_chunks, b_chunks, parity, seed = problem
    rng = np.random.default_rng(seed)
    a_np, b_np = rng.standard_normal((n, m)).astype(dtype), rng.standard_normal((m, q)).astype(dtype)
    a, b = da.from_array(a_np, chunks=a_chunks), da.from_array(b_np, chunks=b_chunks)
    kr = len(a_chunks[0])
    hook = None
    if corrupt:  # one wrong block result in every codeword (one per column block of a)
        # An unknown-position error needs 2 parities; NaN/Inf (known position) needs 1.
        kinds = ["nan", "bitflip", "inf", "nan"] if parity >= 2 else ["nan", "inf", "-inf", "nan"]
        hook = CorruptionPlan(
            tuple(
                Corruption(
                    "block-forward",
                    block=(int(rng.integers(kr + parity)), j),
                    kind=kind,
                    bit=62 if dtype == np.float64 else 30,
                )
                for j, kind in zip(range(len(a_chunks[1])), kinds)
            )
        )
    out = codenet_dask.matmul(a, b, parity=parity, hook=hook)
    assert out.shape == (n, q) and out.dtype == np.result_type(a_np, b_np)
    got = out.compute()  # on the session's distributed Client (the default once created)
    want = reference(a_np, b_np)
    assert np.max(np.abs(got - want)) <= tolerance(dtype) * max(1.0, np.max(np.abs(want)))


def test_matmul_on_the_default_threaded_scheduler_without_a_client():
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((50, 30)), rng.standard_normal((30, 9))
    a, b = da.from_array(a_np, chunks=(13, 10)), da.from_array(b_np, chunks=(10, 4))
    hook = CorruptionPlan((Corruption("block-forward", block=(1, 2), kind="bitflip", bit=60),))
    with dask.config.set(scheduler="threads"):
        got = codenet_dask.matmul(a, b, hook=hook, grid=(3, 2)).compute()
    assert np.max(np.abs(got - a_np @ b_np)) < 1e-10 * np.max(np.abs(a_np @ b_np))


def test_matmul_accepts_numpy_inputs_and_is_lazy():
    rng = np.random.default_rng(1)
    a_np, b_np = rng.standard_normal((20, 8)), rng.standard_normal((8, 3))
    out = codenet_dask.matmul(a_np, b_np, grid=(4, 2))
    assert isinstance(out, da.Array)
    names = {k[0] if isinstance(k, tuple) else k for k in out.__dask_graph__()}
    for step in ("encode", "block-forward", "project-forward", "decode-forward", "verify-forward"):
        assert any(name.startswith(step) for name in names), step
    np.testing.assert_allclose(out.compute(scheduler="sync"), a_np @ b_np, rtol=1e-12, atol=1e-12)


def test_beyond_capacity_raises_on_compute_instead_of_returning_wrong_numbers():
    rng = np.random.default_rng(2)
    a_np, b_np = rng.standard_normal((40, 40)), rng.standard_normal((40, 5))
    hook = CorruptionPlan(
        (
            Corruption("block-forward", block=(0, 1), kind="add", relative=0.3),
            Corruption("block-forward", block=(2, 1), kind="add", relative=0.2, index=(1, 3)),
        )
    )
    out = codenet_dask.matmul(da.from_array(a_np, chunks=10), da.from_array(b_np, chunks=(10, 5)), parity=2, hook=hook)
    with pytest.raises(UncorrectableError):
        out.compute(scheduler="sync")


def test_faulty_decode_is_caught_by_the_independent_verify():
    rng = np.random.default_rng(3)
    a_np, b_np = rng.standard_normal((30, 30)), rng.standard_normal((30, 4))
    hook = CorruptionPlan((Corruption("decode", block=(1,), kind="add", relative=1e-4),))
    out = codenet_dask.matmul(a_np, b_np, grid=(3, 3), hook=hook)
    with pytest.raises(UncorrectableError, match="independent check"):
        out.compute(scheduler="sync")

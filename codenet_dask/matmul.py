"""``codenet_dask.matmul``: a resilient drop-in for ``a @ b`` on dask arrays.

The returned dask array's graph encodes ``a``'s blocks with a row code (``parity`` extra
block-rows), multiplies every coded block by its piece of ``b``, and lets each output chunk's
consumer check, correct and sum its column codewords, with an independent verify task accepting
the chunk. Up to ``floor(parity / 2)`` wrong block results per codeword (``parity`` if they are
NaN/Inf or impossibly large) are corrected; more raise :class:`UncorrectableError` on compute,
never a wrong array.
"""

from __future__ import annotations

import math
import uuid
from typing import cast

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from .codes import ProductCode, require_real_float
from .errors import CodeParameterError, ShapeMismatchError
from .executors.dask_cluster import graph_of
from .faults import CorruptionHook, NoFaults, Site
from .kernels import encode
from .kernels.checks import projection_matrix
from .protocol.plans import ProductSpec, encode_plan, product_plan
from .protocol.types import Plan


def matmul(
    a: da.Array | np.ndarray,
    b: da.Array | np.ndarray,
    *,
    parity: int = 2,
    grid: tuple[int, int] | None = None,
    hook: CorruptionHook | None = None,
    seed: int = 0,
) -> da.Array:
    """``a @ b`` computed through a coded, self-checking Dask graph.

    ``grid`` is the ``(row blocks, column blocks)`` split of ``a`` (default: ``a``'s chunking);
    ``b``'s column chunks are kept. Works with any scheduler; on a distributed ``Client`` the
    block tasks spread over its workers.

    >>> import dask.array as da, numpy as np
    >>> x = da.ones((8, 6), chunks=(4, 3)); y = da.ones((6, 2), chunks=(3, 2))
    >>> float(matmul(x, y).sum().compute())
    96.0
    """
    a, b = cast(da.Array, da.asarray(a)), cast(da.Array, da.asarray(b))
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeMismatchError(f"matmul needs two matrices, got {a.ndim}-D and {b.ndim}-D arrays")
    if a.shape[1] != b.shape[0]:
        raise ShapeMismatchError(
            f"shapes {a.shape} and {b.shape} do not align: a has {a.shape[1]} columns, b {b.shape[0]} rows"
        )
    require_real_float(a.dtype, "a")
    require_real_float(b.dtype, "b")
    dtype = np.result_type(a.dtype, b.dtype)
    kr, kc = grid if grid is not None else (len(a.chunks[0]), len(a.chunks[1]))
    if not all(isinstance(k, int) and k >= 1 for k in (kr, kc)):
        raise CodeParameterError(f"grid must be two positive integers, got {grid!r}")
    if kr > a.shape[0] or kc > a.shape[1]:
        raise CodeParameterError(
            f"a {kr}x{kc} block grid is finer than the {a.shape[0]}x{a.shape[1]} matrix; "
            f"use at most {a.shape[0]}x{a.shape[1]} blocks"
        )
    if not (isinstance(parity, int) and parity >= 0):
        raise CodeParameterError(f"parity must be a non-negative integer, got {parity!r}")
    code = ProductCode(kr, kc, parity, 0)
    hook = hook or NoFaults()

    bh, bw = math.ceil(a.shape[0] / kr), math.ceil(a.shape[1] / kc)
    a_p = _pad_to(a.astype(dtype), (bh * kr, bw * kc)).rechunk((bh, bw))
    b_p = _pad_to(b.astype(dtype), (bw * kc, b.shape[1])).rechunk((bw, b.chunks[1]))
    token = uuid.uuid4().hex[:10]
    # Fault sites name the product "matmul" (a seeded hook hits the same sites call after call);
    # keys carry a token (two calls never share a key).
    layer, key_layer = "matmul", f"matmul{token}"

    plan = Plan()
    systematic = {}
    for i in range(kr):
        for j in range(kc):
            site = Site("encode", layer, 0, (i, j))
            systematic[(i, j)] = plan.add(
                (f"encode-{key_layer}", i, j), encode.systematic_block, (a_p.name, i, j), hook, site, 0
            )
    parity_blocks = encode_plan(
        layer, code, lambda s, _: (a_p.name, *s), lambda *_: None, hook, f"encode-{key_layer}", plan
    )
    grid_refs = {**systematic, **parity_blocks}
    pieces = {}
    for j in range(kc):
        for c in range(len(b_p.chunks[1])):
            pieces[(j, c)] = plan.add((f"input-{key_layer}", j, c), encode.checked_input, (b_p.name, j, c))

    out_name = f"codenet-matmul-{token}"
    for c, _ in enumerate(b_p.chunks[1]):
        spec = ProductSpec(
            step="forward",
            layer=layer,
            op=c,
            attempt=0,
            code=code.row_code,
            codewords=kc,
            transpose=False,
            coord=lambda a_, j: (a_, j),
            block=lambda a_, j: grid_refs[(a_, j)],
            owner=lambda *_: None,
            key_layer=key_layer,
        )
        v = projection_matrix(b_p.chunks[1][c], (seed * 1_000_003 + c) % 2**32)
        product = product_plan(spec, [pieces[(j, c)] for j in range(kc)], v, hook, plan)
        for t, ref in enumerate(product.outputs):
            plan.add((out_name, t, c), _identity, ref)

    # The plan's keys are Dask keys; protocol (which knows no Dask) types them as Hashable.
    graph = HighLevelGraph.from_collections(out_name, graph_of(plan), dependencies=[a_p, b_p])  # type: ignore[arg-type]
    result = da.Array(graph, out_name, chunks=((bh,) * kr, b_p.chunks[1]), dtype=dtype)
    return result[: a.shape[0]]


def _identity(x: object) -> object:
    """An output chunk under the dask array's own key."""
    return x


def _pad_to(x: da.Array, shape: tuple[int, int]) -> da.Array:
    """Zero-pad a dask array at the end of each axis up to ``shape``."""
    pads = [(0, s - n) for n, s in zip(x.shape, shape)]
    return da.pad(x, pads) if any(p for _, p in pads) else x

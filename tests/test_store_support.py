"""Shared helpers of the store tests (no tests here): models, disk listings, chunk damage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from codenet_dask.codes import ProductCode
from codenet_dask.kernels.blocks import CodedBlock
from codenet_dask.kernels.grid import encode_blocks
from codenet_dask.store import CodedStore

Key = tuple[int, int]
CODE = ProductCode(2, 2, 2, 2)
BLOCK = (4, 5)  # values chunk 164 B, record chunk 116 B: told apart by size


def make_grid(
    code: ProductCode = CODE, block=BLOCK, dtype=np.float64, seed: int = 0, scale: float = 1.0
) -> dict[Key, CodedBlock]:
    rng = np.random.default_rng(seed)
    return encode_blocks(code, (scale * rng.standard_normal((code.kr, code.kc, *block))).astype(dtype))


def files(root: Path, part: str = "") -> dict[str, int]:
    """Relative path -> size of every file under ``root/part``."""
    base = Path(root) / part
    out = {}
    for dirpath, _, names in os.walk(base):
        for name in names:
            full = Path(dirpath) / name
            out[str(full.relative_to(root))] = full.stat().st_size
    return out


def new_files(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in after.items() if k not in before}


def same_block(x: CodedBlock, y: CodedBlock) -> bool:
    """Bit-exact equality of values and bookkeeping."""
    return (
        x.values.dtype == y.values.dtype
        and x.values.tobytes() == y.values.tobytes()
        and np.asarray(x.row_norms).tobytes() == np.asarray(y.row_norms).tobytes()
        and np.asarray(x.col_norms).tobytes() == np.asarray(y.col_norms).tobytes()
        and x.max_abs == y.max_abs
        and x.err == y.err
        and x.updates == y.updates
    )


def build_mapped_store(
    path: Path, grids: list[dict[Key, CodedBlock]], layer: str = "fc1", code: ProductCode = CODE, block=BLOCK
) -> list[dict[str, tuple[str, Key]]]:
    """A store with one layer checkpointed at steps 1, 2, ... (one per grid), written block by
    block so each chunk object's block is known independently of the code under test.

    Returns, per checkpoint, ``chunks/<object> -> ("values" | "record", key)`` of the objects
    written for it.
    """
    store = CodedStore.create(path)
    dtype = next(iter(grids[0].values())).dtype
    store.add_layer(layer, code, block, dtype)
    values_size = int(np.prod(block)) * dtype.itemsize + 4
    mappings = []
    for step, grid in enumerate(grids, start=1):
        mapping: dict[str, tuple[str, Key]] = {}
        for key in sorted(grid):
            before = files(path, "chunks")
            store.write_blocks(layer, {key: grid[key]})
            written = new_files(before, files(path, "chunks"))
            assert len(written) == 2, written
            for name, size in written.items():
                mapping[name] = ("values" if size == values_size else "record", key)
        store.checkpoint(step)
        mappings.append(mapping)
    store.close()
    return mappings

"""Benchmark the coded-weight store: bytes written per update and per checkpoint vs a full
rewrite, checkpoint throughput vs a plain sequential write of the same bytes, and what durable
checkpoints (fsynced before the reference moves, the default) cost against crash-safe-only ones.

Scenario: a model of ``--layers`` coded layers. An update changes a fraction of the blocks of the
first layer only (block-columns fed by all-zero inputs, like MNIST's border pixels, do not move;
the other layers are frozen, as in fine-tuning). Bytes are measured on disk (new or rewritten
files in the store directory), not estimated.

    python workflows/bench_store.py            # default sizes
    python workflows/bench_store.py --tiny     # smoke test, a second or two
    python workflows/bench_store.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from codenet_dask import CodedBlock, CodedStore, ProductCode, encode_blocks


def disk_state(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under ``root``."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = (Path(dirpath) / name).stat()
            out[str(Path(dirpath) / name)] = (st.st_size, st.st_mtime_ns)
    return out


def written_since(before: dict, after: dict) -> tuple[int, int]:
    """(objects, bytes) created or rewritten between two disk states."""
    changed = [size for path, (size, mtime) in after.items() if before.get(path) != (size, mtime)]
    return len(changed), sum(changed)


def plain_write_seconds(directory: Path, payloads: list[np.ndarray], fsync: bool) -> float:
    """One sequential file holding the same bytes, written block by block."""
    path = directory / "plain.bin"
    start = time.perf_counter()
    with open(path, "wb") as f:
        for values in payloads:
            f.write(values.tobytes())
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def plain_objects_seconds(directory: Path, payloads: list[np.ndarray]) -> float:
    """The same bytes as one file per block, each written to a temporary name and renamed: the
    minimum any store needs to replace blocks individually and atomically."""
    start = time.perf_counter()
    for i, values in enumerate(payloads):
        tmp = directory / f"block{i}.tmp"
        with open(tmp, "wb") as f:
            f.write(values.tobytes())
        os.rename(tmp, directory / f"block{i}")
    elapsed = time.perf_counter() - start
    for i in range(len(payloads)):
        (directory / f"block{i}").unlink()
    return elapsed


def full_rewrite_seconds(path: Path, code: ProductCode, block, dtype: str, model: dict, repeats: int) -> float:
    """Best time of a checkpoint rewriting every block, in a store that is crash-safe only (no fsync)."""
    seconds = []
    with CodedStore.create(path, durable=False) as store:
        for name in model:
            store.add_layer(name, code, block, dtype)
        for r in range(repeats):
            scaled = {
                n: {
                    k: CodedBlock.from_values(b.values * np.asarray(1 + 1e-4 * (r + 1), dtype), b.err)
                    for k, b in g.items()
                }
                for n, g in model.items()
            }
            start = time.perf_counter()
            store.write_model(scaled)
            store.checkpoint(r + 1)
            seconds.append(time.perf_counter() - start)
    return min(seconds)


def run(layers: int, size: int, grid: int, parity: int, changed_fraction: float, repeats: int, dtype: str) -> dict:
    code = ProductCode(grid, grid, parity, parity)
    block = (size // grid, size // grid)
    rng = np.random.default_rng(0)
    model = {
        f"fc{i}": encode_blocks(code, rng.standard_normal((grid, grid, *block)).astype(dtype)) for i in range(layers)
    }
    keys = sorted(model["fc0"])
    m = max(1, round(changed_fraction * len(keys)))
    payload = [b.values for layer in model.values() for b in layer.values()]
    model_bytes = sum(v.nbytes for v in payload)
    workdir = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        store = CodedStore.create(workdir / "model")  # durable: every checkpoint fsynced before it is the latest
        for name in model:
            store.add_layer(name, code, block, dtype)
        full_seconds, full_bytes, full_objects = [], [], []
        for r in range(repeats):  # full rewrite: every block of every layer changes
            if r:
                model = {
                    n: {k: CodedBlock.from_values(b.values * np.asarray(1.0001, dtype), b.err) for k, b in g.items()}
                    for n, g in model.items()
                }
            before = disk_state(store.root)
            start = time.perf_counter()
            store.write_model(model)
            store.checkpoint(r + 1)
            full_seconds.append(time.perf_counter() - start)
            objects, nbytes = written_since(before, disk_state(store.root))
            full_objects.append(objects)
            full_bytes.append(nbytes)
        step = repeats
        update_bytes, update_objects, ckpt_bytes, ckpt_objects = [], [], [], []
        for _ in range(repeats):  # incremental: m blocks of the first layer change
            changed = {keys[i] for i in rng.choice(len(keys), m, replace=False)}
            model["fc0"] = {
                k: (CodedBlock.from_values(b.values + np.asarray(1e-3, dtype), b.err) if k in changed else b)
                for k, b in model["fc0"].items()
            }
            before = disk_state(store.root)
            stats = store.write_model(model)
            mid = disk_state(store.root)
            step += 1
            store.checkpoint(step)
            after = disk_state(store.root)
            assert stats.values_written == m
            update_objects.append(written_since(before, mid)[0])
            update_bytes.append(written_since(before, mid)[1])
            ckpt_objects.append(written_since(mid, after)[0])
            ckpt_bytes.append(written_since(mid, after)[1])
        before = disk_state(store.root)
        store.write_model(model)
        store.checkpoint(step + 1)  # unchanged model, new step: metadata only
        unchanged_objects, unchanged_bytes = written_since(before, disk_state(store.root))
        store.close()
        not_durable = full_rewrite_seconds(workdir / "not-durable", code, block, dtype, model, repeats)
        plain = min(plain_write_seconds(workdir, payload, fsync=False) for _ in range(repeats))
        plain_fsync = min(plain_write_seconds(workdir, payload, fsync=True) for _ in range(repeats))
        objects = min(plain_objects_seconds(workdir, payload) for _ in range(repeats))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    full = min(full_seconds)
    return {
        "layers": layers,
        "layer_size": size,
        "dtype": dtype,
        "grid": [grid, grid],
        "parity": [parity, parity],
        "blocks_per_layer": len(keys),
        "block_bytes": int(np.prod(block)) * np.dtype(dtype).itemsize,
        "model_bytes": model_bytes,
        "full_checkpoint": {
            "objects": int(np.median(full_objects)),
            "bytes": int(np.median(full_bytes)),
            "seconds": full,
            "MB_per_s": model_bytes / full / 1e6,
        },
        "full_checkpoint_not_durable": {"seconds": not_durable, "MB_per_s": model_bytes / not_durable / 1e6},
        "update": {
            "blocks_changed": m,
            "blocks_total": layers * len(keys),
            "objects": int(np.median(update_objects)),
            "bytes": int(np.median(update_bytes)),
        },
        "update_checkpoint_metadata": {"objects": int(np.median(ckpt_objects)), "bytes": int(np.median(ckpt_bytes))},
        "unchanged_checkpoint": {"objects": unchanged_objects, "bytes": unchanged_bytes},
        "plain_write": {"seconds": plain, "MB_per_s": model_bytes / plain / 1e6},
        "plain_write_fsync": {"seconds": plain_fsync, "MB_per_s": model_bytes / plain_fsync / 1e6},
        "plain_objects": {"seconds": objects, "MB_per_s": model_bytes / objects / 1e6},
        "ratios": {
            "update_bytes_vs_full_rewrite": (np.median(update_bytes) + np.median(ckpt_bytes)) / np.median(full_bytes),
            "ideal_update_fraction": m / (layers * len(keys)),
            "unchanged_checkpoint_bytes_vs_full_rewrite": unchanged_bytes / np.median(full_bytes),
            "full_checkpoint_bytes_vs_model_bytes": np.median(full_bytes) / model_bytes,
            "checkpoint_throughput_vs_plain_write": plain / full,
            "checkpoint_throughput_vs_plain_write_fsync": plain_fsync / full,
            "checkpoint_throughput_vs_plain_objects": objects / full,
            "durable_checkpoint_seconds_vs_not_durable": full / not_durable,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024, help="rows = cols of each layer")
    parser.add_argument("--grid", type=int, default=4, help="systematic blocks per side")
    parser.add_argument("--parity", type=int, default=2, help="parity blocks per side")
    parser.add_argument(
        "--changed", type=float, default=0.25, help="fraction of the first layer's blocks an update changes"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.layers, args.size, args.grid, args.parity, args.repeats = 2, 64, 2, 1, 2
    result = run(args.layers, args.size, args.grid, args.parity, args.changed, args.repeats, args.dtype)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
        return 0
    r, ratios = result, result["ratios"]
    print(
        f"model: {r['layers']} layers of {r['layer_size']}^2 {r['dtype']}, {r['grid'][0]}x{r['grid'][1]}+"
        f"{r['parity'][0]}x{r['parity'][1]} product code, {r['blocks_per_layer']} blocks/layer of "
        f"{r['block_bytes']} B, {r['model_bytes'] / 1e6:.1f} MB coded"
    )
    print(
        f"full rewrite checkpoint: {r['full_checkpoint']['objects']} objects, {r['full_checkpoint']['bytes'] / 1e6:.2f} MB, "
        f"{r['full_checkpoint']['seconds'] * 1e3:.0f} ms ({r['full_checkpoint']['MB_per_s']:.0f} MB/s)"
    )
    print(
        f"update of {r['update']['blocks_changed']}/{r['update']['blocks_total']} blocks: "
        f"{r['update']['objects']} objects, {r['update']['bytes'] / 1e3:.1f} kB; its checkpoint adds "
        f"{r['update_checkpoint_metadata']['objects']} objects, {r['update_checkpoint_metadata']['bytes'] / 1e3:.1f} kB metadata"
    )
    print(
        f"checkpoint of an unchanged model: {r['unchanged_checkpoint']['objects']} objects, "
        f"{r['unchanged_checkpoint']['bytes']} B"
    )
    print(
        f"the same checkpoint crash-safe only (no fsync): {r['full_checkpoint_not_durable']['seconds'] * 1e3:.0f} ms "
        f"({r['full_checkpoint_not_durable']['MB_per_s']:.0f} MB/s)"
    )
    print(
        f"plain sequential write of the same bytes: {r['plain_write']['seconds'] * 1e3:.0f} ms "
        f"({r['plain_write']['MB_per_s']:.0f} MB/s); with fsync {r['plain_write_fsync']['seconds'] * 1e3:.0f} ms; "
        f"as one renamed file per block {r['plain_objects']['seconds'] * 1e3:.0f} ms"
    )
    print("ratios:")
    for name, value in ratios.items():
        print(f"  {name}: {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

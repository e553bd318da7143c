"""Clean products never raise an alarm: random shapes, batches, scales and conditioning, both dtypes.

Each trial encodes a random layer (rows and columns log-uniform in 1..4096, grid 1..4 x 1..4,
parity 1..2 each way) of one input kind and runs forward and backward products on it with random
batches (log-uniform 1..1024) and operand scales (1e-8..1e8):

- ``gaussian``: independent normal entries;
- ``ill-conditioned``: singular values spread over 1e6 (float32) or 1e12 (float64);
- ``wide-range``: rows and columns scaled by factors over 1e-4..1e4 (magnitudes over 1e16);
- ``sparse``: 95% zeros;
- ``integers``: small integers, exactly representable (every clean product exact).

An alarm is anything a clean product reports: a block detected or corrected, a recompute, an
ambiguous entry, a timeout; for a scrub, any entry it flags. A last part trains one layer of each dtype through ``--updates``
clean updates (scrubbed every ``--scrub-every``, 10 like ``train``), checks a product after every update and every
scrub, and prints how far its thresholds moved: the smallest change of a product's entry its
check detects, at the end over the start. The suite runs a small version (tests/test_detection.py).

    python workflows/false_alarms.py                      # 100,000 products (the README's figure)
    python workflows/false_alarms.py --products 2000 --updates 1000

Exit status 1 on any alarm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from codenet_dask import CodedLayer, Corruption, CorruptionPlan, LocalExecutor, NoFaults

KINDS = ("gaussian", "ill-conditioned", "wide-range", "sparse", "integers")
#: Products per layer: encoding is the costly part of a trial, products are what is tested.
PRODUCTS_PER_LAYER = 10


def log_uniform(rng: np.random.Generator, top: int) -> int:
    return int(np.exp(rng.uniform(0, np.log(top + 1)))) if top > 1 else 1


def weights(rng: np.random.Generator, kind: str, shape: tuple[int, int], dtype: type) -> np.ndarray:
    """Random weights of one input kind (see the module docstring)."""
    rows, cols = shape
    if kind == "ill-conditioned":
        k = min(shape)
        u, _ = np.linalg.qr(rng.standard_normal((rows, k)))
        v, _ = np.linalg.qr(rng.standard_normal((cols, k)))
        spread = 1e6 if dtype == np.float32 else 1e12
        w = (u * np.logspace(0, -np.log10(spread), k)) @ v.T
    elif kind == "wide-range":
        w = rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, (rows, 1)) * 10.0 ** rng.uniform(-4, 4, (1, cols))
    elif kind == "sparse":
        w = rng.standard_normal(shape) * (rng.random(shape) < 0.05)
    elif kind == "integers":
        w = rng.integers(-8, 9, shape).astype(np.float64)
    else:
        w = rng.standard_normal(shape)
    return w.astype(dtype)


def operand(rng: np.random.Generator, kind: str, shape: tuple[int, int], dtype: type) -> np.ndarray:
    scale = 1.0 if kind == "integers" else 10.0 ** rng.uniform(-8, 8)
    x = rng.integers(-8, 9, shape) if kind == "integers" else rng.standard_normal(shape) * scale
    return x.astype(dtype)


def alarms(report) -> int:
    """What a clean product should never report."""
    return len(report.detected) + report.recomputed + report.ambiguous + report.timeouts


def clean_products(products: int, dtype: type, top: int, seed: int = 0) -> dict:
    """``products`` clean forward and backward products over random layers: alarms per input kind."""
    rng = np.random.default_rng(seed)
    executor = LocalExecutor(2)
    done, found, by_kind = 0, 0, dict.fromkeys(KINDS, 0)
    trial = 0
    while done < products:
        kind = KINDS[trial % len(KINDS)]
        shape = (log_uniform(rng, top), log_uniform(rng, top))
        grid = (int(rng.integers(1, min(4, shape[0]) + 1)), int(rng.integers(1, min(4, shape[1]) + 1)))
        parity = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        w = weights(rng, kind, shape, dtype)
        layer = CodedLayer.encode(executor, w, grid=grid, parity=parity, name=f"clean{trial}")
        for i in range(min(PRODUCTS_PER_LAYER, products - done)):
            batch = log_uniform(rng, 1024)
            if i % 2 == 0:
                report = layer.forward(operand(rng, kind, (shape[1], batch), dtype)).report
            else:
                report = layer.backward(operand(rng, kind, (shape[0], batch), dtype)).report
            found += alarms(report)
            by_kind[kind] += alarms(report)
            done += 1
            if done % 10_000 == 0:
                print(f"{np.dtype(dtype).name}: {done} products, {found} alarms", file=sys.stderr, flush=True)
        trial += 1
    return {"products": done, "layers": trial, "alarms": found, "by_kind": by_kind}


def smallest_detected(layer: CodedLayer, x: np.ndarray, block: tuple[int, int] = (1, 2)) -> float:
    """The smallest change of one entry of a block's forward result (a multiple of that result's
    largest magnitude) the product check detects, to 2% (bisection in log space): the threshold
    as a user sees it."""

    def detected(m: float) -> bool:
        layer.hook = CorruptionPlan((Corruption("block-forward", block=block, kind="add", relative=m, index=(5, 3)),))
        try:
            return block in layer.forward(x).report.detected
        finally:
            layer.hook = NoFaults()

    low, high = 1e-18, 1.0
    while high / low > 1.02:
        middle = float(np.sqrt(low * high))
        low, high = (low, middle) if detected(middle) else (middle, high)
    return high


def long_run(updates: int, scrub_every: int, dtype: type, seed: int = 0) -> dict:
    """One 256 x 256 layer (grid 4x4 + 2x2) through ``updates`` clean updates: alarms, and the
    smallest detected change at the end over the start, just before the last scrub (the most
    drift a scrub interval accumulates) and just after it."""
    rng = np.random.default_rng(seed)
    layer = CodedLayer.encode(
        LocalExecutor(2), (rng.standard_normal((256, 256)) / 16).astype(dtype), grid=(4, 4), parity=(2, 2), name="long"
    )
    probe = rng.standard_normal((256, 16)).astype(dtype)
    start = smallest_detected(layer, probe)
    found = scrub_alarms = 0
    for step in range(1, updates + 1):
        x = rng.standard_normal((256, 16)).astype(dtype)
        delta = (rng.standard_normal((256, 16)) * 1e-3).astype(dtype)
        layer.update(delta, x, lr=0.01)
        found += alarms(layer.forward(probe).report)
        if step == updates:
            before = smallest_detected(layer, probe)
        if step % scrub_every == 0 or step == updates:
            report = layer.scrub()
            scrub_alarms += report["entries"] + len(report["repaired"]) + len(report["unrepairable"])
    return {
        "updates": updates,
        "alarms": found,
        "scrub_alarms": scrub_alarms,
        "smallest_detected_at_start": start,
        "threshold_growth": before / start,
        "threshold_growth_after_scrub": smallest_detected(layer, probe) / start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000, help="clean products per dtype")
    parser.add_argument("--largest", type=int, default=4096, help="largest layer side")
    parser.add_argument("--updates", type=int, default=10_000, help="clean updates of the long run")
    parser.add_argument(
        "--scrub-every", type=int, default=10, help="updates between scrubs of the long run (train's default)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result, start = {}, time.perf_counter()
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        result[name] = {
            "clean": clean_products(args.products, dtype, args.largest),
            "long_run": long_run(args.updates, args.scrub_every, dtype),
        }
        if not args.json:
            print(name, json.dumps(result[name]), flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
    total = sum(
        r["clean"]["alarms"] + r["long_run"]["alarms"] + r["long_run"]["scrub_alarms"]
        for r in result.values()
        if isinstance(r, dict)
    )
    return 1 if total else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How small a wrong entry the product checks see, judged against a higher-precision reference.

For a coded layer (grid 4x4 + parity 2x2) of each width, batch and dtype, one entry of one block
result is changed by ``m`` times that block's largest magnitude, at a systematic and at a parity
position, for ``m`` from 1e-16 to 1 (and exponent flips). Each accepted output is compared with
the same product done fault-free in higher precision (``codenet_dask.judge``): either the change
was detected (and the output corrected: within 20x the clean output's error), or the accepted
output is within 20x the clean output's error anyway. Prints one row per configuration:

    dtype  width  batch  position  clean error  smallest detected m  worst accepted/clean  verdict

Run ``python workflows/detection.py`` (the README's table; several minutes), or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from codenet_dask import CodedLayer, Corruption, CorruptionPlan, LocalExecutor
from codenet_dask.judge import FACTOR, error_ratio, higher

SIZES = [(1024, 64), (1024, 256), (4096, 64), (4096, 256)]
CHANGES = [10.0**e for e in np.arange(-16, 0.1, 0.5)]


def scan(width: int, batch: int, dtype: type, block: tuple[int, int], seed: int = 0) -> dict:
    """Every change size at one block position; the smallest detected and the worst ratio accepted."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype)
    x = rng.standard_normal((width, batch)).astype(dtype)
    high = higher(np.dtype(dtype))
    exact = w.astype(high) @ x.astype(high)
    clean = w @ x
    unit = error_ratio(clean, exact, clean)  # 1 by construction; the clean output's own error is the unit
    clean_error = float(np.max(np.abs(clean.astype(high) - exact)) / np.max(np.abs(exact)))
    smallest, worst = None, unit
    layer = CodedLayer.encode(LocalExecutor(2), w, grid=(4, 4), parity=(2, 2), name="probe")
    for m in CHANGES:
        change = Corruption("block-forward", block=block, kind="add", relative=float(m), index=(5, 3))
        layer.hook = CorruptionPlan((change,))  # one layer for every change: encoding once is enough
        result = layer.forward(x)
        found = block in result.report.detected_by_attempt.get(0, []) or result.report.recomputed > 0
        ratio = error_ratio(result.to_numpy(), exact, clean)
        worst = max(worst, ratio)
        if found and smallest is None:
            smallest = m
    return {"clean": clean_error, "smallest": smallest, "worst": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 256 only (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON list of rows")
    args = parser.parse_args(argv)
    sizes = [(256, 64)] if args.quick else SIZES
    if not args.json:
        print(
            "| dtype | width | batch | position | clean error | smallest detected m | worst accepted / clean | verdict |"
        )
        print("|---|---|---|---|---|---|---|---|")
    failures, rows = 0, []
    for dtype in (np.float32, np.float64):
        for width, batch in sizes:
            for position, block in (("systematic", (1, 2)), ("parity", (4, 2))):
                start = time.perf_counter()
                row = scan(width, batch, dtype, block)
                ok = row["worst"] <= FACTOR
                failures += not ok
                rows.append(
                    {"dtype": np.dtype(dtype).name, "width": width, "batch": batch, "position": position, **row}
                )
                if args.json:
                    continue
                smallest = f"{row['smallest']:.1e}" if row["smallest"] is not None else "none"
                print(
                    f"| {np.dtype(dtype).name} | {width} | {batch} | {position} | {row['clean']:.1e} | {smallest} | "
                    f"{row['worst']:.1f} | {'within 20x' if ok else 'WRONG'} |  ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

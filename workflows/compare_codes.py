"""The comparison the GPD paper makes, computed: product code vs GPD vs replication at equal P workers.

For each P (one coded block, piece or replica per worker), prints per scheme: storage per worker
(fraction of W), FLOP ratio of a training step over the uncoded one, wrong results tolerated per
product — adversarial (any placement) and random (the most whose uniformly random placement is
corrected with probability >= 99%, Monte Carlo) — and, for one forward product of a ``--size``
square layer at batch ``--batch`` in float32, the measured time of all workers' products and of
decoding them, clean and with one wrong result (pure numpy, one process and one BLAS thread, best of 7; step times
through Dask come with the layer executor).

- product code: the project's :class:`ProductCode` (``kr x kc`` grid + ``pr x pc`` parity, one block
  per worker); a product is checked per block-column codeword of the row code
  (:func:`check_codeword` on two random projections per block, wrong systematic blocks rebuilt).
- GPD: :class:`PolyDotCode` with the same storage (``m x n = kr x kc``), circle construction; and the
  split with the least storage that corrects at least what the product code corrects (at least 1).
- replication: ``P / r`` blocks on r workers each; r=2 compares the two copies (detects, never
  corrects), r=3 votes (a copy two agree with wins). A copy is "agreeing" within roundoff.

    python workflows/compare_codes.py                 # P in 9..36, 768-wide layer, batch 64
    python workflows/compare_codes.py --tiny --json   # seconds; what the smoke test runs
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from threadpoolctl import threadpool_limits

from codenet_dask import CodeParameterError
from codenet_dask.codes import (
    PolyDotCode,
    ProductCode,
    check_codeword,
    gamma,
    offered_splits,
    polydot_code,
    rebuild_blocks,
)

#: Product-code layouts (kr, pr, kc, pc) with (kr + pr)(kc + pc) = P workers.
LAYOUTS = {
    9: (2, 1, 2, 1),
    12: (2, 1, 2, 2),
    16: (2, 2, 2, 2),
    18: (2, 1, 4, 2),
    20: (2, 2, 3, 2),
    24: (2, 2, 4, 2),
    25: (3, 2, 3, 2),
    30: (3, 2, 4, 2),
    36: (4, 2, 4, 2),
}
TRIALS = 4000


def random_tolerance(workers: int, corrected) -> int:
    """The most wrong results whose random placement is corrected in >= 99% of TRIALS placements."""
    rng = np.random.default_rng(workers)
    best = 0
    for count in range(1, workers):
        ok = sum(corrected(rng.choice(workers, count, replace=False)) for _ in range(TRIALS))
        if ok < 0.99 * TRIALS:
            break
        best = count
    return best


def timed(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# -- product code ------------------------------------------------------------------------------
def product_row(workers: int, size: int, batch: int, rng) -> dict:
    kr, pr, kc, pc = LAYOUTS[workers]
    code = ProductCode(kr, kc, pr, pc)
    nr, nc = code.coded_shape
    w = rng.standard_normal((size, size)).astype(np.float32)
    x = rng.standard_normal((size, batch)).astype(np.float32)
    bh, bw = size // kr, size // kc
    grid = code.encode_grid(w.reshape(kr, bh, kc, bw).transpose(0, 2, 1, 3))  # (nr, nc, bh, bw)

    def products() -> np.ndarray:
        return np.stack([[grid[a, b] @ x[b * bw : (b + 1) * bw] for b in range(kc)] for a in range(nr)])

    results = products()
    col_code = code.row_code  # down each block-column
    v = rng.standard_normal((batch, 2))
    u = float(np.finfo(np.float32).eps) / 2

    def decode(res: np.ndarray) -> np.ndarray | None:
        out = np.zeros((size, batch), dtype=np.float32)
        for b in range(kc):
            column = res[:, b]
            projections = column.astype(np.float64) @ v
            noise = 4 * bw * u * (np.abs(column).astype(np.float64) @ np.abs(v)) + gamma(batch, np.float64) * (
                np.abs(column) @ np.abs(v)
            )
            verdict = check_codeword(col_code, projections, noise)
            if verdict.status == "uncorrectable":
                return None  # detected, not correctable: recompute
            blocks = list(column)
            if verdict.bad:
                rebuilt = rebuild_blocks(col_code, blocks, verdict.bad, [a for a in verdict.bad if a < kr])
                for a, block in rebuilt.items():
                    blocks[a] = block
            for a in range(kr):
                out[a * bh : (a + 1) * bh] += blocks[a]
        return out

    faulty = results.copy()
    faulty[0, 0].flat[0] += np.float32(0.1) * np.max(np.abs(faulty[0, 0]))
    per_column = pr // 2
    got = decode(faulty)
    assert np.allclose(got, w @ x, atol=1e-2) if per_column else got is None

    def corrected(positions) -> bool:
        columns = np.bincount([int(p) % nc for p in positions], minlength=nc)
        rows = np.bincount([int(p) // nc for p in positions], minlength=nr)
        return bool(columns.max() <= per_column and rows.max() <= pc // 2)  # forward and backward

    return {
        "scheme": f"product {kr}x{kc}+{pr}x{pc}",
        "storage": 1 / (kr * kc),
        "flop_ratio": code.flop_ratio,
        "adversarial": min(pr, pc) // 2,
        "random": random_tolerance(workers, corrected),
        "products_ms": 1e3 * timed(products),
        "decode_clean_ms": 1e3 * timed(lambda: decode(results)),
        "decode_one_wrong_ms": 1e3 * timed(lambda: decode(faulty)),
    }


# -- GPD -----------------------------------------------------------------------------------------
def polydot_row(workers: int, m: int, n: int, size: int, batch: int, rng) -> dict:
    code = PolyDotCode(m, n, workers)
    w = rng.standard_normal((size, size)).astype(np.float32)
    x = rng.standard_normal((size, batch)).astype(np.float32)
    pieces = code.encode_weights(w)
    x_pieces = code.encode_forward_input(x)
    results = code.forward(pieces, x_pieces)
    scale = code.forward_scale(pieces, x_pieces, results, code.encoding_drift(w))
    bound = code.forward_bound(pieces, x_pieces)
    faulty = results.copy()
    faulty[3].flat[0] += np.float32(0.5) * np.max(np.abs(faulty[3]))
    decoded = code.decode_forward(faulty, scale, bound=bound)
    assert decoded.check.bad == (3,) and np.allclose(decoded.values, w @ x, atol=1e-3)
    capacity = code.correctable_errors
    return {
        "scheme": f"GPD {m}x{n} (K_f={code.forward_threshold}, K_b={code.backward_threshold})",
        "storage": 1 / code.blocks,
        "flop_ratio": code.flop_ratio,
        "adversarial": capacity,
        "random": capacity,  # placement does not matter to an MDS-like code
        "products_ms": 1e3 * timed(lambda: code.forward(pieces, x_pieces)),
        "decode_clean_ms": 1e3 * timed(lambda: code.decode_forward(results, scale, bound=bound)),
        "decode_one_wrong_ms": 1e3 * timed(lambda: code.decode_forward(faulty, scale, bound=bound)),
    }


# -- replication ---------------------------------------------------------------------------------
def replication_row(workers: int, replicas: int, size: int, batch: int, rng) -> dict:
    blocks = workers // replicas
    rows = size // blocks
    w = rng.standard_normal((blocks, rows, size)).astype(np.float32)
    x = rng.standard_normal((size, batch)).astype(np.float32)
    copies = np.stack([w @ x] * replicas, axis=1)  # (blocks, replicas, rows, batch)
    tolerance = 4 * size * float(np.finfo(np.float32).eps) * (np.abs(w) @ np.abs(x))

    def decode(res: np.ndarray) -> np.ndarray | None:
        out = []
        for block, tol in zip(res, tolerance):
            agree = [[bool(np.all(np.abs(c - d) <= tol)) for d in block] for c in block]
            votes = [sum(row) for row in agree]
            best = int(np.argmax(votes))
            if votes[best] < (2 if replicas >= 3 else replicas):
                return None  # r=2: a disagreement is detected, never corrected: recompute
            out.append(block[best])
        return np.concatenate(out)

    faulty = copies.copy()
    faulty[0, 0].flat[0] += 1.0

    def corrected(positions) -> bool:
        wrong = np.bincount([int(p) // replicas for p in positions], minlength=blocks)
        return replicas >= 3 and bool(wrong.max() <= (replicas - 1) // 2)

    return {
        "scheme": f"replication r={replicas}",
        "storage": replicas / workers,
        "flop_ratio": float(replicas),
        "adversarial": (replicas - 1) // 2,
        "random": random_tolerance(workers, corrected),
        "products_ms": replicas * 1e3 * timed(lambda: w @ x),
        "decode_clean_ms": 1e3 * timed(lambda: decode(copies)),
        "decode_one_wrong_ms": 1e3 * timed(lambda: decode(faulty)),
    }


def rows_for(workers: int, size: int, batch: int) -> list[dict]:
    rng = np.random.default_rng(workers)
    kr, _, kc, _ = LAYOUTS[workers]
    rows = [product_row(workers, size, batch, rng)]
    try:
        rows.append(polydot_row(workers, kr, kc, size, batch, rng))
    except CodeParameterError as exc:  # too few workers for that split
        rows.append({"scheme": f"GPD {kr}x{kc}", "unavailable": str(exc)})
    # The GPD split with the least storage that still corrects what the product code corrects.
    need = max(1, rows[0]["adversarial"])
    fits = [s for s in offered_splits(workers) if polydot_code(*s, workers).correctable_errors >= need]
    if fits:
        m, n = max(fits, key=lambda s: (s[0] * s[1], -polydot_code(*s, workers).backward_threshold))
        if m * n > kr * kc:
            rows.append(polydot_row(workers, m, n, size, batch, rng))
    for replicas in (2, 3):
        if workers % replicas == 0:
            rows.append(replication_row(workers, replicas, size, batch, rng))
    for row in rows:
        row["workers"] = workers
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        "| P | scheme | storage / worker | FLOP ratio | wrong results corrected: adversarial | random (99%) "
        "| worker products ms | decode ms: clean | one wrong |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "unavailable" in r:
            print(f"| {r['workers']} | {r['scheme']} | — | — | — | — | — | — | — |")
            continue
        print(
            f"| {r['workers']} | {r['scheme']} | 1/{round(1 / r['storage'])} | {r['flop_ratio']:.2f} | "
            f"{r['adversarial']} | {r['random']} | {r['products_ms']:.1f} | {r['decode_clean_ms']:.1f} | "
            f"{r['decode_one_wrong_ms']:.1f} |"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted(LAYOUTS), choices=sorted(LAYOUTS))
    parser.add_argument("--size", type=int, default=768, help="W is size x size (divisible by 24)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="P = 9 and 16, a 48-wide layer")
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout instead of the table")
    args = parser.parse_args(argv)
    if args.tiny:
        args.workers, args.size, args.batch = [9, 16], 48, 4
    with threadpool_limits(1):  # one BLAS thread, as in a worker task; steadier on a shared machine
        rows = [row for p in args.workers for row in rows_for(p, args.size, args.batch)]
    if args.json:
        print(json.dumps(rows))
    else:
        print_table(rows)
    return rows


if __name__ == "__main__":
    main()

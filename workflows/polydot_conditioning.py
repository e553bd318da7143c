"""Choosing the GPD construction by measurement: certified conditioning and decode error, two constructions.

For every split ``m x n`` a code on P workers accepts, prints the recovery thresholds (forward K_f,
backward K_b), the errors corrected per product, the erasure budget the circle construction certifies,
and for both constructions at that budget — ``circle`` (roots of unity, the rotation embedding) and
``chebyshev`` (the paper's real form at Chebyshev points) — the certified worst condition number of
every decoding and the measured decode error of a float64 forward product against a long-double
reference, with all P results and with the budget's worth of results missing (a contiguous arc: the
worst placement on the circle), each as a multiple of plain numpy's own error on the same product.

    python workflows/polydot_conditioning.py                   # P = 9..36
    python workflows/polydot_conditioning.py --workers 12 24   # some P only
    python workflows/polydot_conditioning.py --tiny --json     # seconds; what the smoke test runs
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from codenet_dask import IllConditionedCodeError
from codenet_dask.codes import PolyDotCode, offered_splits


def decode_errors(code: PolyDotCode, seed: int) -> tuple[float, float]:
    """(all results, budget missing) forward decode error over plain numpy's, float64."""
    rng = np.random.default_rng(seed)
    rows, cols, batch = 16 * code.m, 32 * code.n, 8
    w, x = rng.standard_normal((rows, cols)), rng.standard_normal((cols, batch))
    reference = w.astype(np.longdouble) @ x.astype(np.longdouble)
    plain = float(np.max(np.abs(w @ x - reference)))
    pieces = code.encode_weights(w)
    x_pieces = code.encode_forward_input(x)
    results = code.forward(pieces, x_pieces)
    scale = code.forward_scale(pieces, x_pieces, results, drift=code.encoding_drift(w))
    out = []
    for erased in ((), tuple(range(code.erasure_budget))):
        decoded = code.decode_forward(results, scale, erased)
        out.append(math.inf if decoded.values is None else float(np.max(np.abs(decoded.values - reference))) / plain)
    return out[0], out[1]


def rows_for(workers: int) -> list[dict]:
    rows = []
    for m, n in offered_splits(workers, "circle"):
        circle = PolyDotCode(m, n, workers)
        try:
            real = PolyDotCode(m, n, workers, "chebyshev", max_erasures=circle.erasure_budget, max_condition=math.inf)
            real_cond, real_errors = real.worst_condition, decode_errors(real, seed=m * 100 + n)
        except IllConditionedCodeError:  # pragma: no cover - max_condition=inf never refuses
            real_cond, real_errors = math.inf, (math.inf, math.inf)
        certs = circle.certificates
        rows.append(
            {
                "workers": workers,
                "split": f"{m}x{n}",
                "k_forward": circle.forward_threshold,
                "k_backward": circle.backward_threshold,
                "errors_corrected": circle.correctable_errors,
                "erasure_budget": circle.erasure_budget,
                "circle_condition": circle.worst_condition,
                "circle_certificate": "exhaustive" if all(c.exhaustive for c in certs.values()) else "sampled",
                "circle_error": decode_errors(circle, seed=m * 100 + n),
                "chebyshev_condition": real_cond,
                "chebyshev_error": real_errors,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        "| P | split | K_f | K_b | errors corrected | erasure budget | circle: worst cond | decode err / numpy "
        "(all, budget missing) | chebyshev: worst cond | decode err / numpy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ce, he = r["circle_error"], r["chebyshev_error"]
        print(
            f"| {r['workers']} | {r['split']} | {r['k_forward']} | {r['k_backward']} | {r['errors_corrected']} | "
            f"{r['erasure_budget']} | {r['circle_condition']:.3g} ({r['circle_certificate']}) | "
            f"{ce[0]:.2g}, {ce[1]:.2g} | {r['chebyshev_condition']:.3g} | {he[0]:.2g}, {he[1]:.2g} |"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=list(range(9, 37)), help="P values")
    parser.add_argument("--tiny", action="store_true", help="P = 9 and 12 only")
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout instead of the table")
    args = parser.parse_args(argv)
    workers = [9, 12] if args.tiny else args.workers
    rows = [row for p in workers for row in rows_for(p)]
    if args.json:
        print(json.dumps(rows))
    else:
        print_table(rows)
    return rows


if __name__ == "__main__":
    main()

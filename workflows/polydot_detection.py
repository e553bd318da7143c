"""How small a wrong result GPD detects, judged against long double (the project's detection standard).

For a few codes, dtypes and layer sizes: one entry of one worker's forward result is changed by
``relative`` x that result's largest |entry|, for 12 workers spread over the code (every one when
P <= 12) and relative sizes from 1e-12 to 1.
Prints the clean decoded output's error (relative to max |S|, against a long-double reference),
plain numpy's on the same product, the smallest change the decoder flagged (located or refused),
and the worst accepted output's error over the clean one's — at most 20 is the standard.

    python workflows/polydot_detection.py
    python workflows/polydot_detection.py --tiny --json   # seconds; what the smoke test runs
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from codenet_dask.codes import polydot_code

CASES = [((2, 2, 12), 256, 64), ((3, 2, 16), 768, 64), ((2, 2, 36), 768, 64), ((4, 4, 36), 1024, 64)]


def measure(split: tuple[int, int, int], size: int, batch: int, dtype, seed: int = 0) -> dict:
    code = polydot_code(*split)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((size, size)).astype(dtype)
    x = rng.standard_normal((size, batch)).astype(dtype)
    reference = w.astype(np.longdouble) @ x.astype(np.longdouble)
    top = float(np.max(np.abs(reference)))
    pieces = code.encode_weights(w)
    x_pieces = code.encode_forward_input(x)
    results = code.forward(pieces, x_pieces)
    scale = code.forward_scale(pieces, x_pieces, results, code.encoding_drift(w))
    bound = code.forward_bound(pieces, x_pieces)
    clean = code.decode_forward(results, scale, bound=bound)
    assert clean.check.status == "clean", clean.check
    clean_error = float(np.max(np.abs(clean.values - reference))) / top
    smallest, worst = None, 0.0
    for relative in 10.0 ** np.arange(-12, 0.5, 0.5):
        for worker in range(0, code.workers, max(1, code.workers // 12)):
            changed = results.copy()
            changed[worker].flat[0] += changed.dtype.type(relative * float(np.max(np.abs(changed[worker]))))
            decoded = code.decode_forward(changed, scale, bound=bound)
            if decoded.check.status == "uncorrectable" or decoded.check.bad:
                smallest = relative if smallest is None else min(smallest, relative)
            if decoded.values is not None:
                error = float(np.max(np.abs(decoded.values - reference))) / top
                worst = max(worst, error / clean_error)
    return {
        "code": f"{split[0]}x{split[1]} on {split[2]}",
        "dtype": np.dtype(dtype).name,
        "size": size,
        "batch": batch,
        "clean_error": clean_error,
        "numpy_error": float(np.max(np.abs(w @ x - reference))) / top,
        "smallest_detected": smallest,
        "worst_accepted_over_clean": worst,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="one small code and size")
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout instead of the table")
    args = parser.parse_args(argv)
    cases = [((2, 2, 9), 48, 4)] if args.tiny else CASES
    rows = [measure(split, size, batch, dtype) for split, size, batch in cases for dtype in (np.float32, np.float64)]
    if args.json:
        print(json.dumps(rows))
        return rows
    print(
        "| code | dtype | W | batch | clean error | numpy error | smallest change detected | worst accepted / clean |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['code']} | {r['dtype']} | {r['size']}² | {r['batch']} | {r['clean_error']:.2g} | "
            f"{r['numpy_error']:.2g} | {r['smallest_detected']:.1g} | {r['worst_accepted_over_clean']:.2f} |"
        )
    return rows


if __name__ == "__main__":
    main()

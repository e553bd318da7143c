"""The README's strategy comparison: uncoded, replication r=2/3 and two CodeNet shapes under bit flips.

MNIST subset, 784-128-10, 2 epochs of batch 64 (63 steps each, scrubbed every 9 so each epoch ends
on a scrub), one flip of the top exponent bit (bit 62: a value becomes ~1e308 or inf) per faulty
forward or backward block task at rate 1e-2, against a fault-free run; seed 0. Uses only the
public API; writes runs.csv, results.nc and the PNGs to --out.

    python workflows/compare_strategies.py                 # about 10 minutes on 2 cores
    python workflows/compare_strategies.py --tiny --json   # seconds; digits, 2 strategies
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from codenet_dask import TrainConfig, connect, load_dataset
from codenet_dask.compare import DEFAULT_STRATEGIES, markdown_table, output_paths, run_comparison

FAULT_MODEL = "bitflip:bit=62:steps=block-forward+block-backward"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/compare", help="folder for the CSV, Dataset and PNGs")
    parser.add_argument("--tiny", action="store_true", help="digits, hidden 16, 1 epoch, 2 strategies")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.tiny:
        data, strategies = load_dataset("digits"), ["uncoded", "codenet-2x2+2x2"]
        base = TrainConfig(hidden=(16,), epochs=1, batch_size=256)
    else:
        data, strategies = load_dataset("mnist"), list(DEFAULT_STRATEGIES)
        base = TrainConfig(hidden=(128,), epochs=2, batch_size=64, scrub_every=9)
    out = Path(args.out)
    rows: list[dict] = []
    with connect(workers=2) as client:
        ds = run_comparison(
            client,
            data,
            strategies,
            [0, 1e-2],
            [0],
            base,
            out,
            fault_model=FAULT_MODEL,
            progress=rows.append,
            fmt="netcdf",
        )
    result = {
        "table": markdown_table(ds),
        "paths": [str(p) for p in output_paths(out, "netcdf")],
        "runs": [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows],
    }
    print(json.dumps(result) if args.json else result["table"])
    return result


if __name__ == "__main__":
    main()

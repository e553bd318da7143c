"""The performance benchmark as a script: ``python workflows/bench.py [--tiny] [--json]``.

Same as ``codenet-dask bench`` (see its ``--help``): one training step of a layer with every
strategy side by side on a LocalCluster, medians, ratios and the targets of the performance issue.
``--tiny`` runs seconds-long sizes (what the smoke test runs).
"""

from __future__ import annotations

import sys

from codenet_dask import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--tiny" in argv:
        argv.remove("--tiny")
        argv = ["--widths", "64", "--batches", "8", "--grids", "2", "--repeats", "1", *argv]
    sys.exit(main(["bench", *argv]))

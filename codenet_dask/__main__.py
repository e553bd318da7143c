"""``python -m codenet_dask`` runs the command line."""

import sys

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. pytest --doctest-modules) must not run it
    sys.exit(main())

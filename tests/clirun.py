"""The command line as a user runs it: ``python -m codenet_dask ...`` in a fresh process."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``codenet-dask *args``; its exit code, stdout and stderr (text)."""
    return subprocess.run(
        [sys.executable, "-m", "codenet_dask", *args], capture_output=True, text=True, timeout=timeout
    )

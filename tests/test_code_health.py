"""The habits that keep the code readable, run with the tests: ruff's lint rules and formatter, mypy
on the package's type hints (``[tool.mypy]``), and the package's layering written down as import
contracts (``[tool.importlinter]`` in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["codenet_dask", "tests", "workflows"]


def _tool(name: str, *args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which(name)
    command = [exe] if exe else [sys.executable, "-m", name.replace("-", "_")]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("args", [("check",), ("format", "--check")], ids=["lint", "format"])
def test_ruff_is_clean(args):
    result = _tool("ruff", *args, *SOURCES)
    assert result.returncode == 0, f"ruff {' '.join(args)} found problems:\n{result.stdout}{result.stderr}"


def test_mypy_is_clean():
    result = _tool("mypy", "codenet_dask")
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"


def test_import_contracts_hold():
    result = _tool("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_import_contracts_catch_a_wrong_import(tmp_path):
    """The contracts are not vacuous: pure math that imports the layer facade breaks them."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(ROOT / "codenet_dask", copy / "codenet_dask", ignore=shutil.ignore_patterns("__pycache__"))
    mds = copy / "codenet_dask" / "codes" / "mds.py"
    mds.write_text(mds.read_text() + "\nfrom ..layer import CodedLayer  # noqa: E402, F401  (the deliberate mistake)\n")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    result = _tool("lint-imports", "--no-cache", cwd=copy, env=env)
    assert result.returncode != 0
    assert "codenet_dask.codes.mds -> codenet_dask.layer" in result.stdout, result.stdout

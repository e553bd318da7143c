"""The declared public API: ``codenet_dask.__all__`` and the public submodules' own ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import types

import pytest

import codenet_dask
from codenet_dask import CodeNetError

SUBMODULES = sorted(n for n in codenet_dask.__all__ if isinstance(getattr(codenet_dask, n), types.ModuleType))


def test_every_public_name_resolves_and_is_listed_by_dir():
    missing = [name for name in codenet_dask.__all__ if not hasattr(codenet_dask, name)]
    assert not missing
    assert set(codenet_dask.__all__) <= set(dir(codenet_dask))
    assert SUBMODULES == [
        "bench",
        "checkpointing",
        "codes",
        "compare",
        "executors",
        "faults",
        "judge",
        "nn",
        "observe",
        "store",
    ]


@pytest.mark.parametrize("name", SUBMODULES)
def test_public_submodules_declare_what_they_export(name):
    module = importlib.import_module(f"codenet_dask.{name}")
    assert module.__all__, f"codenet_dask.{name} has an empty __all__"
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


def test_every_error_the_package_raises_on_purpose_can_be_imported_from_the_top():
    """Users catch what the package raises: each CodeNetError subclass (and the CLI's UsageError)
    is in ``__all__``."""
    for info in pkgutil.walk_packages(codenet_dask.__path__, "codenet_dask."):
        if info.name != "codenet_dask.__main__":
            importlib.import_module(info.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    ours = {cls.__name__ for cls in subclasses(CodeNetError) if cls.__module__.startswith("codenet_dask")}
    assert len(ours) >= 20
    assert sorted(ours - set(codenet_dask.__all__)) == []
    assert "UsageError" in codenet_dask.__all__ and "CodeNetError" in codenet_dask.__all__


def test_every_public_callable_has_a_docstring():
    """The API reference is built from these docstrings."""
    undocumented = [
        name
        for name in codenet_dask.__all__
        if callable(getattr(codenet_dask, name)) and not inspect.getdoc(getattr(codenet_dask, name))
    ]
    assert undocumented == []


def test_importing_the_package_stays_light():
    """Every worker imports codenet_dask: scikit-learn, matplotlib and bokeh load only when used."""
    code = (
        "import sys, codenet_dask\n"
        "heavy = sorted(m for m in ('sklearn', 'matplotlib', 'bokeh') if m in sys.modules)\n"
        "codenet_dask.CodedMLPClassifier\n"
        "print(heavy, 'sklearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[] True"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'CodedMLPRegressor'"):
        codenet_dask.CodedMLPRegressor  # noqa: B018

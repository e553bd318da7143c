"""The documentation site (docs/, Sphinx + MyST) builds with warnings as errors, covers the public
API, and its examples pass as doctests; the package's own docstring examples run too."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import codenet_dask

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def sphinx(builder: str, out: Path, doctrees: Path) -> subprocess.CompletedProcess:
    """``sphinx-build -W --keep-going`` of docs/ with ``builder``; the doctree cache is shared."""
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, "-d", doctrees, DOCS, out],
        capture_output=True,
        text=True,
        timeout=900,
        env=ENV,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx", reason="the docs need the test extra: pip install -e '.[test]'")
    pytest.importorskip("myst_parser", reason="the docs need the test extra: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("docs")
    done = sphinx("html", root / "html", root / "doctrees")
    assert done.returncode == 0, f"sphinx html failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return root


def page(site: Path, name: str) -> str:
    return (site / "html" / f"{name}.html").read_text()


def test_the_site_builds_with_warnings_as_errors(site):
    for name in ("index", "getting-started", "architecture", "api/index", "guide/estimator", "guide/python-api"):
        assert (site / "html" / f"{name}.html").is_file(), name
    assert (site / "html" / "_images" / "accuracy_vs_time.png").is_file()  # a README picture, copied


@pytest.mark.parametrize(
    "name, heading",
    [
        ("getting-started", "## Quick start"),
        ("guide/training", "## Training: `codenet-dask train`"),
        ("guide/compare", "## Comparing strategies: `codenet-dask compare`"),
        ("guide/watching", "## Watching a run"),
        ("guide/hpc", "## HPC (SLURM/PBS)"),
        ("guide/how-it-works", "## What it does"),
        ("guide/command-line", "## Command line"),
        ("guide/store", "## The store: coded weights on disk"),
        ("guide/performance", "## Performance: `codenet-dask bench`"),
    ],
)
def test_guide_pages_carry_the_readme_sections(site, name, heading):
    """Each guide page shows its README section: the section's first sentence is on the page."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading + "\n", 1)[1].lstrip()
    words = re.sub(r"[`*|]", "", section.split(". ")[0].split("\n")[0]).split()[:6]
    text = html.unescape(re.sub(r"<[^>]+>", "", page(site, name))).replace("\u2019", "'")  # smart quotes
    assert " ".join(words) in re.sub(r"\s+", " ", text), (name, words)


def test_readme_links_point_at_site_pages(site):
    """The README's in-page anchors become links to the pages that hold those sections."""
    text = page(site, "guide/command-line")
    assert 'href="performance.html"' in text and 'href="hpc.html"' in text
    assert 'href="#performance-codenet-dask-bench"' not in text


def test_every_public_name_is_in_the_api_reference(site):
    """Each name of ``codenet_dask.__all__`` has an entry, under ``codenet_dask.`` or under the
    public submodule it comes from."""
    reference = "".join(p.read_text() for p in (site / "html" / "api").glob("*.html"))
    ids = set(re.findall(r'id="([^"]+)"', reference))
    modules = [n for n in codenet_dask.__all__ if isinstance(getattr(codenet_dask, n), type(codenet_dask))]
    missing = []
    for name in codenet_dask.__all__:
        if name in modules:
            found = f"module-codenet_dask.{name}" in ids
        else:
            homes = [f"codenet_dask.{name}"] + [f"codenet_dask.{m}.{name}" for m in modules]
            found = any(h in ids for h in homes)
        if not found:
            missing.append(name)
    assert missing == []


def test_the_docs_examples_pass_as_doctests(site):
    done = sphinx("doctest", site / "doctest", site / "doctrees")
    report = (site / "doctest" / "output.txt").read_text() if (site / "doctest" / "output.txt").exists() else ""
    assert done.returncode == 0, f"{report[-6000:]}\n{done.stderr[-3000:]}"
    tests = int(re.search(r"^\s*(\d+) tests\s*$", report, re.M).group(1))
    assert tests >= 40, report[-2000:]
    assert re.search(r"^\s*0 failures in tests\s*$", report, re.M)


def test_the_package_docstring_examples_are_collected():
    """``python -m pytest`` runs the package's doctests (pyproject: --doctest-modules over
    codenet_dask): the collection finds the modules that hold examples."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "codenet_dask"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    for item in (
        "codenet_dask/matmul.py::codenet_dask.matmul.matmul",
        "codenet_dask/codes/mds.py::codenet_dask.codes.mds.SystematicMDSCode",
        "codenet_dask/faults/hook.py::codenet_dask.faults.hook.CorruptionPlan",
        "codenet_dask/faults/injector.py::codenet_dask.faults.injector.RandomFaults",
    ):
        assert item in done.stdout, item


def test_every_package_folder_is_a_package():
    """setuptools packages only folders with an ``__init__.py``: one without would be missing
    from a wheel (and from doctest collection)."""
    folders = {p.parent for p in (ROOT / "codenet_dask").rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists()) == []

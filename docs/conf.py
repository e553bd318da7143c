"""Sphinx configuration of the codenet_dask documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html``; run the examples:
``python -m sphinx -W -b doctest docs docs/_build/doctest`` (tests/test_docs.py does both).
Pages are Markdown (MyST); the user guide includes the README's sections, so the README stays the
one source of that text until it moves here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document (and doctest) this checkout, not an installed copy

project = "codenet_dask"
author = "the codenet_dask developers"
copyright = "the codenet_dask developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "compare", "dashboard", "graph"]  # data and pictures, not pages

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# README sections start at "##"; included under a page's "#" title, their "###" subsections skip a
# level, which MyST reports. The pages render as intended, so only that report is silenced.
suppress_warnings = ["myst.header"]

# Docstring examples are run by pytest --doctest-modules, in their modules' namespaces; the
# doctest builder runs the pages' own ```{doctest} blocks.
doctest_test_doctest_blocks = ""

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False  # scikit-learn's inherited docstrings are not written for Sphinx
napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = "codenet_dask"
html_theme_options = {
    "description": "CodeNet on Dask: training that stays right on unreliable workers",
    "page_width": "1180px",  # the README's tables and the examples' lines are wide
}

#: README anchors that the site has as pages of their own: "#slug" -> document.
README_ANCHORS = {
    "performance-codenet-dask-bench": "guide/performance",
    "hpc-slurmpbs": "guide/hpc",
    "the-store-coded-weights-on-disk": "guide/store",
    "resume-after-a-crash-or-a-walltime---resume-store": (
        "guide/training#resume-after-a-crash-or-a-walltime---resume-store"
    ),
}
#: A README link to a file of the repository (not a page, not the web, not an anchor).
REPOSITORY_FILE_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?:|#|/)[^)]+\)")


def _readme_for_the_site(app, relative_path: Path, parent_docname: str, content: list[str]) -> None:
    """Make README text read right inside docs/: its ``docs/...`` paths are relative to this
    folder here (a leading ``/`` is the source folder), its in-page anchors are other pages, and
    its links to repository files (scripts, workflows) are their names: the site has no copy."""
    if relative_path.name != "README.md":
        return
    text = content[0].replace("](docs/", "](/")

    def page(match: re.Match) -> str:
        slug = match.group(1)
        if slug not in README_ANCHORS:
            return match.group(0)  # left to MyST, which warns about a missing target (-W fails)
        document, _, anchor = README_ANCHORS[slug].partition("#")
        return f"](/{document}.md{'#' + anchor if anchor else ''})"

    text = re.sub(r"\]\(#([a-z0-9-]+)\)", page, text)
    content[0] = REPOSITORY_FILE_LINK.sub(r"\1", text)


def setup(app):
    app.connect("include-read", _readme_for_the_site)

"""The "CodeNet" dashboard page: a Bokeh document served by the scheduler's own Bokeh server.

It redraws every half second from the plugin's in-memory tally (no I/O, no client round trip):
a header with the run's progress and totals, the layers' code shapes with their counters, the
workers with theirs, the counters over the steps run, and a bar chart per worker. Tables are plain HTML in Bokeh Divs, so the
numbers are text in the page (a browser test reads them) rather than canvas pixels.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any, Protocol, cast

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, DataRange1d, FactorRange
from bokeh.models.widgets import Div
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from .tally import COUNTS, Tally

if TYPE_CHECKING:
    from bokeh.document import Document


class TallySource(Protocol):
    """Where the page reads its counters (the scheduler plugin, ``plugin.CodeNetDashboard``)."""

    tally: Tally


REFRESH_MS = 500
COLORS = ("#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#1f77b4")  # detected, corrected, recomputed, ...
LABELS = {
    "detected": "detected",
    "corrected": "corrected",
    "recomputed": "recomputed",
    "rolled_back": "rolled back",
    "repaired": "repaired (scrub)",
}

_STYLE = """<style>
table.codenet {border-collapse: collapse; font: 13px sans-serif; margin: 4px 0 12px 0}
table.codenet th, table.codenet td {border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right}
table.codenet th:first-child, table.codenet td:first-child {text-align: left}
table.codenet th {background: #f3f3f3}
h3.codenet {font: bold 15px sans-serif; margin: 6px 0 2px 0}
</style>"""


def _table(css: str, header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="codenet {css}"><tr>{head}</tr>{body}</table>'


def _shape(shape: dict[str, Any]) -> tuple[str, str]:
    if not shape:
        return "?", "?"
    grid = "x".join(map(str, shape.get("grid", [])))
    if shape.get("strategy") == "replication":
        return grid, f"{shape.get('replicas')} replicas"
    if shape.get("strategy") == "uncoded":
        return grid, "none"
    return grid, "x".join(map(str, shape.get("parity", [])))


def short(address: str) -> str:
    return address.split("://", 1)[-1]


def render_header(run: dict[str, Any] | None) -> str:
    if run is None:
        return (
            '<h3 class="codenet">CodeNet</h3><p class="codenet-status">No training run has published yet. '
            "Start one with <code>codenet-dask train --scheduler ADDRESS</code>.</p>"
        )
    t = run["totals"]
    age = time.time() - run["updated"]
    text = (
        f'<h3 class="codenet">CodeNet run {html.escape(run["run"])}: {html.escape(run["label"])}</h3>'
        f'<p class="codenet-status">{html.escape(run["status"])}: step {run["position"]} of {run["total"]}, '
        f"{run['rollbacks']} rollbacks, last event {age:.0f} s ago. Blocks detected {t['detected']}, "
        f"corrected {t['corrected']}, recomputed {t['recomputed']}, rolled back {t['rolled_back']}, "
        f"repaired {t['repaired']}; {t['products']} products checked.</p>"
    )
    for q in run.get("quarantined", []):
        text += (
            f'<p class="codenet-quarantine">Quarantined worker {html.escape(str(q["worker"]))} at step {int(q["step"])}: '
            f"{int(q['wrong'])} of its {int(q['checked'])} checked results were wrong.</p>"
        )
    if run["final"]:
        f = run["final"]
        text += (
            '<p class="codenet-final">Ground truth (injector log): '
            + ", ".join(f"{html.escape(k)} {v}" for k, v in f.items())
            + "</p>"
        )
    return text


def render_layers(run: dict[str, Any] | None) -> str:
    rows = []
    for layer in (run or {}).get("layers", []):
        grid, redundancy = _shape(layer["shape"])
        rows.append(
            [
                layer["name"],
                layer["shape"].get("strategy", "?"),
                grid,
                redundancy,
                layer["shape"].get("coded_blocks", "?"),
                layer["products"],
                layer["recomputations"],
                layer["ops_rolled_back"],
                *(layer[c] for c in COUNTS),
            ]
        )
    header = [
        "layer",
        "strategy",
        "grid",
        "parity / replicas",
        "blocks",
        "products",
        "recomputations",
        "ops rolled back",
        *(LABELS[c] for c in COUNTS),
    ]
    return _STYLE + '<h3 class="codenet">Layers</h3>' + _table("codenet-layers", header, rows)


def render_workers(run: dict[str, Any] | None) -> str:
    rows = [[short(w["worker"]), w["blocks"], *(w[c] for c in COUNTS)] for w in (run or {}).get("workers", [])]
    header = ["worker", "blocks held", *(LABELS[c] for c in COUNTS)]
    return _STYLE + '<h3 class="codenet">Workers</h3>' + _table("codenet-workers", header, rows)


class CodeNetPage:
    """The page's models and their refresh."""

    def __init__(self, plugin: TallySource) -> None:
        self.plugin = plugin
        self._run: str | None = None
        self.header = Div(text="", sizing_mode="stretch_width")
        self.layers = Div(text="", sizing_mode="stretch_width")
        self.workers = Div(text="", sizing_mode="stretch_width")
        self.source = ColumnDataSource({"x": [], "count": [], "value": []})
        self.chart = figure(
            x_range=FactorRange(factors=[]),
            height=240,
            sizing_mode="stretch_width",
            title="Blocks per worker",
            toolbar_location=None,
            tools="",
        )
        self.chart.vbar(
            x="x",
            top="value",
            width=0.9,
            source=self.source,
            line_color=None,
            fill_color=factor_cmap("x", palette=list(COLORS), factors=[LABELS[c] for c in COUNTS], start=1, end=2),
        )
        cast(DataRange1d, self.chart.y_range).start = 0  # figure's default y_range
        self.chart.xaxis.major_label_orientation = 0.9
        self.chart.xgrid.grid_line_color = None
        self.history = ColumnDataSource({"step": [], **{c: [] for c in COUNTS}})
        self.timeline = figure(
            height=240,
            sizing_mode="stretch_width",
            toolbar_location=None,
            tools="",
            title="Blocks so far, after each step run (steps redone after a rollback count again)",
            x_axis_label="steps run",
        )
        for name, colour in zip(COUNTS, COLORS):
            self.timeline.step(
                x="step",
                y=name,
                source=self.history,
                color=colour,
                line_width=2,
                legend_label=LABELS[name],
                mode="after",
            )
        self.timeline.legend.location = "top_left"
        cast(DataRange1d, self.timeline.y_range).start = 0
        self.root = column(
            self.header, self.layers, self.workers, self.timeline, self.chart, sizing_mode="stretch_width"
        )

    def update(self) -> None:
        run = self.plugin.tally.snapshot()["run"]
        for div, text in (
            (self.header, render_header(run)),
            (self.layers, render_layers(run)),
            (self.workers, render_workers(run)),
        ):
            if div.text != text:
                div.text = text
        workers = (run or {}).get("workers", [])
        factors = [(short(w["worker"]), LABELS[c]) for w in workers for c in COUNTS]
        data = {"x": factors, "count": [c for _, c in factors], "value": [w[c] for w in workers for c in COUNTS]}
        if list(cast(FactorRange, self.chart.x_range).factors) != factors:
            cast(FactorRange, self.chart.x_range).factors = factors
        if dict(self.source.data) != data:
            self.source.data = data
        points = (run or {}).get("history", {}).get("points", [])
        if len(points) != len(self.history.data["step"]) or self._run != (run or {}).get("run"):
            self._run = (run or {}).get("run")
            self.history.data = {
                "step": list(range(len(points))),
                **{c: [p[i] for p in points] for i, c in enumerate(COUNTS)},
            }


def codenet_doc(plugin: TallySource, extra: dict[str, Any], doc: Document) -> None:
    """Bokeh app entry point (one call per browser session)."""
    from distributed.dashboard.components.scheduler import BOKEH_THEME, env

    page = CodeNetPage(plugin)
    page.update()
    doc.add_periodic_callback(page.update, REFRESH_MS)
    doc.title = "Dask: CodeNet"
    doc.add_root(page.root)
    doc.template = env.get_template("simple.html")
    doc.template_variables.update(extra)
    doc.theme = BOKEH_THEME

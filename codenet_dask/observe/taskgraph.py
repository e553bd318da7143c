"""One training step's task graph, recorded on the scheduler and drawn with graphviz.

The graph is captured generically, whatever builds it: a SchedulerPlugin notes every task that
enters through ``update_graph`` while it is registered, with its dependencies as the scheduler
sees them (``TaskState.dependencies``). Dependencies from outside the recording (resident coded
blocks, scattered inputs) become dashed input nodes. Drawing groups tasks by Dask's own names:
``key_split`` (the prefix the dashboard colours by: ``block-forward``, ``project``, ``decode``,
``verify``, ``update`` ...) and ``key_split_group`` (the task group).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils import key_split, key_split_group

from ..errors import CodeNetError

if TYPE_CHECKING:
    from distributed import Scheduler

RECORDER = "codenet-graph-recorder"
FORMATS = ("png", "svg", "pdf", "dot")
Detail = Literal["groups", "tasks"]

#: Fill colours by step (a task group name's leading words); anything else is grey.
PALETTE = {
    "block-forward": "#9ecae1",
    "block-backward": "#c6dbef",
    "project": "#fdd0a2",
    "decode": "#a1d99b",
    "verify": "#c7e9c0",
    "verdicts": "#e5f5e0",
    "update": "#fcbba1",
    "encode": "#dadaeb",
    "vote": "#a1d99b",
    "accept": "#c7e9c0",
    "scrub": "#fee391",
    "repair": "#fec44f",
}
_TOKEN = re.compile(r"-[0-9a-f]{8}(?=-|$)")


class GraphError(CodeNetError, RuntimeError):
    """The graph could not be recorded or drawn (e.g. graphviz's ``dot`` is missing)."""


@dataclass
class StepGraph:
    """Recorded tasks (string keys) with their dependencies; ``inputs`` come from earlier graphs."""

    dependencies: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    #: Keys that carry data sent by the client (``client.scatter``), not computations.
    scattered: set[str] = field(default_factory=set)

    @property
    def inputs(self) -> set[str]:
        return {d for deps in self.dependencies.values() for d in deps} - self.dependencies.keys()

    def prefixes(self) -> Counter:
        """Tasks per key prefix (what the dashboard's task stream colours by)."""
        return Counter(key_split(self.groups[k]) if k in self.groups else key_split(k) for k in self.dependencies)


class GraphRecorder(SchedulerPlugin):
    """Records the tasks of every graph submitted while it is registered."""

    name = RECORDER

    def __init__(self) -> None:
        self.dependencies: dict[str, list[str]] = {}
        self.groups: dict[str, str] = {}
        self.scattered: set[str] = set()
        self.scheduler: Scheduler | None = None
        self.existing: set = set()

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.existing = set(scheduler.tasks)  # resident blocks, earlier results: inputs, not the step's tasks

    def update_graph(self, scheduler: Scheduler, *, tasks: Any = (), **kwargs: Any) -> None:
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None or key in self.existing or str(key) in self.dependencies:
                continue  # a later graph naming a finished key: its dependencies may be forgotten by now
            self.dependencies[str(key)] = sorted(str(d.key) for d in ts.dependencies)
            self.groups[str(key)] = ts.group.name
            if ts.run_spec is None:
                self.scattered.add(str(key))
            for dep in ts.dependencies:  # inputs from earlier graphs keep their group name too
                self.groups.setdefault(str(dep.key), dep.group.name)


@contextlib.contextmanager
def recording(client: Client) -> Iterator[StepGraph]:
    """Record the graphs submitted inside the block; the StepGraph is filled when it exits."""
    graph = StepGraph()
    client.register_plugin(GraphRecorder(), name=RECORDER)
    try:
        yield graph
        state = client.run_on_scheduler(_take, name=RECORDER)
        graph.dependencies, graph.groups, graph.scattered = state
    finally:
        client.unregister_scheduler_plugin(RECORDER)


def _take(dask_scheduler: Scheduler, name: str) -> tuple[dict, dict, set]:
    plugin = cast(GraphRecorder, dask_scheduler.plugins[name])  # registered by recording()
    return plugin.dependencies, plugin.groups, plugin.scattered


def label(group: str) -> str:
    """A task group's name without the per-instance hex token (``update-dense0-5``)."""
    return _TOKEN.sub("", group)


def color(group: str) -> str:
    """Fill colour of the step a task group belongs to (its name's leading words)."""
    name = label(group)
    return next((c for step, c in PALETTE.items() if name.startswith(step)), "#eeeeee")


def to_graphviz(graph: StepGraph, detail: Detail = "groups", title: str = "") -> Any:
    """A ``graphviz.Digraph``: one node per task group (``groups``) or per task, clustered by prefix (``tasks``)."""
    try:
        import graphviz
    except ImportError:
        raise GraphError("the graphviz Python package is missing; pip install graphviz") from None
    dot = graphviz.Digraph(
        "step",
        graph_attr={"rankdir": "TB", "label": title, "labelloc": "t", "fontsize": "20", "fontname": "Helvetica"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica"},
    )

    def group_of(key: str) -> str:
        return graph.groups.get(key) or key_split_group(key)

    if detail == "groups":
        sizes = Counter(group_of(k) for k in graph.dependencies)
        inputs = Counter(group_of(k) for k in graph.inputs)
        data = {group_of(k) for k in graph.scattered}
        for group, n in sizes.items():
            what = "scattered piece" if group in data else "task"
            dot.node(
                group,
                f"{label(group)}\n{n} {what}{'s' * (n != 1)}",
                fillcolor=color(group),
                **({"shape": "note"} if group in data else {}),
            )
        for group, n in inputs.items():
            if group not in sizes:
                dot.node(group, f"{label(group)}\n{n} input{'s' * (n != 1)}", style="rounded,dashed", fillcolor="white")
        edges = Counter((group_of(d), group_of(k)) for k, deps in graph.dependencies.items() for d in deps)
        for (a, b), n in edges.items():
            if a != b:
                dot.edge(a, b, label=str(n) if n > 1 else "", fontsize="9")
        return dot
    by_prefix: dict[str, list[str]] = {}
    for key in graph.dependencies:
        by_prefix.setdefault(key_split(group_of(key)), []).append(key)
    for prefix, keys in sorted(by_prefix.items()):
        with dot.subgraph(name=f"cluster_{prefix}") as sub:
            sub.attr(label=prefix, style="rounded", color="#888888")
            for key in keys:
                sub.node(key, label(key), fillcolor=color(group_of(key)), fontsize="8")
    for key in graph.inputs:
        dot.node(key, label(key), style="rounded,dashed", fillcolor="white", fontsize="8")
    for key, deps in graph.dependencies.items():
        for dep in deps:
            dot.edge(dep, key)
    return dot


def render(graph: StepGraph, out: str | Path, detail: Detail = "groups", title: str = "") -> Path:
    """Write the drawing to ``out`` (format from its suffix: png, svg, pdf or dot)."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise GraphError(f"{out}: the image format comes from the suffix, one of {', '.join(FORMATS)}")
    if not graph.dependencies:
        raise GraphError("no tasks were recorded; was anything computed while recording?")
    dot = to_graphviz(graph, detail, title)
    if fmt == "dot":
        out.write_text(dot.source)
        return out
    if shutil.which("dot") is None:
        raise GraphError("graphviz's dot program is not installed (Debian: apt-get install graphviz)")
    out.write_bytes(dot.pipe(format=fmt))
    return out


def step_graph(client: Client, config: Any = None, dataset: str = "digits") -> StepGraph:
    """Record the task graph of one SGD step of a small training run (built, then one step).

    Only the graphs of the step itself are recorded: encoding and the first checkpoint happen
    before the recording starts.
    """
    from ..data import batches, load_dataset
    from ..training import TrainConfig, Trainer

    config = config or TrainConfig(hidden=(16,), grid=2, parity=(2, 2), faults="none", batch_size=64)
    data = load_dataset(dataset, dtype=config.dtype, seed=config.seed)
    trainer = Trainer(client, data, config)
    try:
        trainer.build()
        x, y = next(iter(batches(data.x_train, data.y_train, config.batch_size, seed=config.seed, epoch=0)))
        with recording(client) as graph:
            trainer.step(x.astype(config.dtype, copy=False), y, config.lr)
    finally:
        trainer.close()
    return graph

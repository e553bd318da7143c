"""Scheduler side: a SchedulerPlugin that keeps the counters and serves them on the dashboard.

On ``start`` it adds, to the scheduler's own HTTP server (the one behind ``client.dashboard_link``),

- ``/codenet``: a live Bokeh page (``page.py``), listed in the dashboard's navigation bar;
- ``/json/codenet.json``: the same counters as JSON (``?run=ID`` for an older run).

Events arrive through ``client.log_event("codenet", ...)``, which the scheduler hands to every
plugin's ``log_event``; no custom RPC handler is needed, so a plain ``distributed`` scheduler
takes it (it only needs ``codenet_dask`` importable, like the workers do).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin
from tornado import web

from .tally import Tally

if TYPE_CHECKING:
    from distributed import Scheduler

logger = logging.getLogger(__name__)

TOPIC = "codenet"
NAME = "codenet-dashboard"
PAGE = "codenet"
JSON_ROUTE = "json/codenet.json"


class CodeNetDashboard(SchedulerPlugin):
    """Counters of fault handling per run, layer and worker, with their dashboard page."""

    name = NAME
    idempotent = True  # a second run on the same cluster reuses the page and its counters

    def __init__(self) -> None:
        self.tally = Tally()
        self.scheduler: Scheduler | None = None
        self.page_added = False

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        try:
            self.page_added = add_routes(scheduler, self)
        except Exception:
            logger.exception("codenet: could not add the dashboard page")

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == TOPIC:
            self.tally.apply(msg)

    def snapshot(self, run: str | None = None) -> dict[str, Any]:
        return self.tally.snapshot(run)


class CountsHandler(web.RequestHandler):
    """``GET /json/codenet.json[?run=ID]``: the counters the page shows."""

    def initialize(self, plugin: CodeNetDashboard) -> None:
        self.plugin = plugin

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(self.plugin.snapshot(self.get_argument("run", None))))


def _prefix(scheduler: Scheduler) -> str:
    """The dashboard's URL prefix (``--dashboard-prefix``), read off its Bokeh server."""
    try:
        from bokeh.server.server import BokehTornado
    except ImportError:
        return ""
    for app in getattr(scheduler.http_application, "applications", []):
        if isinstance(app, BokehTornado):
            return app.prefix.strip("/")
    return ""


def add_routes(scheduler: Scheduler, plugin: CodeNetDashboard) -> bool:
    """Add the JSON route, and the Bokeh page when bokeh is usable here; True if the page is on."""
    http = getattr(scheduler, "http_application", None)
    if http is None:
        return False
    prefix = _prefix(scheduler)
    base = f"/{prefix}/" if prefix else "/"
    http.add_handlers(r".*", [(base + JSON_ROUTE, CountsHandler, {"plugin": plugin})])
    try:
        import distributed.dashboard.scheduler as dashboard
    except ImportError:  # bokeh missing or incompatible: JSON only
        return False
    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    from .page import codenet_doc

    variables = dashboard.template_variables(scheduler)
    if PAGE not in variables["pages"]:
        variables["pages"].append(PAGE)  # shared by every dashboard page: adds the link to the navbar
    app = BokehApplication(
        {f"/{PAGE}": lambda server, extra, doc: codenet_doc(plugin, extra, doc)},
        scheduler,
        prefix=prefix,
        template_variables=variables,
    )
    http.add_application(app)
    app.initialize(IOLoop.current())
    app.start()
    return True


def register(client: Client) -> None:
    """Install the plugin on the client's scheduler (a no-op when it is there already)."""
    client.register_plugin(CodeNetDashboard(), name=NAME)  # idempotent: see the class

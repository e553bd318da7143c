"""Watching a run: the dashboard's CodeNet page, its publisher, and task-graph images.

- :class:`CodeNetDashboard` (scheduler plugin) serves ``/codenet`` and ``/json/codenet.json``;
- :class:`DashboardPublisher` sends a Trainer's counters to it after every step;
- ``taskgraph`` records one step's task graph on the scheduler and renders it with graphviz.
"""

from .plugin import JSON_ROUTE, NAME, PAGE, TOPIC, CodeNetDashboard, register
from .publisher import DashboardPublisher
from .tally import COUNTS, LAYER_EVENTS, Tally

__all__ = [
    "COUNTS",
    "JSON_ROUTE",
    "LAYER_EVENTS",
    "NAME",
    "PAGE",
    "TOPIC",
    "CodeNetDashboard",
    "DashboardPublisher",
    "Tally",
    "register",
]

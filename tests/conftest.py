"""Shared fixtures: one real LocalCluster (2 worker processes) for the whole session."""

from __future__ import annotations

import os
import sys

import pytest
from distributed import Client, LocalCluster

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="4GiB"
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def client(cluster):
    with Client(cluster) as client:
        yield client

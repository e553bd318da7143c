"""Shared fixtures: one real LocalCluster (2 worker processes) for the whole session."""

from __future__ import annotations

import os
import sys

import pytest
from distributed import Client

from codenet_dask import local_cluster

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def cluster():
    with local_cluster(2, memory_limit="4GiB") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def client(cluster):
    with Client(cluster) as client:
        yield client

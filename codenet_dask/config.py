"""codenet_dask's defaults in ``dask.config`` (the ``codenet`` namespace), registered like dask-jobqueue's.

Registering them as *defaults* means the user's dask config files and ``DASK_CODENET__...``
environment variables win over them, and the command-line flags win over both.
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

PATH = os.path.join(os.path.dirname(__file__), "codenet.yaml")


def reconfigure() -> None:
    """Register ``codenet.yaml`` as defaults; put a commented copy in the user's dask config folder."""
    dask.config.ensure_file(source=PATH)  # never overwrites; silently skipped if not writable
    with open(PATH) as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)


def get(key: str, default: Any = None) -> Any:
    """``dask.config.get("codenet." + key)``."""
    return dask.config.get(f"codenet.{key}", default=default)


reconfigure()

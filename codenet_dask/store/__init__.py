"""The coded-weight store: Zarr v3 arrays of coded blocks in an icechunk repository.

- :class:`CodedStore` — create/open/validate, chunk-granular incremental writes, atomic
  checkpoints, verified restore and rollback.
- :func:`scrub` — verify every stored block against the code, repair within capacity.

The only part of the package that touches disk.
"""

from .inventory import describe_store
from .layout import FORMAT_VERSION, LayerSpec
from .repository import Checkpoint, CodedStore, LayerRead, WriteStats
from .scrub import LayerScrub, ScrubReport, scrub

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CodedStore",
    "LayerRead",
    "LayerScrub",
    "LayerSpec",
    "ScrubReport",
    "WriteStats",
    "describe_store",
    "scrub",
]

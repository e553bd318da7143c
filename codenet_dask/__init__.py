"""codenet_dask: CodeNet-style coded matrix products and training on unreliable Dask workers.

Soft errors (workers returning wrong numbers without crashing) are detected and corrected with
real-valued MDS codes over weight blocks; what cannot be corrected is never silently accepted.

Everything a user imports is in ``__all__``: the names below and the public submodules
(``codes``, ``faults``, ``store``, ``executors``, ``judge``, ``nn``, ``checkpointing``, ``compare``,
``bench``, ``observe``, each with an ``__all__`` of its own). Other modules are internals that
may change. The estimator and the heavier submodules load on first use, so ``import
codenet_dask`` (which every worker does) does not import scikit-learn, matplotlib or bokeh.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import codes, executors, faults, judge, nn, store
from .cli import main
from .cli.cluster_options import add_cluster_options, cluster_spec_from_args, connect_from_args
from .cli.common import UsageError, parse_pair
from .cluster import ClusterError, ClusterSpec, connect, local_cluster, workers_for_grid
from .codes import ProductCode, SystematicMDSCode
from .data import Dataset, load_dataset
from .errors import (
    BlocksLostError,
    CheckpointNotFoundError,
    ClusterConfigError,
    CodeNetError,
    CodeParameterError,
    ConfigValueError,
    DataError,
    DivergedError,
    FaultSpecError,
    GaveUpError,
    IllConditionedCodeError,
    ModelParameterError,
    NonFiniteInputError,
    NotAStoreError,
    NotResumableError,
    ShapeMismatchError,
    StepTimeoutError,
    StoreCorruptError,
    StoreError,
    StoreFormatError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreVersionError,
    UncorrectableError,
    UnsupportedDtypeError,
    WorkerLostError,
)
from .executors import DaskExecutor, LocalExecutor
from .faults import (
    Corruption,
    CorruptionHook,
    CorruptionPlan,
    NoFaults,
    RandomFaults,
    Site,
    collect_injected,
    parse_fault_spec,
)
from .kernels.blocks import CodedBlock
from .kernels.checks import DecodeMismatchError
from .kernels.grid import encode_blocks
from .layer import CodedLayer, ProductResult, Shipped
from .ledger import FaultLedger
from .matmul import matmul
from .model import TrainedModel, load_model
from .observe.taskgraph import GraphError
from .protocol.placement import most_per_codeword, spread_owners
from .store import CodedStore, describe_store
from .strategies import STRATEGIES, build_layer
from .training import TrainConfig, Trainer, TrainSummary

if TYPE_CHECKING:
    from . import bench, checkpointing, compare, observe
    from .estimator import CodedMLPClassifier

#: Public names loaded on first use (PEP 562): name -> the module that defines it.
_LAZY = {"CodedMLPClassifier": "estimator"}
#: Public submodules loaded on first use.
_LAZY_MODULES = ("bench", "checkpointing", "compare", "observe")

__all__ = [
    "STRATEGIES",
    "BlocksLostError",
    "CheckpointNotFoundError",
    "ClusterConfigError",
    "ClusterError",
    "ClusterSpec",
    "CodeNetError",
    "CodeParameterError",
    "CodedBlock",
    "CodedLayer",
    "CodedMLPClassifier",
    "CodedStore",
    "ConfigValueError",
    "Corruption",
    "CorruptionHook",
    "CorruptionPlan",
    "DaskExecutor",
    "DataError",
    "Dataset",
    "DecodeMismatchError",
    "DivergedError",
    "FaultLedger",
    "FaultSpecError",
    "GaveUpError",
    "GraphError",
    "IllConditionedCodeError",
    "LocalExecutor",
    "ModelParameterError",
    "NoFaults",
    "NonFiniteInputError",
    "NotAStoreError",
    "NotResumableError",
    "ProductCode",
    "ProductResult",
    "RandomFaults",
    "ShapeMismatchError",
    "Shipped",
    "Site",
    "StepTimeoutError",
    "StoreCorruptError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "SystematicMDSCode",
    "TrainConfig",
    "TrainSummary",
    "TrainedModel",
    "Trainer",
    "UncorrectableError",
    "UnsupportedDtypeError",
    "UsageError",
    "WorkerLostError",
    "add_cluster_options",
    "bench",
    "build_layer",
    "checkpointing",
    "cluster_spec_from_args",
    "codes",
    "collect_injected",
    "compare",
    "connect",
    "connect_from_args",
    "describe_store",
    "encode_blocks",
    "executors",
    "faults",
    "judge",
    "load_dataset",
    "load_model",
    "local_cluster",
    "main",
    "matmul",
    "most_per_codeword",
    "nn",
    "observe",
    "parse_fault_spec",
    "parse_pair",
    "spread_owners",
    "store",
    "workers_for_grid",
]


def __getattr__(name: str) -> Any:
    """Load a lazy public name or submodule on first access."""
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

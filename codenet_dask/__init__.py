"""codenet_dask: CodeNet-style coded matrix products and training on unreliable Dask workers.

Soft errors (workers returning wrong numbers without crashing) are detected and corrected with
real-valued MDS codes over weight blocks; what cannot be corrected is never silently accepted.
"""

from .errors import (
    CodeNetError,
    CodeParameterError,
    IllConditionedCodeError,
    NonFiniteInputError,
    ShapeMismatchError,
    UncorrectableError,
    UnsupportedDtypeError,
)
from .layer import CodedLayer, ProductResult, Shipped
from .matmul import matmul
from .model import TrainedModel, load_model

__all__ = [
    "CodeNetError",
    "CodeParameterError",
    "CodedLayer",
    "IllConditionedCodeError",
    "NonFiniteInputError",
    "ProductResult",
    "ShapeMismatchError",
    "Shipped",
    "TrainedModel",
    "UncorrectableError",
    "UnsupportedDtypeError",
    "load_model",
    "matmul",
]

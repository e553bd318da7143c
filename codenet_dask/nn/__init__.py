"""The neural-network side: activations as per-block operand transforms, and the MLP's plain math.

Nothing here knows about codes or clusters: the coded layers apply these transforms on the
workers, inside each consuming block's task (``kernels.shards.OperandSpec``).
"""

from .activations import Relu, ReluGrad, SoftmaxXentGrad, softmax_grad
from .mlp import accuracy, cross_entropy, init_weights, predict

__all__ = [
    "Relu",
    "ReluGrad",
    "SoftmaxXentGrad",
    "accuracy",
    "cross_entropy",
    "init_weights",
    "predict",
    "softmax_grad",
]

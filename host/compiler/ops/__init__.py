"""Op lowerings; importing this package registers every supported op."""

from host.compiler.ops import (  # noqa: F401
    add,
    conv,
    fully_connected,
    logistic,
    mean,
    mul,
    pooling,
    quantize,
    reshape,
    shape_ops,
    softmax,
)
from host.compiler.ops.base import REGISTRY, LoweredOp, OpContext, supported_ops

__all__ = ["REGISTRY", "LoweredOp", "OpContext", "supported_ops"]

"""Op lowerings; importing this package registers every supported op."""

from host.compiler.ops import add, conv, fully_connected, mul, pooling, quantize, reshape, softmax  # noqa: F401
from host.compiler.ops.base import REGISTRY, LoweredOp, OpContext, supported_ops

__all__ = ["REGISTRY", "LoweredOp", "OpContext", "supported_ops"]

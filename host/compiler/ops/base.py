"""The interface every op lowering implements, and the registry of them.

A lowering checks that an operator is one the engine runs (types, options,
quantization) and computes its C params: everything TFLite Micro computes at
Prepare time, so the firmware kernel only does integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from host.tflite.reader import ACTIVATIONS, Operator, Subgraph, Tensor


@dataclass
class LoweredOp:
    kind: str                                   # C enum name, e.g. "TM_OP_CONV_2D"
    params_type: str | None = None              # C struct type of the params
    fields: dict[str, int | str] = field(default_factory=dict)
    arrays: dict[str, tuple[str, list[int]]] = field(default_factory=dict)  # field -> (ctype, values)
    # field -> (C macro, C element type, bytes): constant data a kernel reads only in builds where the macro
    # (tm_kernel_table.h) is set; elsewhere the field is NULL and the bytes are not in the image
    guarded_arrays: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    used_inputs: tuple[int, ...] | None = None  # inputs whose data the kernel reads (None: all)
    alias_output_to_input: bool = False         # output may share the input's bytes
    # optimized kernel ("mve", "dsp") -> bytes of scratch it holds for this op, or scratch.NEXT when it
    # hands the op to the next kernel of its row; absent kernels hold none (host/compiler/scratch.py)
    scratch: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OpContext:
    op: Operator
    graph: Subgraph

    def tensor(self, position: int, outputs: bool = False) -> Tensor | None:
        indices = self.op.outputs if outputs else self.op.inputs
        if position >= len(indices) or indices[position] < 0:
            return None
        return self.graph.tensors[indices[position]]

    def input(self, position: int) -> Tensor:
        tensor = self.tensor(position)
        if tensor is None:
            raise KeyError(position)
        return tensor

    def output(self, position: int = 0) -> Tensor:
        tensor = self.tensor(position, outputs=True)
        if tensor is None:
            raise KeyError(position)
        return tensor

    def option(self, slot: int, fmt: str, default: int | float = 0) -> int | float:
        return default if self.op.options is None else self.op.options.scalar(slot, fmt, default)

    def activation(self, slot: int) -> str:
        return ACTIVATIONS.get(int(self.option(slot, "b", 0)), "UNKNOWN")


@dataclass(frozen=True)
class OpLowering:
    opcode: str
    check: Callable[[OpContext], list[str]]
    lower: Callable[[OpContext], LoweredOp]


REGISTRY: dict[str, OpLowering] = {}


def register(opcode: str) -> Callable[[type], type]:
    """Class decorator: a class with static `check` and `lower` methods."""

    def wrap(cls: type) -> type:
        REGISTRY[opcode] = OpLowering(opcode, cls.check, cls.lower)
        return cls

    return wrap


def supported_ops() -> list[str]:
    return sorted(REGISTRY)


# ---- checks shared by several ops -------------------------------------------------

def expect_dtype(tensor: Tensor | None, what: str, dtypes: tuple[str, ...]) -> list[str]:
    if tensor is None:
        return [f"{what} is missing"]
    if tensor.dtype not in dtypes:
        return [f"{what} '{tensor.name}' is {tensor.dtype}; supported: {', '.join(dtypes)}"]
    return []


def expect_quantized(tensor: Tensor | None, what: str) -> list[str]:
    if tensor is None:
        return []
    if tensor.quant is None:
        return [f"{what} '{tensor.name}' has no quantization parameters"]
    if tensor.quant.per_channel:
        return [f"{what} '{tensor.name}' must be per-tensor quantized"]
    return []


def expect_symmetric_weights(tensor: Tensor | None, what: str) -> list[str]:
    if tensor is None or tensor.quant is None:
        return [f"{what} has no quantization parameters"]
    if tensor.data is None:
        return [f"{what} '{tensor.name}' is not a constant"]
    if any(int(z) != 0 for z in tensor.quant.zero_point):
        return [f"{what} '{tensor.name}' has non-zero zero points (int8 weights must be symmetric)"]
    return []


def expect_activation(name: str, allowed: tuple[str, ...] = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")) -> list[str]:
    return [] if name in allowed else [f"fused activation {name} is not supported"]


def same_activation_type(ctx: OpContext) -> tuple[Tensor | None, Tensor | None, list[str]]:
    """Input 0 and output 0, and what is wrong unless both are int8 or both int16 (when that
    list is empty, both tensors exist)."""
    inp, out = ctx.tensor(0), ctx.tensor(0, outputs=True)
    problems = expect_dtype(inp, "input", ("int8", "int16")) + expect_dtype(out, "output", ("int8", "int16"))
    if problems:
        return inp, out, problems
    assert inp is not None and out is not None
    if inp.dtype != out.dtype:
        problems = [f"input is {inp.dtype} but output is {out.dtype}"]
    return inp, out, problems


def activation_problems(ctx: OpContext, bias_position: int | None = None) -> list[str]:
    """Input and output share one activation type: int8, or int16 with zero point 0
    (16x8). Bias: int32 for int8; int32 or int64 for int16."""
    inp, out, problems = same_activation_type(ctx)
    if problems:
        return problems
    assert inp is not None and out is not None
    problems += expect_quantized(inp, "input") + expect_quantized(out, "output")
    if inp.dtype == "int16":
        for what, t in (("input", inp), ("output", out)):
            if t.quant is not None and int(t.quant.zero_point[0]) != 0:
                problems.append(f"int16 {what} '{t.name}' must have zero point 0 (16x8 quantization)")
    bias = ctx.tensor(bias_position) if bias_position is not None else None
    if bias is not None:
        allowed = ("int32", "int64") if inp.dtype == "int16" else ("int32",)
        problems += expect_dtype(bias, "bias", allowed)
        if bias.data is None:
            problems.append("bias is not a constant")
    return problems


def qparams(tensor: Tensor) -> tuple[float, int]:
    assert tensor.quant is not None
    return float(tensor.quant.scale[0]), int(tensor.quant.zero_point[0])


def uses_64bit_accumulator(ctx: OpContext) -> int:
    """TFLM's accumulator for an int16x8 op: 32-bit only with an int32 bias;
    64-bit with an int64 bias or none (measured against the interpreter)."""
    if ctx.input(0).dtype != "int16":
        return 0
    bias = ctx.tensor(2)
    return int(bias is None or bias.dtype == "int64")

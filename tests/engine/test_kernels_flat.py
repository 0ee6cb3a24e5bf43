"""The portable kernels' flat compute functions (firmware/engine/tm_kernels.h), called through ctypes
without a model: params struct + dims + data pointers, as CMSIS-NN's are.  Each random single-op model
of tests/support/tflite_builder.py is lowered by the compiler (its params), its tensors give the dims
and constants, and the flat function's output must equal the TFLite Micro interpreter's byte for byte."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import pytest

from host.compiler.ops import REGISTRY, LoweredOp, OpContext
from host.compiler.ops.conv import ConvDims
from host.compiler.ops.fully_connected import FcDims
from host.compiler.types import DTYPE_CODES
from host.engine.native import kernel_library
from host.engine.reference import ReferenceInterpreter
from host.tflite.reader import Operator, Subgraph, parse_model
from tests.engine.test_kernels_native import random_input
from tests.support.tflite_builder import GENERATORS

SEEDS = 6
I16, I32, F32, PTR = ctypes.c_int16, ctypes.c_int32, ctypes.c_float, ctypes.c_void_p
MAX_RANK = 5


def _struct(name: str, fields: list[tuple[str, type]]) -> type[ctypes.Structure]:
    return type(name, (ctypes.Structure,), {"_fields_": fields})


# The C structs of firmware/engine/tm_engine.h and tm_kernels.h, field for field.
PARAMS: dict[str, type[ctypes.Structure]] = {
    "tm_conv_params_t": _struct("ConvParams", [
        *((n, I16) for n in ("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_h", "pad_w",
                             "depth_multiplier", "n_multipliers", "acc64", "reserved")),
        *((n, I32) for n in ("input_offset", "output_offset", "act_min", "act_max")),
        ("out_multiplier", PTR), ("out_shift", PTR), ("weights16", PTR), ("weights16_doubled", I32),
        ("winograd", PTR)]),
    "tm_fc_params_t": _struct("FcParams", [
        *((n, I32) for n in ("input_offset", "filter_offset", "output_offset", "act_min", "act_max")),
        ("n_multipliers", I16), ("acc64", I16), ("out_multiplier", PTR), ("out_shift", PTR), ("weights16", PTR)]),
    "tm_pool_params_t": _struct("PoolParams", [
        *((n, I16) for n in ("filter_h", "filter_w", "stride_h", "stride_w", "pad_h", "pad_w")),
        ("act_min", I32), ("act_max", I32)]),
    "tm_softmax_params_t": _struct("SoftmaxParams", [
        ("input_multiplier", I32), ("input_left_shift", I32), ("diff_min", I32),
        ("exp_lut", PTR), ("one_over_one_plus_x_lut", PTR)]),
    "tm_add_params_t": _struct("AddParams", [(n, I32) for n in (
        "input1_offset", "input2_offset", "output_offset", "input1_multiplier", "input2_multiplier",
        "output_multiplier", "input1_shift", "input2_shift", "output_shift", "left_shift", "act_min", "act_max")]),
    "tm_mul_params_t": _struct("MulParams", [(n, I32) for n in (
        "input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift", "act_min",
        "act_max")]),
    "tm_pad_params_t": _struct("PadParams", [("before", I32 * MAX_RANK), ("pad_value", I32)]),
    "tm_concat_params_t": _struct("ConcatParams", [("axis", I32)]),
    "tm_logistic_params_t": _struct("LogisticParams", [
        *((n, I32) for n in ("input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift")),
        ("sigmoid_lut", PTR)]),
    "tm_mean_params_t": _struct("MeanParams", [(n, I32) for n in (
        "mode", "reduce_mask", "multiplier", "shift", "input_zero_point", "output_zero_point")]),
    "tm_quantize_params_t": _struct("QuantizeParams", [
        ("scale", F32), *((n, I32) for n in ("zero_point", "input_offset", "output_offset", "multiplier", "shift"))]),
}
ConvDimsC = _struct("ConvDimsC", [(n, I32) for n in ConvDims.__dataclass_fields__])
FcDimsC = _struct("FcDimsC", [(n, I32) for n in FcDims.__dataclass_fields__])
PoolDimsC = _struct("PoolDimsC", [(n, I32) for n in ("batches", "in_h", "in_w", "channels", "out_h", "out_w")])
ShapeC = _struct("ShapeC", [("rank", I32), ("dims", I32 * MAX_RANK)])
CTYPES = {"int32_t": ctypes.c_int32, "int16_t": ctypes.c_int16, "uint16_t": ctypes.c_uint16}


def _value(raw: int | str) -> int | float | list[int]:
    """A lowered field as the C initializer spells it: 3, "0.5f", "{ 0, 1, 1, 0 }"."""
    if isinstance(raw, int):
        return raw
    text = raw.strip()
    if text.startswith("{"):
        return [int(v) for v in text.strip("{} ").split(",")]
    return float(text.rstrip("f"))


def params_of(lowered: LoweredOp) -> tuple[ctypes.Structure, list[object]]:
    """The op's params struct, and the arrays its pointers point at (keep them alive)."""
    assert lowered.params_type is not None
    params, keep = PARAMS[lowered.params_type](), []
    for name, raw in lowered.fields.items():
        value = _value(raw)
        if isinstance(value, list):
            getattr(params, name)[:len(value)] = value
        else:
            setattr(params, name, value)
    for name, (ctype, values) in lowered.arrays.items():
        array = (CTYPES[ctype] * len(values))(*values)
        keep.append(array)
        setattr(params, name, ctypes.addressof(array))
    return params, keep


def shape_of(shape: tuple[int, ...]) -> ctypes.Structure:
    s = ShapeC(len(shape))
    s.dims[:len(shape)] = shape
    return s


def ptr(a: np.ndarray | None) -> ctypes.c_void_p | None:
    return None if a is None else a.ctypes.data_as(PTR)


class Op:
    """One op of a single-op model: its lowering, tensor values (constants, then the feeds) and output."""

    def __init__(self, graph: Subgraph, op: Operator, feeds: dict[int, np.ndarray]) -> None:
        self.graph, self.op = graph, op
        self.lowered = REGISTRY[op.opcode].lower(OpContext(op, graph))
        self.ctx = OpContext(op, graph)
        self.feeds = feeds
        out = graph.tensors[op.outputs[0]]
        self.out = np.zeros(out.shape, dtype=out.dtype)

    def value(self, position: int) -> np.ndarray | None:
        index = self.op.inputs[position] if position < len(self.op.inputs) else -1
        if index < 0:
            return None
        t = self.graph.tensors[index]
        if t.data is not None:
            return np.frombuffer(t.data, dtype=t.dtype).reshape(t.shape).copy()
        return np.ascontiguousarray(self.feeds[index])

    def dtype(self, position: int = 0) -> str:
        return self.graph.tensors[self.op.inputs[position]].dtype


def _suffix(op: Op) -> str:
    return "s16" if op.dtype() == "int16" else "s8"


def call_conv(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    dims = ConvDimsC(*ConvDims.of(op.ctx).values())
    name = "conv_2d" if op.op.opcode == "CONV_2D" else "depthwise_conv_2d"
    fn = getattr(lib, f"tm_{name}_{_suffix(op)}")
    return fn(ctypes.byref(params), ctypes.byref(dims), ptr(op.value(0)), ptr(op.value(1)), ptr(op.value(2)),
              ptr(op.out))


def call_fc(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    dims = FcDimsC(*FcDims.of(op.ctx).values())
    getattr(lib, f"tm_fully_connected_{_suffix(op)}")(ctypes.byref(params), ctypes.byref(dims), ptr(op.value(0)),
                                                     ptr(op.value(1)), ptr(op.value(2)), ptr(op.out))
    return 0


def call_pool(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    (n, in_h, in_w, c), (_, out_h, out_w, _) = op.value(0).shape, op.out.shape  # type: ignore[union-attr]
    dims = PoolDimsC(n, in_h, in_w, c, out_h, out_w)
    fn = getattr(lib, f"tm_{op.op.opcode.lower()}_{_suffix(op)}")
    status = fn(ctypes.byref(params), ctypes.byref(dims), ptr(op.value(0)), ptr(op.out))
    return status if op.op.opcode == "AVERAGE_POOL_2D" else 0


def call_elementwise(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    x1, x2 = op.value(0), op.value(1)
    assert x1 is not None and x2 is not None
    fn = getattr(lib, f"tm_{op.op.opcode.lower()}_{_suffix(op)}")
    return fn(ctypes.byref(params), ctypes.byref(shape_of(x1.shape)), ctypes.byref(shape_of(x2.shape)),
              ctypes.byref(shape_of(op.out.shape)), ptr(x1), ptr(x2), ptr(op.out))


def call_softmax(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    depth = op.out.shape[-1]
    getattr(lib, f"tm_softmax_{_suffix(op)}")(ctypes.byref(params), op.out.size // depth, depth,
                                             ptr(op.value(0)), ptr(op.out))
    return 0


def call_logistic(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    status = getattr(lib, f"tm_logistic_{_suffix(op)}")(ctypes.byref(params), op.out.size, ptr(op.value(0)),
                                                       ptr(op.out))
    return status if op.dtype() == "int16" else 0


def call_quantize(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    in_code = DTYPE_CODES[op.dtype()]
    if op.op.opcode == "DEQUANTIZE":
        return lib.tm_dequantize(ctypes.byref(params), op.out.size, in_code, ptr(op.value(0)), ptr(op.out))
    return lib.tm_quantize(ctypes.byref(params), op.out.size, in_code, ptr(op.value(0)),
                           DTYPE_CODES[str(op.out.dtype)], ptr(op.out))


def call_pad(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    x = op.value(0)
    assert x is not None
    lib.tm_pad(ctypes.byref(params), ctypes.byref(shape_of(x.shape)), ctypes.byref(shape_of(op.out.shape)),
               x.itemsize, ptr(x), ptr(op.out))
    return 0


def call_mean(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    x = op.value(0)
    assert x is not None
    getattr(lib, f"tm_mean_{_suffix(op)}")(ctypes.byref(params), ctypes.byref(shape_of(x.shape)), op.out.size,
                                          ptr(x), ptr(op.out))
    return 0


def call_concatenation(lib: ctypes.CDLL, op: Op) -> int:
    params, _keep = params_of(op.lowered)
    lib.tm_concatenation_place.restype = ctypes.c_int32
    out_shape, position = shape_of(op.out.shape), 0
    for i in range(len(op.op.inputs)):
        x = op.value(i)
        assert x is not None
        position = lib.tm_concatenation_place(ctypes.byref(params), ctypes.byref(out_shape), op.out.itemsize,
                                              ctypes.byref(shape_of(x.shape)), ptr(x), ptr(op.out), position)
    return 0


CALLS: dict[str, Callable[[ctypes.CDLL, Op], int]] = {
    "CONV_2D": call_conv, "DEPTHWISE_CONV_2D": call_conv, "FULLY_CONNECTED": call_fc,
    "MAX_POOL_2D": call_pool, "AVERAGE_POOL_2D": call_pool, "ADD": call_elementwise, "MUL": call_elementwise,
    "SOFTMAX": call_softmax, "LOGISTIC": call_logistic, "QUANTIZE": call_quantize, "DEQUANTIZE": call_quantize,
    "PAD": call_pad, "PADV2": call_pad, "MEAN": call_mean, "CONCATENATION": call_concatenation,
}
FLAT_GENERATORS = sorted(name for name in GENERATORS if name.removesuffix("_INT16") in CALLS)


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    return kernel_library()


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("generator", FLAT_GENERATORS)
def test_flat_kernel_matches_tflm(lib: ctypes.CDLL, generator: str, seed: int) -> None:
    rng = np.random.default_rng([seed, sum(generator.encode())])  # the models of test_kernels_native
    data = GENERATORS[generator](rng)
    graph = parse_model(data).subgraphs[0]
    assert len(graph.operators) == 1, "single-op models only"
    xs = [random_input(rng, graph.tensors[i].dtype, tuple(graph.tensors[i].shape)) for i in graph.inputs]
    op = Op(graph, graph.operators[0], dict(zip(graph.inputs, xs, strict=True)))
    assert CALLS[op.op.opcode](lib, op) == 0
    golden = ReferenceInterpreter(data).run(*xs)[0]
    ours = op.out
    if ours.dtype == np.float32:
        ours, golden = ours.view(np.uint32), golden.view(np.uint32)
    assert np.array_equal(ours, golden), f"{generator} seed {seed}: flat kernel differs from TFLM"


def test_flat_reshape_copies_or_aliases(lib: ctypes.CDLL) -> None:
    x = np.arange(24, dtype=np.int8)
    y = np.zeros_like(x)
    lib.tm_reshape(ptr(x), ptr(y), x.nbytes)
    assert np.array_equal(x, y)
    lib.tm_reshape(ptr(x), ptr(x), x.nbytes)   # the planner's alias: nothing to move
    assert np.array_equal(x, np.arange(24, dtype=np.int8))

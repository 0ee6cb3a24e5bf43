"""Build small .tflite models directly (no converter): random single-op graphs
with chosen shapes, scales and zero points, for bit-exactness tests.

Uses the flatbuffer object API TensorFlow ships with its TFLite schema.
"""

from __future__ import annotations

import os

import flatbuffers
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from tensorflow.lite.python import schema_py_generated as fb  # noqa: E402

TYPES = {"float32": 0, "int32": 2, "int8": 9, "int16": 7, "int64": 4}


class GraphBuilder:
    def __init__(self) -> None:
        self.tensors: list[fb.TensorT] = []
        self.buffers: list[fb.BufferT] = [fb.BufferT()]
        self.operators: list[fb.OperatorT] = []
        self.opcodes: list[str] = []

    def tensor(
        self,
        shape: tuple[int, ...],
        dtype: str,
        scale: float | list[float] | None = None,
        zero_point: int | list[int] = 0,
        data: np.ndarray | None = None,
        quantized_dimension: int = 0,
    ) -> int:
        t = fb.TensorT()
        t.shape = list(shape)
        t.type = TYPES[dtype]
        t.name = f"t{len(self.tensors)}".encode()
        t.buffer = 0
        if data is not None:
            buf = fb.BufferT()
            buf.data = np.ascontiguousarray(data, dtype=dtype).tobytes()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(zero_point)]
            if len(q.zeroPoint) != len(q.scale):
                q.zeroPoint = q.zeroPoint * len(q.scale)
            q.quantizedDimension = quantized_dimension
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, opcode: str, inputs: list[int], outputs: list[int], options: object | None = None) -> None:
        if opcode not in self.opcodes:
            self.opcodes.append(opcode)
        o = fb.OperatorT()
        o.opcodeIndex = self.opcodes.index(opcode)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(fb.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        sg = fb.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.operators
        sg.inputs, sg.outputs = inputs, outputs
        model = fb.ModelT()
        model.version = 3
        model.subgraphs = [sg]
        model.buffers = self.buffers
        model.operatorCodes = []
        for name in self.opcodes:
            code = fb.OperatorCodeT()
            value = getattr(fb.BuiltinOperator, name)
            code.builtinCode = value
            code.deprecatedBuiltinCode = min(value, 127)
            code.version = 1
            model.operatorCodes.append(code)
        b = flatbuffers.Builder(1024)
        b.Finish(model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


# ---- random single-op models ----------------------------------------------------

ACTIVATIONS = [0, 1, 2, 3]  # NONE, RELU, RELU_N1_TO_1, RELU6


def _qparams(rng: np.random.Generator) -> tuple[float, int]:
    return float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))


def _output_scale(rng: np.random.Generator, in_scale: float, w_scale: float, fan_in: int) -> float:
    # Aim the accumulator's typical magnitude near the int8 range, with spread.
    return in_scale * w_scale * 60.0 * np.sqrt(fan_in) * float(rng.uniform(0.3, 3.0)) / 127.0


def _activation_qparams(rng: np.random.Generator, dtype: str) -> tuple[float, int]:
    scale, zp = _qparams(rng)
    return (scale / 256.0, 0) if dtype == "int16" else (scale, zp)


def _bias(rng: np.random.Generator, dtype: str, n: int, magnitude: int) -> tuple[np.ndarray, str]:
    """int8 ops: int32 bias; int16 ops: int64 (what the converter emits) or int32."""
    if dtype == "int16":
        bias_type = "int64" if rng.random() < 0.7 else "int32"
        return rng.integers(-magnitude * 256, magnitude * 256, size=n).astype(bias_type), bias_type
    return rng.integers(-magnitude, magnitude, size=n).astype(np.int32), "int32"


def random_conv(rng: np.random.Generator, depthwise: bool = False, dtype: str = "int8",
                in_c: int | None = None, kernel: tuple[int, int] | None = None, extreme_weights: bool = False) -> bytes:
    """A random single CONV_2D (or DEPTHWISE_CONV_2D); `in_c` and `kernel` (kh, kw) fix those draws, and
    `extreme_weights` makes every weight -127 or 127 (the largest products an accumulator must hold)."""
    g = GraphBuilder()
    h, w = int(rng.integers(3, 12)), int(rng.integers(3, 12))
    in_c = int(rng.integers(1, 6)) if in_c is None else in_c
    kh, kw = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if kernel is None else kernel
    stride_h, stride_w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dil_h, dil_w = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if rng.random() < 0.3 else (1, 1)
    same = bool(rng.random() < 0.5)
    eff_h, eff_w = (kh - 1) * dil_h + 1, (kw - 1) * dil_w + 1
    if not same and (eff_h > h or eff_w > w):
        same = True
    out_h = (h + stride_h - 1) // stride_h if same else (h - eff_h + stride_h) // stride_h
    out_w = (w + stride_w - 1) // stride_w if same else (w - eff_w + stride_w) // stride_w
    mult = int(rng.integers(1, 3)) if depthwise else 1
    out_c = in_c * mult if depthwise else int(rng.integers(1, 9))
    in_scale, in_zp = _activation_qparams(rng, dtype)
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    fan_in = kh * kw * (1 if depthwise else in_c)
    out_scale, out_zp = _output_scale(rng, in_scale, float(w_scales.mean()), fan_in), int(rng.integers(-128, 128))
    if dtype == "int16":
        out_zp = 0
    if depthwise:
        weights = rng.integers(-127, 128, size=(1, kh, kw, out_c), dtype=np.int8)
        qdim = 3
    else:
        weights = rng.integers(-127, 128, size=(out_c, kh, kw, in_c), dtype=np.int8)
        qdim = 0
    if extreme_weights:
        weights = np.where(weights < 0, -127, 127).astype(np.int8)
    bias, bias_type = _bias(rng, dtype, out_c, 2000)
    if depthwise and dtype == "int16":
        bias = bias.astype(np.int64)  # TFLM reads a 16x8 depthwise bias as int64
        bias_type = "int64"
    x = g.tensor((1, h, w, in_c), dtype, in_scale, in_zp)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=qdim)
    # TFLM's interpreter crashes on a depthwise conv without bias (the converter
    # always emits one), so only CONV_2D gets the bias-less variant.
    with_bias = depthwise or rng.random() < 0.85
    b = g.tensor((out_c,), bias_type, list(in_scale * w_scales), 0, bias) if with_bias else -1
    y = g.tensor((1, out_h, out_w, out_c), dtype, out_scale, out_zp)
    if depthwise:
        opt = fb.DepthwiseConv2DOptionsT()
        opt.depthMultiplier = mult
    else:
        opt = fb.Conv2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH, opt.strideW = stride_h, stride_w
    opt.dilationHFactor, opt.dilationWFactor = dil_h, dil_w
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_fully_connected(rng: np.random.Generator, dtype: str = "int8") -> bytes:
    g = GraphBuilder()
    batches, depth, units = int(rng.integers(1, 3)), int(rng.integers(1, 40)), int(rng.integers(1, 12))
    in_scale, in_zp = _activation_qparams(rng, dtype)
    w_scale = float(rng.uniform(0.002, 0.05))
    out_scale = _output_scale(rng, in_scale, w_scale, depth)
    out_zp = 0 if dtype == "int16" else int(rng.integers(-128, 128))
    weights = rng.integers(-127, 128, size=(units, depth), dtype=np.int8)
    x = g.tensor((batches, depth), dtype, in_scale, in_zp)
    f = g.tensor((units, depth), "int8", w_scale, 0, weights)
    bias, bias_type = _bias(rng, dtype, units, 3000)
    b = g.tensor((units,), bias_type, in_scale * w_scale, 0, bias) if rng.random() < 0.85 else -1
    y = g.tensor((batches, units), dtype, out_scale, out_zp)
    opt = fb.FullyConnectedOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("FULLY_CONNECTED", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_pool(rng: np.random.Generator, kind: str, dtype: str = "int8") -> bytes:
    g = GraphBuilder()
    h, w, c = int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.integers(1, 6))
    fh, fw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    same = bool(rng.random() < 0.5)
    out_h = (h + sh - 1) // sh if same else (h - fh + sh) // sh
    out_w = (w + sw - 1) // sw if same else (w - fw + sw) // sw
    scale, zp = _activation_qparams(rng, dtype)
    x = g.tensor((1, h, w, c), dtype, scale, zp)
    y = g.tensor((1, out_h, out_w, c), dtype, scale, zp)
    opt = fb.Pool2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH, opt.strideW, opt.filterHeight, opt.filterWidth = sh, sw, fh, fw
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op(kind, [x], [y], opt)
    return g.build([x], [y])


def random_softmax(rng: np.random.Generator, dtype: str = "int8") -> bytes:
    g = GraphBuilder()
    rows, depth = int(rng.integers(1, 4)), int(rng.integers(2, 20))
    if dtype == "int16":
        x = g.tensor((rows, depth), "int16", float(rng.uniform(0.01, 0.5)) / 256, 0)
        y = g.tensor((rows, depth), "int16", 1.0 / 32768, 0)
    else:
        x = g.tensor((rows, depth), "int8", float(rng.uniform(0.01, 0.5)), int(rng.integers(-128, 128)))
        y = g.tensor((rows, depth), "int8", 1.0 / 256, -128)
    opt = fb.SoftmaxOptionsT()
    opt.beta = float(rng.choice([1.0, 1.0, 0.5, 2.0]))
    g.op("SOFTMAX", [x], [y], opt)
    return g.build([x], [y])


def random_reshape_chain(rng: np.random.Generator) -> bytes:
    """RESHAPE between two ops so aliasing in the arena is exercised."""
    g = GraphBuilder()
    h, w, c = int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
    scale, zp = _qparams(rng)
    x = g.tensor((1, h, w, c), "int8", scale, zp)
    p = g.tensor((1, h, w, c), "int8", scale, zp)
    opt = fb.Pool2DOptionsT()
    opt.padding, opt.strideH, opt.strideW, opt.filterHeight, opt.filterWidth = 0, 1, 1, 1, 1
    g.op("MAX_POOL_2D", [x], [p], opt)
    shape = g.tensor((2,), "int32", data=np.array([1, h * w * c], dtype=np.int32))
    y = g.tensor((1, h * w * c), "int8", scale, zp)
    ropt = fb.ReshapeOptionsT()
    ropt.newShape = [1, h * w * c]
    g.op("RESHAPE", [p, shape], [y], ropt)
    return g.build([x], [y])


GENERATORS = {
    "CONV_2D": lambda rng: random_conv(rng),
    "DEPTHWISE_CONV_2D": lambda rng: random_conv(rng, depthwise=True),
    "FULLY_CONNECTED": random_fully_connected,
    "MAX_POOL_2D": lambda rng: random_pool(rng, "MAX_POOL_2D"),
    "AVERAGE_POOL_2D": lambda rng: random_pool(rng, "AVERAGE_POOL_2D"),
    "SOFTMAX": random_softmax,
    "RESHAPE": random_reshape_chain,
}


def random_multi_op(rng: np.random.Generator) -> bytes:
    """conv -> depthwise -> avg pool -> reshape -> fc -> softmax with consistent qparams."""
    g = GraphBuilder()
    h = w = int(rng.integers(4, 9))
    c1, c2 = int(rng.integers(1, 4)), int(rng.integers(2, 6))
    s0, z0 = _qparams(rng)
    x = g.tensor((1, h, w, c1), "int8", s0, z0)
    w1s = rng.uniform(0.005, 0.05, size=c2)
    s1 = _output_scale(rng, s0, float(w1s.mean()), 9 * c1)
    w1 = g.tensor((c2, 3, 3, c1), "int8", list(w1s), 0, rng.integers(-127, 128, size=(c2, 3, 3, c1)), 0)
    b1 = g.tensor((c2,), "int32", list(s0 * w1s), 0, rng.integers(-500, 500, size=c2))
    a1 = g.tensor((1, h, w, c2), "int8", s1, int(rng.integers(-128, 0)))
    o = fb.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.fusedActivationFunction = 0, 1, 1, 1
    o.dilationHFactor = o.dilationWFactor = 1
    g.op("CONV_2D", [x, w1, b1], [a1], o)
    w2s = rng.uniform(0.005, 0.05, size=c2)
    s2 = _output_scale(rng, s1, float(w2s.mean()), 9)
    w2 = g.tensor((1, 3, 3, c2), "int8", list(w2s), 0, rng.integers(-127, 128, size=(1, 3, 3, c2)), 3)
    b2 = g.tensor((c2,), "int32", list(s1 * w2s), 0, rng.integers(-500, 500, size=c2))
    a2 = g.tensor((1, h, w, c2), "int8", s2, int(rng.integers(-128, 0)))
    d = fb.DepthwiseConv2DOptionsT()
    d.padding, d.strideH, d.strideW, d.depthMultiplier, d.fusedActivationFunction = 0, 1, 1, 1, 3
    d.dilationHFactor = d.dilationWFactor = 1
    g.op("DEPTHWISE_CONV_2D", [a1, w2, b2], [a2], d)
    ph, pw = h // 2, w // 2
    a3 = g.tensor((1, ph, pw, c2), "int8", s2, g.tensors[a2].quantization.zeroPoint[0])
    p = fb.Pool2DOptionsT()
    p.padding, p.strideH, p.strideW, p.filterHeight, p.filterWidth = 1, 2, 2, 2, 2
    g.op("AVERAGE_POOL_2D", [a2], [a3], p)
    flat = ph * pw * c2
    shape = g.tensor((2,), "int32", data=np.array([1, flat], dtype=np.int32))
    a4 = g.tensor((1, flat), "int8", s2, g.tensors[a2].quantization.zeroPoint[0])
    r = fb.ReshapeOptionsT()
    r.newShape = [1, flat]
    g.op("RESHAPE", [a3, shape], [a4], r)
    units = 10
    w5s = float(rng.uniform(0.005, 0.05))
    s5 = _output_scale(rng, s2, w5s, flat)
    w5 = g.tensor((units, flat), "int8", w5s, 0, rng.integers(-127, 128, size=(units, flat)))
    b5 = g.tensor((units,), "int32", s2 * w5s, 0, rng.integers(-500, 500, size=units))
    a5 = g.tensor((1, units), "int8", s5, int(rng.integers(-128, 128)))
    f = fb.FullyConnectedOptionsT()
    g.op("FULLY_CONNECTED", [a4, w5, b5], [a5], f)
    y = g.tensor((1, units), "int8", 1.0 / 256, -128)
    sm = fb.SoftmaxOptionsT()
    sm.beta = 1.0
    g.op("SOFTMAX", [a5], [y], sm)
    return g.build([x], [y])


def random_add(rng: np.random.Generator, dtype: str = "int8", opcode: str = "ADD") -> bytes:
    """ADD or MUL with random scales, zero points (int8) and broadcasting."""
    g = GraphBuilder()
    rank = int(rng.integers(1, 5))
    out_shape = tuple(int(d) for d in rng.integers(1, 6, size=rank))

    def operand_shape() -> tuple[int, ...]:
        keep = int(rng.integers(0, rank + 1))
        shape = [1 if rng.random() < 0.3 else d for d in out_shape[rank - keep:]]
        return tuple(shape) if shape else (1,)

    a_shape, b_shape = operand_shape(), operand_shape()
    if rng.random() < 0.5:
        a_shape = out_shape
    out_shape = tuple(int(d) for d in np.broadcast_shapes(a_shape, b_shape))

    def zp() -> int:
        return 0 if dtype == "int16" else int(rng.integers(-128, 128))

    def scale() -> float:
        return float(rng.uniform(0.01, 0.2)) / (256.0 if dtype == "int16" else 1.0)

    a = g.tensor(a_shape, dtype, scale(), zp())
    b = g.tensor(b_shape, dtype, scale(), zp())
    if opcode == "MUL":
        sa, sb = g.tensors[a].quantization.scale[0], g.tensors[b].quantization.scale[0]
        full_range = 128 if dtype == "int8" else 32768
        y = g.tensor(out_shape, dtype, sa * sb * full_range * float(rng.uniform(0.05, 1.0)), zp())
        opt = fb.MulOptionsT()
    else:
        y = g.tensor(out_shape, dtype, scale() * float(rng.uniform(1.0, 3.0)), zp())
        opt = fb.AddOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op(opcode, [a, b], [y], opt)
    return g.build([a, b], [y])


GENERATORS["ADD"] = random_add
GENERATORS["ADD_INT16"] = lambda rng: random_add(rng, "int16")

GENERATORS["CONV_2D_INT16"] = lambda rng: random_conv(rng, dtype="int16")
GENERATORS["DEPTHWISE_CONV_2D_INT16"] = lambda rng: random_conv(rng, depthwise=True, dtype="int16")
GENERATORS["FULLY_CONNECTED_INT16"] = lambda rng: random_fully_connected(rng, "int16")
GENERATORS["MAX_POOL_2D_INT16"] = lambda rng: random_pool(rng, "MAX_POOL_2D", "int16")
GENERATORS["AVERAGE_POOL_2D_INT16"] = lambda rng: random_pool(rng, "AVERAGE_POOL_2D", "int16")
GENERATORS["SOFTMAX_INT16"] = lambda rng: random_softmax(rng, "int16")


def random_quantize(rng: np.random.Generator) -> bytes:
    """float32 -> int8/int16, or int8/int16 -> int8/int16 requantization."""
    g = GraphBuilder()
    shape = tuple(int(d) for d in rng.integers(1, 8, size=int(rng.integers(1, 4))))
    src = str(rng.choice(["float32", "int8", "int16"]))
    dst = str(rng.choice(["int8", "int16"]))

    def qp(dtype: str) -> tuple[float, int]:
        return _activation_qparams(rng, dtype)

    x = g.tensor(shape, src) if src == "float32" else g.tensor(shape, src, *qp(src))
    y = g.tensor(shape, dst, *qp(dst))
    g.op("QUANTIZE", [x], [y])
    return g.build([x], [y])


def random_dequantize(rng: np.random.Generator) -> bytes:
    g = GraphBuilder()
    shape = tuple(int(d) for d in rng.integers(1, 8, size=int(rng.integers(1, 4))))
    src = str(rng.choice(["int8", "int16"]))
    x = g.tensor(shape, src, *_activation_qparams(rng, src))
    y = g.tensor(shape, "float32")
    g.op("DEQUANTIZE", [x], [y])
    return g.build([x], [y])


GENERATORS["QUANTIZE"] = random_quantize
GENERATORS["DEQUANTIZE"] = random_dequantize
GENERATORS["MUL"] = lambda rng: random_add(rng, "int8", "MUL")
GENERATORS["MUL_INT16"] = lambda rng: random_add(rng, "int16", "MUL")


def random_pad(rng: np.random.Generator, dtype: str = "int8") -> bytes:
    g = GraphBuilder()
    rank = int(rng.integers(1, 5))
    shape = tuple(int(d) for d in rng.integers(1, 6, size=rank))
    pads = rng.integers(0, 3, size=(rank, 2)).astype(np.int32)
    out_shape = tuple(int(d + a + b) for d, (a, b) in zip(shape, pads, strict=True))
    scale, zp = _activation_qparams(rng, dtype)
    x = g.tensor(shape, dtype, scale, zp)
    p = g.tensor((rank, 2), "int32", data=pads)
    y = g.tensor(out_shape, dtype, scale, zp)
    if rng.random() < 0.5:
        value = g.tensor((1,), dtype, scale, zp, data=rng.integers(-100, 100, size=1).astype(dtype))
        g.op("PADV2", [x, p, value], [y], fb.PadV2OptionsT())
    else:
        g.op("PAD", [x, p], [y], fb.PadOptionsT())
    return g.build([x], [y])


def random_concatenation(rng: np.random.Generator, dtype: str = "int8") -> bytes:
    g = GraphBuilder()
    rank = int(rng.integers(1, 5))
    base = [int(d) for d in rng.integers(1, 5, size=rank)]
    axis = int(rng.integers(0, rank))
    n = int(rng.integers(2, 4))
    scale, zp = _activation_qparams(rng, dtype)
    inputs = []
    for _ in range(n):
        shape = list(base)
        shape[axis] = int(rng.integers(1, 4))
        inputs.append(g.tensor(tuple(shape), dtype, scale, zp))
    out = list(base)
    out[axis] = sum(int(g.tensors[i].shape[axis]) for i in inputs)
    y = g.tensor(tuple(out), dtype, scale, zp)
    opt = fb.ConcatenationOptionsT()
    opt.axis = axis - rank if rng.random() < 0.3 else axis
    g.op("CONCATENATION", inputs, [y], opt)
    return g.build(inputs, [y])


GENERATORS["PAD"] = random_pad
GENERATORS["PAD_INT16"] = lambda rng: random_pad(rng, "int16")
GENERATORS["CONCATENATION"] = random_concatenation
GENERATORS["CONCATENATION_INT16"] = lambda rng: random_concatenation(rng, "int16")


def random_logistic(rng: np.random.Generator) -> bytes:
    g = GraphBuilder()
    shape = tuple(int(d) for d in rng.integers(1, 8, size=int(rng.integers(1, 4))))
    x = g.tensor(shape, "int8", float(rng.uniform(0.005, 0.3)), int(rng.integers(-128, 128)))
    y = g.tensor(shape, "int8", 1.0 / 256, -128)
    g.op("LOGISTIC", [x], [y])
    return g.build([x], [y])


GENERATORS["LOGISTIC"] = random_logistic


def _logistic_int16_input_scale(rng: np.random.Generator) -> float:
    """TFLM's int16 LOGISTIC has a special case for an input scale of (about)
    2^-12 and truncates the rescaling multiplier otherwise: cover both, other
    powers of two, and scales whose range reaches saturation (|x| > ~10.7)."""
    kind = int(rng.integers(0, 6))
    if kind == 0:  # exactly or nearly 2^-12 (CheckedLog2 tolerance is 1e-3 in log2)
        return 2.0**-12 * float(rng.choice([1.0, 1.0, 1.0004, 0.9996, 1.002, 0.998]))
    if kind == 1:  # other powers of two, and 3 * 2^k
        return float(rng.choice([1.0, 3.0])) * 2.0 ** int(rng.integers(-17, -6))
    if kind == 2:  # beyond +-10.7: part of the range saturates
        return float(np.exp(rng.uniform(np.log(4e-4), np.log(2.5))))
    if kind == 3:  # tiny inputs around sigmoid(0)
        return float(np.exp(rng.uniform(np.log(1e-8), np.log(1e-5))))
    return float(np.exp(rng.uniform(np.log(1e-5), np.log(4e-4))))


def random_logistic_int16(rng: np.random.Generator) -> bytes:
    g = GraphBuilder()
    shape = tuple(int(d) for d in rng.integers(1, 10, size=int(rng.integers(1, 4))))
    out_scale = 1.0 / 32768 * (1.0 + 1e-4 if rng.random() < 0.1 else 1.0)  # within TFLM's log2 tolerance
    x = g.tensor(shape, "int16", _logistic_int16_input_scale(rng), 0)
    y = g.tensor(shape, "int16", out_scale, 0)
    g.op("LOGISTIC", [x], [y])
    return g.build([x], [y])


GENERATORS["LOGISTIC_INT16"] = random_logistic_int16


def random_mean(rng: np.random.Generator, dtype: str = "int8") -> bytes:
    """MEAN over random axes, exercising all three TFLM paths."""
    g = GraphBuilder()
    path = int(rng.integers(1, 4))
    if path == 1:
        shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 6)))
        axes, keep = [1, 2], True
    else:
        rank = int(rng.integers(1, 5))
        shape = tuple(int(d) for d in rng.integers(1, 6, size=rank))
        axes = sorted({int(a) for a in rng.integers(0, rank, size=int(rng.integers(1, rank + 1)))})
        keep = bool(rng.random() < 0.5)
    out_shape = tuple((1 if i in axes else d) for i, d in enumerate(shape)) if keep else tuple(
        d for i, d in enumerate(shape) if i not in axes)
    s_in, z_in = _activation_qparams(rng, dtype)
    s_out, z_out = (s_in, z_in) if path == 2 else _activation_qparams(rng, dtype)
    x = g.tensor(shape, dtype, s_in, z_in)
    a = g.tensor((len(axes),), "int32", data=np.array(axes, dtype=np.int32))
    y = g.tensor(out_shape or (1,), dtype, s_out, z_out)
    opt = fb.ReducerOptionsT()
    opt.keepDims = keep
    g.op("MEAN", [x, a], [y], opt)
    return g.build([x], [y])


GENERATORS["MEAN"] = random_mean
GENERATORS["MEAN_INT16"] = lambda rng: random_mean(rng, "int16")


def _conv_layer(g: GraphBuilder, rng: np.random.Generator, x: int, in_c: int, out_c: int, hw: tuple[int, int],
                dtype: str, depthwise: bool, with_bias: bool = True) -> tuple[int, float]:
    """A 3x3 depthwise (multiplier 1) or 1x1 CONV_2D, stride 1 and SAME padding, from tensor x; returns its
    output tensor and that tensor's scale."""
    in_scale = g.tensors[x].quantization.scale[0]
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    k = 3 if depthwise else 1
    shape = (1, k, k, out_c) if depthwise else (out_c, k, k, in_c)
    weights = rng.integers(-127, 128, size=shape, dtype=np.int8)
    fan_in = k * k * (1 if depthwise else in_c)
    out_scale = _output_scale(rng, in_scale, float(w_scales.mean()), fan_in)
    if dtype == "int16":  # sums of int16 values span more than int8's: without this the scales of a chain
        out_scale *= 16   # shrink until TFLM's prepare refuses them (no_integer_overflow_from_quantization)
    out_zp = 0 if dtype == "int16" else int(rng.integers(-128, 128))
    f = g.tensor(shape, "int8", list(w_scales), 0, weights, quantized_dimension=3 if depthwise else 0)
    bias_type = "int64" if dtype == "int16" else "int32"
    bias = rng.integers(-2000, 2000, size=out_c).astype(bias_type)
    b = g.tensor((out_c,), bias_type, list(in_scale * w_scales), 0, bias) if with_bias else -1
    y = g.tensor((1, *hw, out_c), dtype, out_scale, out_zp)
    opt = fb.DepthwiseConv2DOptionsT() if depthwise else fb.Conv2DOptionsT()
    if depthwise:
        opt.depthMultiplier = 1
    opt.padding, opt.strideH, opt.strideW = 0, 1, 1
    opt.dilationHFactor = opt.dilationWFactor = 1
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, f, b], [y], opt)
    return y, out_scale


def random_dead_channel_chain(rng: np.random.Generator, dtype: str = "int8", depthwise_layers: int = 1,
                              dead: int = 5, producer_bias: bool = True,
                              also_output: bool = False) -> tuple[bytes, int]:
    """1x1 conv -> `depthwise_layers` 3x3 depthwise convs -> 1x1 conv, the last conv's filter zero on `dead`
    random input channels (all of them if `dead` is the count), as MobileNet's trained layers have them;
    `also_output` makes the first conv's output a model output too. Returns the model and the channel count."""
    g = GraphBuilder()
    h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    in_c, mid_c, out_c = int(rng.integers(1, 6)), int(rng.integers(max(dead, 2), 24)), int(rng.integers(1, 9))
    in_scale, in_zp = _activation_qparams(rng, dtype)
    x = g.tensor((1, h, w, in_c), dtype, in_scale, in_zp)
    first, _ = _conv_layer(g, rng, x, in_c, mid_c, (h, w), dtype, depthwise=False, with_bias=producer_bias)
    t = first
    for _ in range(depthwise_layers):
        t, _ = _conv_layer(g, rng, t, mid_c, mid_c, (h, w), dtype, depthwise=True)
    y, _ = _conv_layer(g, rng, t, mid_c, out_c, (h, w), dtype, depthwise=False)
    filt = g.buffers[g.tensors[g.operators[-1].inputs[1]].buffer]
    weights = np.frombuffer(filt.data, dtype=np.int8).reshape(out_c, 1, 1, mid_c).copy()
    weights[..., rng.choice(mid_c, size=dead, replace=False)] = 0
    filt.data = weights.tobytes()
    return g.build([x], [y, first] if also_output else [y]), mid_c

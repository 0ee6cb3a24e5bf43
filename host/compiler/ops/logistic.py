"""LOGISTIC.

int8 -> int8 (output 1/256, -128): TFLM rescales the input to Q4.27 and runs
gemmlowp's fixed-point logistic.

int16 -> int16 (16x8: zero points 0, output scale 2^-15): TFLM rescales the
input so that 1.0 is 3 * 4096 units, then interpolates linearly in a 256-entry
table of sigmoid(i / 24) in 0.16 fixed point (512 units per entry; |x| beyond
255/24 ~ 10.6 saturates).  The compiler computes the rescaling exactly as TFLM's Prepare does and
the table itself, and stores both in the op's params.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np

from host.compiler import quant
from host.compiler.ops.base import (
    LoweredOp,
    OpContext,
    expect_quantized,
    qparams,
    register,
    same_activation_type,
)

INPUT_INTEGER_BITS = 4
INT16_INPUT_INTEGER_BITS = 3
INT16_OUTPUT_FRACTIONAL_BITS = 15
SIGMOID_TABLE_ENTRIES = 256  # sigmoid(i / 24), i = 0..255, in 0.16 fixed point

_F32 = np.float32
_libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
_libm.logf.restype = ctypes.c_float
_libm.logf.argtypes = [ctypes.c_float]


def _params(input_scale: float) -> tuple[int, int, int]:
    """TFLM's Prepare: frexp of scale * 2^27 without renormalisation, then the input radius."""
    mantissa, left_shift = math.frexp(quant.f32(input_scale) * float(1 << (31 - INPUT_INTEGER_BITS)))
    multiplier = quant.tflite_round(mantissa * (1 << 31))
    multiplier = (multiplier + 2**31) % 2**32 - 2**31  # static_cast<int32_t> of 2^31 wraps
    max_rescaled = ((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS)) / 2.0**left_shift
    return multiplier, left_shift, math.floor(max_rescaled)


def checked_log2(x: float) -> tuple[bool, int]:
    """TFLM's CheckedLog2 in float32: is x a power of two (within 1e-3 in log2), and which."""
    x_log2 = _F32(_F32(_libm.logf(float(_F32(x)))) * _F32(_F32(1.0) / _F32(_libm.logf(2.0))))
    rounded = _F32(quant.tflite_round(float(x_log2)))
    fraction = _F32(x_log2 - rounded)
    return bool(abs(fraction) < _F32(1e-3)), int(rounded)


def int16_params(input_scale: float) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) as TFLM's int16 Prepare computes them.

    An input scale of (about) 2^-12 is the "power of two" case: multiplier 0,
    which the kernel turns into x * 3.  Otherwise the real multiplier
    scale * 3 * 4096 is doubled (counting the shift) until it exceeds 32767/2,
    then truncated to an integer."""
    is_pot, log2_rounded = checked_log2(input_scale)
    if is_pot and (15 - INT16_INPUT_INTEGER_BITS) + log2_rounded == 0:
        return 0, 0
    multiplier = quant.f32(input_scale) * 4096.0 * 3.0
    left_shift = 0
    while multiplier <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        multiplier *= 2.0
    return int(multiplier), left_shift


def sigmoid_table() -> list[int]:
    """sigmoid(i / 24) * 2^16 for i = 0..255, each entry raised by half the error
    that linear interpolation makes at the middle of its interval (so the
    interpolation error is balanced), rounded; the last entry is the top of the
    0.16 range.  Matches the table TFLM's kernel reads (the rounding margins are
    all > 0.004, so double precision decides every entry)."""

    def scaled(x: float) -> float:
        return 65536.0 / (1.0 + math.exp(-x / 24.0))

    table = []
    for i in range(SIGMOID_TABLE_ENTRIES - 1):
        value, following, middle = scaled(i), scaled(i + 1), scaled(i + 0.5)
        table.append(quant.tflite_round(value + (middle - (value + following) / 2.0) / 2.0))
    table.append(65535)
    return table


def _int16_problems(ctx: OpContext) -> list[str]:
    inp, out = ctx.input(0), ctx.output()
    problems = []
    in_scale, in_zero = qparams(inp)
    out_scale, out_zero = qparams(out)
    if in_zero != 0:
        problems.append(f"int16 input '{inp.name}' must have zero point 0 (16x8 quantization), got {in_zero}")
    if out_zero != 0:
        problems.append(f"int16 output '{out.name}' must have zero point 0 (16x8 quantization), got {out_zero}")
    if not in_scale > 0:
        problems.append(f"int16 input '{inp.name}' must have a positive scale (got {in_scale:g})")
    else:
        multiplier, left_shift = int16_params(in_scale)
        if multiplier > 32767:
            problems.append(f"int16 input scale {in_scale:g} is too large: TFLM requires scale * 3 * 4096 <= 32767")
        elif multiplier == 0 and left_shift != 0:
            problems.append(f"int16 input scale {in_scale:g} is too small")
    is_pot, log2_rounded = checked_log2(out_scale) if out_scale > 0 else (False, 0)
    if not is_pot or log2_rounded != -INT16_OUTPUT_FRACTIONAL_BITS:
        problems.append(f"int16 output must have scale 1/32768 (2^-15) and zero point 0 "
                        f"(got {out_scale:g}, {out_zero})")
    return problems


@register("LOGISTIC")
class Logistic:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        inp, out, problems = same_activation_type(ctx)
        if problems:
            return problems
        assert inp is not None and out is not None
        if math.prod(inp.shape) != math.prod(out.shape):
            return [f"input shape {list(inp.shape)} and output shape {list(out.shape)} differ in size"]
        problems += expect_quantized(inp, "input") + expect_quantized(out, "output")
        if problems:
            return problems
        if inp.dtype == "int16":
            return _int16_problems(ctx)
        scale, zero = qparams(out)
        if zero != -128 or abs(scale - 1 / 256) > 1e-3 / 256:
            problems.append(f"int8 output must have scale 1/256 and zero point -128 (got {scale:g}, {zero})")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        scale, zero = qparams(ctx.input(0))
        if ctx.input(0).dtype == "int16":
            multiplier, left_shift = int16_params(scale)
            return LoweredOp(
                kind="TM_OP_LOGISTIC",
                params_type="tm_logistic_params_t",
                fields={"input_multiplier": multiplier, "input_left_shift": left_shift},
                arrays={"sigmoid_lut": ("uint16_t", sigmoid_table())},
            )
        multiplier, left_shift, radius = _params(scale)
        return LoweredOp(
            kind="TM_OP_LOGISTIC",
            params_type="tm_logistic_params_t",
            fields={"input_zero_point": zero, "input_range_radius": radius,
                    "input_multiplier": multiplier, "input_left_shift": left_shift},
        )

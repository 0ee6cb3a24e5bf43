"""LOGISTIC, int8 (TFLM: input rescaled to Q4.27, gemmlowp logistic, output 1/256, -128)."""

from __future__ import annotations

import math

from host.compiler import quant
from host.compiler.ops.base import LoweredOp, OpContext, expect_dtype, expect_quantized, qparams, register

INPUT_INTEGER_BITS = 4


def _params(input_scale: float) -> tuple[int, int, int]:
    """TFLM's Prepare: frexp of scale * 2^27 without renormalisation, then the input radius."""
    mantissa, left_shift = math.frexp(quant.f32(input_scale) * float(1 << (31 - INPUT_INTEGER_BITS)))
    multiplier = quant.tflite_round(mantissa * (1 << 31))
    multiplier = (multiplier + 2**31) % 2**32 - 2**31  # static_cast<int32_t> of 2^31 wraps
    max_rescaled = ((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS)) / 2.0**left_shift
    return multiplier, left_shift, math.floor(max_rescaled)


@register("LOGISTIC")
class Logistic:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        inp, out = ctx.tensor(0), ctx.tensor(0, outputs=True)
        problems = expect_dtype(inp, "input", ("int8",)) + expect_dtype(out, "output", ("int8",))
        if problems:
            if inp is not None and inp.dtype == "int16":
                problems.append("int16 LOGISTIC (TFLM's sigmoid table) is not supported yet")
            return problems
        problems += expect_quantized(inp, "input") + expect_quantized(out, "output")
        if not problems:
            scale, zero = qparams(ctx.output())
            if zero != -128 or abs(scale - 1 / 256) > 1e-3 / 256:
                problems.append(f"int8 output must have scale 1/256 and zero point -128 (got {scale:g}, {zero})")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        scale, zero = qparams(ctx.input(0))
        multiplier, left_shift, radius = _params(scale)
        return LoweredOp(
            kind="TM_OP_LOGISTIC",
            params_type="tm_logistic_params_t",
            fields={"input_zero_point": zero, "input_range_radius": radius,
                    "input_multiplier": multiplier, "input_left_shift": left_shift},
        )

"""SOFTMAX, int8 in, int8 out (TFLM requires output scale 1/256, zero point -128)."""

from __future__ import annotations

from host.compiler import quant
from host.compiler.ops.base import LoweredOp, OpContext, expect_dtype, expect_quantized, qparams, register


@register("SOFTMAX")
class Softmax:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = expect_dtype(ctx.tensor(0), "input", ("int8",))
        problems += expect_dtype(ctx.tensor(0, outputs=True), "output", ("int8",))
        if problems:
            return problems
        problems += expect_quantized(ctx.input(0), "input") + expect_quantized(ctx.output(), "output")
        if problems:
            return problems
        scale, zero = qparams(ctx.output())
        if zero != -128 or abs(scale - 1.0 / 256) > 1e-8 * 256:
            problems.append(f"int8 output must have scale 1/256 and zero point -128 (got {scale}, {zero})")
        beta = float(ctx.option(0, "f", 1.0))
        if beta * qparams(ctx.input(0))[0] * (1 << 26) <= 1.0:
            problems.append("beta * input scale is too small for the fixed-point softmax")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        beta = float(ctx.option(0, "f", 1.0))
        multiplier, left_shift, diff_min = quant.softmax_int8_params(beta, qparams(ctx.input(0))[0])
        return LoweredOp(
            kind="TM_OP_SOFTMAX",
            params_type="tm_softmax_params_t",
            fields={"input_multiplier": multiplier, "input_left_shift": left_shift, "diff_min": diff_min},
        )

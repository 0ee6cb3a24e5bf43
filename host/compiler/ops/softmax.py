"""SOFTMAX: int8 -> int8 (output scale 1/256, zero point -128) and
int16 -> int16 (output scale 1/32768, zero point 0), as TFLM requires."""

from __future__ import annotations

from host.compiler import quant
from host.compiler.lut import softmax_int16_luts
from host.compiler.ops.base import LoweredOp, OpContext, activation_problems, qparams, register

OUTPUT_QUANT = {"int8": (1.0 / 256, -128), "int16": (1.0 / 32768, 0)}


@register("SOFTMAX")
class Softmax:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = activation_problems(ctx)
        if problems:
            return problems
        dtype = ctx.output().dtype
        scale, zero = qparams(ctx.output())
        want_scale, want_zero = OUTPUT_QUANT[dtype]
        if zero != want_zero or abs(scale - want_scale) > 0.001 * want_scale:
            problems.append(f"{dtype} output must have scale {want_scale:g} and zero point {want_zero} "
                            f"(got {scale:g}, {zero})")
        beta = float(ctx.option(0, "f", 1.0))
        if dtype == "int8" and beta * qparams(ctx.input(0))[0] * (1 << 26) <= 1.0:
            problems.append("beta * input scale is too small for the fixed-point softmax")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        beta = float(ctx.option(0, "f", 1.0))
        input_scale = qparams(ctx.input(0))[0]
        if ctx.input(0).dtype == "int16":
            # [-65535, 0] of the rescaled difference corresponds to [-10, 0].
            multiplier, shift = quant.quantize_multiplier(quant.f32(input_scale) * quant.f32(beta) / (10.0 / 65535.0))
            exp_lut, reciprocal_lut = softmax_int16_luts()
            return LoweredOp(
                kind="TM_OP_SOFTMAX",
                params_type="tm_softmax_params_t",
                fields={"input_multiplier": multiplier, "input_left_shift": shift, "diff_min": 0},
                arrays={"exp_lut": ("int16_t", exp_lut), "one_over_one_plus_x_lut": ("int16_t", reciprocal_lut)},
            )
        multiplier, left_shift, diff_min = quant.softmax_int8_params(beta, input_scale)
        return LoweredOp(
            kind="TM_OP_SOFTMAX",
            params_type="tm_softmax_params_t",
            fields={"input_multiplier": multiplier, "input_left_shift": left_shift, "diff_min": diff_min},
        )

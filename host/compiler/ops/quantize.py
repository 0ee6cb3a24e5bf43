"""QUANTIZE (float32 -> int8/int16, int <-> int requantize) and DEQUANTIZE (int -> float32)."""

from __future__ import annotations

from host.compiler import quant
from host.compiler.ops.base import LoweredOp, OpContext, expect_dtype, expect_quantized, qparams, register

INTS = ("int8", "int16")


def _same_shape(ctx: OpContext) -> list[str]:
    if ctx.input(0).shape != ctx.output().shape:
        return [f"input shape {ctx.input(0).shape} differs from output {ctx.output().shape}"]
    return []


@register("QUANTIZE")
class Quantize:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = expect_dtype(ctx.tensor(0), "input", ("float32", *INTS))
        problems += expect_dtype(ctx.tensor(0, outputs=True), "output", INTS)
        if problems:
            return problems
        problems += expect_quantized(ctx.output(), "output")
        if ctx.input(0).dtype != "float32":
            problems += expect_quantized(ctx.input(0), "input")
        return problems + _same_shape(ctx)

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        out_scale, out_zp = qparams(ctx.output())
        fields: dict[str, int | str] = {"scale": f"{quant.f32(out_scale)!r}f", "zero_point": out_zp}
        if ctx.input(0).dtype != "float32":
            in_scale, in_zp = qparams(ctx.input(0))
            multiplier, shift = quant.quantize_multiplier(quant.f32(in_scale) / quant.f32(out_scale))
            fields.update(input_offset=-in_zp, output_offset=out_zp, multiplier=multiplier, shift=shift)
        return LoweredOp(kind="TM_OP_QUANTIZE", params_type="tm_quantize_params_t", fields=fields)


@register("DEQUANTIZE")
class Dequantize:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = expect_dtype(ctx.tensor(0), "input", INTS)
        problems += expect_dtype(ctx.tensor(0, outputs=True), "output", ("float32",))
        if problems:
            return problems
        return problems + expect_quantized(ctx.input(0), "input") + _same_shape(ctx)

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        scale, zero = qparams(ctx.input(0))
        return LoweredOp(
            kind="TM_OP_DEQUANTIZE",
            params_type="tm_quantize_params_t",
            fields={"scale": f"{quant.f32(scale)!r}f", "zero_point": zero},
        )

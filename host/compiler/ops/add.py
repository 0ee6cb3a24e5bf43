"""ADD, int8 and int16 (TFLM: 20 bits of headroom for int8, 15 for int16)."""

from __future__ import annotations

from host.compiler import quant
from host.compiler.ops.base import LoweredOp, OpContext, expect_activation, expect_quantized, qparams, register
from host.compiler.ops.broadcast import broadcast_problems


@register("ADD")
class Add:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        tensors = [ctx.tensor(0), ctx.tensor(1), ctx.tensor(0, outputs=True)]
        if any(t is None for t in tensors):
            return ["needs two inputs and one output"]
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) != 1 or not dtypes <= {"int8", "int16"}:
            return [f"inputs/output must all be int8 or all int16, got {[t.dtype for t in tensors]}"]
        problems = []
        for name, t in zip(("input 1", "input 2", "output"), tensors, strict=True):
            problems += expect_quantized(t, name)
        problems += expect_activation(ctx.activation(0))
        problems += broadcast_problems(ctx.input(0).shape, ctx.input(1).shape, ctx.output().shape)
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        (s1, z1), (s2, z2), (so, zo) = qparams(ctx.input(0)), qparams(ctx.input(1)), qparams(ctx.output())
        dtype = ctx.output().dtype
        left_shift = 15 if dtype == "int16" else 20
        twice_max = 2 * max(quant.f32(s1), quant.f32(s2))
        m1, sh1 = quant.quantize_multiplier(quant.f32(s1) / twice_max)
        m2, sh2 = quant.quantize_multiplier(quant.f32(s2) / twice_max)
        mo, sho = quant.quantize_multiplier(twice_max / ((1 << left_shift) * quant.f32(so)))
        act_min, act_max = quant.activation_range(ctx.activation(0), dtype, so, zo)
        return LoweredOp(
            kind="TM_OP_ADD",
            params_type="tm_add_params_t",
            fields={
                "input1_offset": -z1, "input2_offset": -z2, "output_offset": zo,
                "input1_multiplier": m1, "input2_multiplier": m2, "output_multiplier": mo,
                "input1_shift": sh1, "input2_shift": sh2, "output_shift": sho,
                "left_shift": left_shift, "act_min": act_min, "act_max": act_max,
            },
        )

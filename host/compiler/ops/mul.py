"""MUL, int8 and int16: one multiplier s1 * s2 / s_out (in double), as TFLM."""

from __future__ import annotations

from host.compiler import quant
from host.compiler.ops.base import LoweredOp, OpContext, expect_activation, expect_quantized, qparams, register
from host.compiler.ops.broadcast import broadcast_problems


def elementwise_binary_problems(ctx: OpContext) -> list[str]:
    """Two same-typed int8/int16 inputs and output, quantized, broadcastable."""
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
    return problems + broadcast_problems(ctx.input(0).shape, ctx.input(1).shape, ctx.output().shape)


@register("MUL")
class Mul:
    check = staticmethod(elementwise_binary_problems)

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        (s1, z1), (s2, z2), (so, zo) = qparams(ctx.input(0)), qparams(ctx.input(1)), qparams(ctx.output())
        multiplier, shift = quant.quantize_multiplier(quant.f32(s1) * quant.f32(s2) / quant.f32(so))
        act_min, act_max = quant.activation_range(ctx.activation(0), ctx.output().dtype, so, zo)
        return LoweredOp(
            kind="TM_OP_MUL",
            params_type="tm_mul_params_t",
            fields={
                "input1_offset": -z1, "input2_offset": -z2, "output_offset": zo,
                "output_multiplier": multiplier, "output_shift": shift,
                "act_min": act_min, "act_max": act_max,
            },
        )

"""ADD, int8 and int16 (TFLM: 20 bits of headroom for int8, 15 for int16)."""

from __future__ import annotations

import math

from host.compiler import quant
from host.compiler.kernel_table import row_of
from host.compiler.ops.base import LoweredOp, OpContext, qparams, register
from host.compiler.ops.mul import elementwise_binary_problems
from host.compiler.scratch import NEXT, per_kernel

DSP_ADD_TABLE_MIN_ELEMENTS = 256   # ops_dsp/add.c ADD_TABLE_MIN_ELEMENTS
DSP_ADD_TABLE_ENTRIES = 256        # ADD_TABLE_ENTRIES
DSP_ADD_S16_BLOCK = 128            # ADD_S16_BLOCK


def add_scratch_bytes(kernel: str, in1: tuple[int, ...], in2: tuple[int, ...], out: tuple[int, ...],
                      dtype: str) -> int:
    """tm_add_<kernel>_scratch_bytes: bytes of scratch the kernel holds for ADD of these shapes, or NEXT."""
    count = math.prod(out)
    same = math.prod(in1) == count and math.prod(in2) == count
    if not row_of("TM_OP_ADD").takes(kernel, dtype) or not same:
        return NEXT
    if kernel == "mve":
        return 0
    if kernel == "dsp" and dtype == "int16":
        return DSP_ADD_S16_BLOCK * 4
    if kernel == "dsp":
        return 2 * DSP_ADD_TABLE_ENTRIES * 4 if count >= DSP_ADD_TABLE_MIN_ELEMENTS else NEXT
    raise ValueError(f"ADD has no {kernel} kernel with scratch")


@register("ADD")
class Add:
    check = staticmethod(elementwise_binary_problems)

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
        shapes = tuple(tuple(t.shape) for t in (ctx.input(0), ctx.input(1), ctx.output()))
        scratch = per_kernel(row_of("TM_OP_ADD"), lambda kernel: add_scratch_bytes(kernel, *shapes, dtype))
        return LoweredOp(
            kind="TM_OP_ADD",
            params_type="tm_add_params_t",
            fields={
                "input1_offset": -z1, "input2_offset": -z2, "output_offset": zo,
                "input1_multiplier": m1, "input2_multiplier": m2, "output_multiplier": mo,
                "input1_shift": sh1, "input2_shift": sh2, "output_shift": sho,
                "left_shift": left_shift, "act_min": act_min, "act_max": act_max,
            },
            scratch=scratch,
        )

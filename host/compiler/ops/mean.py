"""MEAN (int8, int16): the compiler picks the arithmetic path TFLM takes.

1. int8, keep_dims and a 4-D input reduced over axes {1, 2}: integer rescale
   by s_in/s_out (QuantizeMultiplier) and a rounded division by the count.
2. everything else (int16 always): integer only, the count folded into the multiplier
   (shift = min(floor(log2 n), 32, 31 + s); M' = (M << shift) / n).
   Determined against the pip tflite-micro interpreter: the float path in
   older TFLM sources does not match it.
"""

from __future__ import annotations

import numpy as np

from host.compiler import quant
from host.compiler.ops.base import LoweredOp, OpContext, activation_problems, qparams, register
from host.compiler.ops.broadcast import MAX_RANK


def _axes(ctx: OpContext) -> list[int] | None:
    t = ctx.tensor(1)
    if t is None or t.data is None or t.dtype != "int32":
        return None
    rank = len(ctx.input(0).shape)
    return sorted({int(a) + rank if int(a) < 0 else int(a) for a in t.array().ravel()})


@register("MEAN")
class Mean:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = activation_problems(ctx)
        axes = _axes(ctx)
        if axes is None:
            return problems + ["axis must be a constant int32 tensor"]
        in_shape, out_shape = ctx.input(0).shape, ctx.output().shape
        if len(in_shape) > MAX_RANK or any(not 0 <= a < len(in_shape) for a in axes):
            return problems + [f"axes {axes} invalid for input rank {len(in_shape)}"]
        kept = [d for i, d in enumerate(in_shape) if i not in axes]
        if int(np.prod(kept)) != int(np.prod(out_shape)):
            problems.append(f"output shape {out_shape} is not input {in_shape} reduced over {axes}")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        axes = _axes(ctx) or []
        (s_in, z_in), (s_out, z_out) = qparams(ctx.input(0)), qparams(ctx.output())
        keep_dims = bool(ctx.option(0, "B", 0))
        spatial_4d = len(ctx.input(0).shape) == 4 and axes == [1, 2]
        multiplier, shift = quant.quantize_multiplier(quant.f32(s_in) / quant.f32(s_out))
        mode = 1 if keep_dims and spatial_4d and ctx.input(0).dtype == "int8" else 2
        if mode == 2:
            count = int(np.prod([ctx.input(0).shape[a] for a in axes]))
            fold = min(count.bit_length() - 1, 32, 31 + shift)
            multiplier, shift = (multiplier << fold) // count, shift - fold
        return LoweredOp(
            kind="TM_OP_MEAN",
            params_type="tm_mean_params_t",
            fields={
                "mode": mode, "reduce_mask": sum(1 << a for a in axes),
                "multiplier": multiplier, "shift": shift,
                "input_zero_point": z_in, "output_zero_point": z_out,
            },
            used_inputs=(0,),
        )

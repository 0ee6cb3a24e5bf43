"""FULLY_CONNECTED: int8 or int16 (16x8) activations, int8 weights (per-tensor or per-channel)."""

from __future__ import annotations

import numpy as np

from host.compiler import quant
from host.compiler.ops.base import (
    LoweredOp,
    OpContext,
    activation_problems,
    expect_activation,
    expect_dtype,
    expect_symmetric_weights,
    qparams,
    register,
    uses_64bit_accumulator,
)


@register("FULLY_CONNECTED")
class FullyConnected:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = activation_problems(ctx, bias_position=2) + expect_dtype(ctx.tensor(1), "weights", ("int8",))
        if problems:
            return problems
        problems += expect_symmetric_weights(ctx.input(1), "weights")
        problems += expect_activation(ctx.activation(0))
        if int(ctx.option(1, "b", 0)) != 0:
            problems.append("shuffled weights format is not supported")
        weights = ctx.input(1)
        if len(weights.shape) != 2:
            problems.append(f"weights must be 2-D, got {weights.shape}")
        elif int(np.prod(ctx.input(0).shape)) % weights.shape[1] != 0:
            problems.append(f"input {ctx.input(0).shape} does not flatten to depth {weights.shape[1]}")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        in_scale, in_zp = qparams(ctx.input(0))
        out_scale, out_zp = qparams(ctx.output())
        weights = ctx.input(1)
        assert weights.quant is not None
        units = weights.shape[0]
        if weights.quant.per_channel:
            mults, shifts = quant.conv_per_channel_multipliers(in_scale, weights.quant.scale, out_scale, units)
        else:
            mult, shift = quant.per_tensor_conv_multiplier(in_scale, float(weights.quant.scale[0]), out_scale)
            mults, shifts = [mult], [shift]
        act_min, act_max = quant.activation_range(ctx.activation(0), ctx.output().dtype, out_scale, out_zp)
        return LoweredOp(
            kind="TM_OP_FULLY_CONNECTED",
            params_type="tm_fc_params_t",
            fields={
                "input_offset": -in_zp,
                "filter_offset": -int(weights.quant.zero_point[0]),
                "output_offset": out_zp,
                "act_min": act_min,
                "act_max": act_max,
                "n_multipliers": len(mults),
                "acc64": uses_64bit_accumulator(ctx),
            },
            arrays={"out_multiplier": ("int32_t", mults), "out_shift": ("int32_t", shifts)},
        )

"""MAX_POOL_2D and AVERAGE_POOL_2D, int8 and int16."""

from __future__ import annotations

from host.compiler import quant
from host.compiler.ops.base import (
    LoweredOp,
    OpContext,
    activation_problems,
    expect_activation,
    qparams,
    register,
)
from host.tflite.reader import PADDINGS


def _geometry(ctx: OpContext) -> dict[str, int] | str:
    padding = PADDINGS.get(int(ctx.option(0, "b", 0)), "?")
    stride_w, stride_h = int(ctx.option(1, "i", 1)), int(ctx.option(2, "i", 1))
    filter_w, filter_h = int(ctx.option(3, "i", 1)), int(ctx.option(4, "i", 1))
    if padding == "?" or min(stride_w, stride_h, filter_w, filter_h) < 1:
        return "invalid padding, stride or filter size"
    _, in_h, in_w, _ = ctx.input(0).shape
    _, out_h, out_w, _ = ctx.output().shape
    expected = (quant.out_size(padding, in_h, filter_h, stride_h), quant.out_size(padding, in_w, filter_w, stride_w))
    if expected != (out_h, out_w):
        return "output shape does not match input shape, filter, stride and padding"
    return {
        "filter_h": filter_h, "filter_w": filter_w, "stride_h": stride_h, "stride_w": stride_w,
        "pad_h": quant.pad_before(stride_h, 1, in_h, filter_h, out_h),
        "pad_w": quant.pad_before(stride_w, 1, in_w, filter_w, out_w),
    }


def _check(ctx: OpContext) -> list[str]:
    problems = activation_problems(ctx)
    if problems:
        return problems
    problems += expect_activation(ctx.activation(5))
    if len(ctx.input(0).shape) != 4:
        return problems + [f"input must be 4-D NHWC, got {ctx.input(0).shape}"]
    if qparams(ctx.input(0)) != qparams(ctx.output()):
        problems.append("input and output quantization must be equal")
    geometry = _geometry(ctx)
    return problems + ([geometry] if isinstance(geometry, str) else [])


def _lower(ctx: OpContext, kind: str) -> LoweredOp:
    geometry = _geometry(ctx)
    assert isinstance(geometry, dict)
    out_scale, out_zp = qparams(ctx.output())
    act_min, act_max = quant.activation_range(ctx.activation(5), ctx.output().dtype, out_scale, out_zp)
    return LoweredOp(kind=kind, params_type="tm_pool_params_t",
                     fields={**geometry, "act_min": act_min, "act_max": act_max})


@register("MAX_POOL_2D")
class MaxPool2D:
    check = staticmethod(_check)

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        return _lower(ctx, "TM_OP_MAX_POOL_2D")


@register("AVERAGE_POOL_2D")
class AveragePool2D:
    check = staticmethod(_check)

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        return _lower(ctx, "TM_OP_AVERAGE_POOL_2D")

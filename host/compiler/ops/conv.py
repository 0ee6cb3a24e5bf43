"""CONV_2D and DEPTHWISE_CONV_2D: int8 or int16 (16x8) activations, per-channel int8 weights."""

from __future__ import annotations

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
from host.tflite.reader import PADDINGS

INT8 = ("int8",)


def _check_common(ctx: OpContext, activation_slot: int) -> list[str]:
    problems = activation_problems(ctx, bias_position=2) + expect_dtype(ctx.tensor(1), "filter", INT8)
    if problems:
        return problems
    problems += expect_symmetric_weights(ctx.input(1), "filter")
    problems += expect_activation(ctx.activation(activation_slot))
    if len(ctx.input(0).shape) != 4:
        problems.append(f"input must be 4-D NHWC, got shape {ctx.input(0).shape}")
    return problems


def _geometry(ctx: OpContext, slots: dict[str, int], filter_hw: tuple[int, int]) -> dict[str, int] | str:
    """Strides, dilations and padding; a string on an inconsistent output shape."""
    padding = PADDINGS.get(int(ctx.option(slots["padding"], "b", 0)), "?")
    stride_w, stride_h = int(ctx.option(slots["stride_w"], "i", 1)), int(ctx.option(slots["stride_h"], "i", 1))
    dil_w, dil_h = int(ctx.option(slots["dil_w"], "i", 1)), int(ctx.option(slots["dil_h"], "i", 1))
    if padding == "?" or min(stride_w, stride_h, dil_w, dil_h) < 1:
        return "invalid padding, stride or dilation"
    _, in_h, in_w, _ = ctx.input(0).shape
    _, out_h, out_w, _ = ctx.output().shape
    f_h, f_w = filter_hw
    expected = (
        quant.out_size(padding, in_h, f_h, stride_h, dil_h),
        quant.out_size(padding, in_w, f_w, stride_w, dil_w),
    )
    if expected != (out_h, out_w):
        return "output shape does not match input shape, filter, stride and padding"
    return {
        "stride_h": stride_h, "stride_w": stride_w, "dilation_h": dil_h, "dilation_w": dil_w,
        "pad_h": quant.pad_before(stride_h, dil_h, in_h, f_h, out_h),
        "pad_w": quant.pad_before(stride_w, dil_w, in_w, f_w, out_w),
    }


def _lower(ctx: OpContext, kind: str, geometry: dict[str, int], depth_multiplier: int, activation: str) -> LoweredOp:
    in_scale, in_zp = qparams(ctx.input(0))
    out_scale, out_zp = qparams(ctx.output())
    filt = ctx.input(1)
    assert filt.quant is not None
    channels = ctx.output().shape[3]
    mults, shifts = quant.conv_per_channel_multipliers(in_scale, filt.quant.scale, out_scale, channels)
    act_min, act_max = quant.activation_range(activation, ctx.output().dtype, out_scale, out_zp)
    return LoweredOp(
        kind=kind,
        params_type="tm_conv_params_t",
        fields={
            **geometry,
            "depth_multiplier": depth_multiplier,
            "n_multipliers": channels,
            "acc64": uses_64bit_accumulator(ctx),
            "input_offset": -in_zp,
            "output_offset": out_zp,
            "act_min": act_min,
            "act_max": act_max,
        },
        arrays={"out_multiplier": ("int32_t", mults), "out_shift": ("int32_t", shifts)},
    )


CONV_SLOTS = {"padding": 0, "stride_w": 1, "stride_h": 2, "dil_w": 4, "dil_h": 5}
DW_SLOTS = {"padding": 0, "stride_w": 1, "stride_h": 2, "dil_w": 5, "dil_h": 6}


@register("CONV_2D")
class Conv2D:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = _check_common(ctx, activation_slot=3)
        if problems:
            return problems
        filt, inp = ctx.input(1), ctx.input(0)
        if len(filt.shape) != 4 or inp.shape[3] % filt.shape[3] != 0:
            return [f"filter shape {filt.shape} does not fit input {inp.shape}"]
        geometry = _geometry(ctx, CONV_SLOTS, (filt.shape[1], filt.shape[2]))
        return [geometry] if isinstance(geometry, str) else []

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        filt = ctx.input(1)
        geometry = _geometry(ctx, CONV_SLOTS, (filt.shape[1], filt.shape[2]))
        assert isinstance(geometry, dict)
        return _lower(ctx, "TM_OP_CONV_2D", geometry, 1, ctx.activation(3))


@register("DEPTHWISE_CONV_2D")
class DepthwiseConv2D:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = _check_common(ctx, activation_slot=4)
        if problems:
            return problems
        filt, inp, out = ctx.input(1), ctx.input(0), ctx.output()
        in_ch, out_ch = inp.shape[3], out.shape[3]
        if len(filt.shape) != 4 or filt.shape[3] != out_ch or out_ch % in_ch != 0:
            return [f"filter shape {filt.shape} does not fit input {inp.shape} / output {out.shape}"]
        bias = ctx.tensor(2)
        if inp.dtype == "int16" and bias is not None and bias.dtype != "int64":
            # TFLM reads a 16x8 depthwise bias as int64 whatever its type.
            return ["int16 depthwise convolution needs an int64 bias (TFLM reads it as int64)"]
        geometry = _geometry(ctx, DW_SLOTS, (filt.shape[1], filt.shape[2]))
        return [geometry] if isinstance(geometry, str) else []

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        filt = ctx.input(1)
        geometry = _geometry(ctx, DW_SLOTS, (filt.shape[1], filt.shape[2]))
        assert isinstance(geometry, dict)
        # TFLM derives the multiplier from the shapes, not the (sometimes stale) option.
        multiplier = ctx.output().shape[3] // ctx.input(0).shape[3]
        return _lower(ctx, "TM_OP_DEPTHWISE_CONV_2D", geometry, multiplier, ctx.activation(4))

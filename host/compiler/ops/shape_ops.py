"""PAD, PADV2 and CONCATENATION: data movement, int8 and int16.

TFLM does not requantize in these ops, so every input must share the output's
scale and zero point."""

from __future__ import annotations

import numpy as np

from host.compiler.ops.base import LoweredOp, OpContext, expect_dtype, expect_quantized, qparams, register
from host.compiler.ops.broadcast import MAX_RANK

INTS = ("int8", "int16")


def _same_quantization(ctx: OpContext, positions: list[int]) -> list[str]:
    out = ctx.output()
    problems = expect_dtype(out, "output", INTS) + expect_quantized(out, "output")
    for i in positions:
        t = ctx.tensor(i)
        problems += expect_dtype(t, f"input {i}", (out.dtype,)) + expect_quantized(t, f"input {i}")
        if not problems and qparams(t) != qparams(out):
            problems.append(f"input {i} quantization {qparams(t)} differs from the output's {qparams(out)}")
    if len(out.shape) > MAX_RANK:
        problems.append(f"rank {len(out.shape)} exceeds the engine's maximum of {MAX_RANK}")
    return problems


def _paddings(ctx: OpContext) -> np.ndarray | None:
    t = ctx.tensor(1)
    if t is None or t.data is None or t.dtype not in ("int32", "int64"):
        return None
    return t.array().reshape(-1, 2).astype(np.int64)


class _Pad:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = _same_quantization(ctx, [0])
        pads = _paddings(ctx)
        if pads is None:
            return problems + ["paddings must be a constant int32/int64 tensor"]
        in_shape, out_shape = ctx.input(0).shape, ctx.output().shape
        if pads.shape[0] != len(in_shape) or (pads < 0).any():
            return problems + [f"paddings {pads.tolist()} do not fit input rank {len(in_shape)}"]
        if tuple(int(d + a + b) for d, (a, b) in zip(in_shape, pads, strict=True)) != tuple(out_shape):
            problems.append(f"output shape {out_shape} is not input {in_shape} padded by {pads.tolist()}")
        value = ctx.tensor(2)
        if value is not None and (value.data is None or value.dtype != ctx.output().dtype):
            problems.append("PADV2 constant value must be a constant of the output type")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        pads = _paddings(ctx)
        assert pads is not None
        before = [int(a) for a, _ in pads] + [0] * (MAX_RANK - len(pads))
        value = ctx.tensor(2)
        pad_value = int(value.array().ravel()[0]) if value is not None else qparams(ctx.output())[1]
        return LoweredOp(
            kind="TM_OP_PAD",
            params_type="tm_pad_params_t",
            fields={"before": "{ " + ", ".join(map(str, before)) + " }", "pad_value": pad_value},
            used_inputs=(0,),
        )


register("PAD")(_Pad)
register("PADV2")(_Pad)


@register("CONCATENATION")
class Concatenation:
    @staticmethod
    def _axis(ctx: OpContext) -> int:
        axis = int(ctx.option(0, "i", 0))
        return axis + len(ctx.output().shape) if axis < 0 else axis

    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        problems = _same_quantization(ctx, list(range(len(ctx.op.inputs))))
        if problems:
            return problems
        axis, out_shape = Concatenation._axis(ctx), ctx.output().shape
        shapes = [ctx.input(i).shape for i in range(len(ctx.op.inputs))]
        if not 0 <= axis < len(out_shape):
            return [f"axis {axis} out of range for rank {len(out_shape)}"]
        for s in shapes:
            mismatched = len(s) != len(out_shape) or any(
                a != b for d, (a, b) in enumerate(zip(s, out_shape, strict=True)) if d != axis
            )
            if mismatched:
                return [f"input shape {s} does not concatenate into {out_shape} along axis {axis}"]
        if sum(s[axis] for s in shapes) != out_shape[axis]:
            problems.append(f"input sizes along axis {axis} do not add up to {out_shape[axis]}")
        if ctx.activation(1) != "NONE":
            problems.append(f"fused activation {ctx.activation(1)} is not supported")
        return problems

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        return LoweredOp(kind="TM_OP_CONCATENATION", params_type="tm_concat_params_t",
                         fields={"axis": Concatenation._axis(ctx)})

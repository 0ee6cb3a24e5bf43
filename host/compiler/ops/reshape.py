"""RESHAPE: bytes unchanged, so the output shares the input's arena bytes."""

from __future__ import annotations

import numpy as np

from host.compiler.ops.base import LoweredOp, OpContext, register


@register("RESHAPE")
class Reshape:
    @staticmethod
    def check(ctx: OpContext) -> list[str]:
        inp, out = ctx.tensor(0), ctx.tensor(0, outputs=True)
        if inp is None or out is None:
            return ["input or output missing"]
        if inp.dtype != out.dtype:
            return [f"input {inp.dtype} and output {out.dtype} differ"]
        if int(np.prod(inp.shape)) != int(np.prod(out.shape)):
            return [f"element count changes from {inp.shape} to {out.shape}"]
        return []

    @staticmethod
    def lower(ctx: OpContext) -> LoweredOp:
        return LoweredOp(kind="TM_OP_RESHAPE", used_inputs=(0,), alias_output_to_input=True)

"""FULLY_CONNECTED: int8 or int16 (16x8) activations, int8 weights (per-tensor or per-channel)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass

import numpy as np

from host.compiler import quant
from host.compiler.kernel_table import row_of
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
from host.compiler.scratch import NEXT, per_kernel

DSP_FC_MAX_DEPTH = 1024          # ops_dsp/fully_connected.c FC_MAX_DEPTH
DSP_FC_CHUNK_UNITS = 128         # FC_CHUNK_UNITS
DSP_FC_CHUNK_SUMS = DSP_FC_CHUNK_UNITS + 3   # FC_CHUNK_SUMS


@dataclass(frozen=True)
class FcDims:
    """tm_fc_dims_t: input [batches, depth], weights [units, depth], output [batches, units]."""

    batches: int
    depth: int
    units: int

    @classmethod
    def of(cls, ctx: OpContext) -> FcDims:
        units, depth = ctx.input(1).shape
        return cls(int(np.prod(ctx.output().shape)) // units, depth, units)

    def values(self) -> tuple[int, ...]:
        return astuple(self)


def fully_connected_scratch_bytes(kernel: str, p: Mapping[str, int], d: FcDims, dtype: str) -> int:
    """tm_fully_connected_<kernel>_scratch_bytes: bytes of scratch the kernel holds, or NEXT.
    `p`: the op's tm_fc_params_t fields."""
    if not row_of("TM_OP_FULLY_CONNECTED").takes(kernel, dtype) or p["filter_offset"] != 0:
        return NEXT
    if kernel == "mve":
        return 0
    if kernel == "dsp":
        row, sums = DSP_FC_MAX_DEPTH * 2, DSP_FC_CHUNK_SUMS * 4
        if dtype == "int16":
            return row + DSP_FC_CHUNK_UNITS * 8 + sums if d.depth <= DSP_FC_MAX_DEPTH else NEXT
        return row + sums if d.depth <= DSP_FC_MAX_DEPTH else 0
    raise ValueError(f"FULLY_CONNECTED has no {kernel} kernel with scratch")


FC16_HEXTET, FC16_QUAD = 6, 4     # ops_dsp/fully_connected.c: units per group of the pre-widened stream


def fc16_groups(units: int) -> tuple[int, int]:
    """(hextets, quads): the groups of 6 and of 4 units the DSP kernel's pre-widened stream holds for `units`
    (fc16_groups in ops_dsp/fully_connected.c). Quads only where sixes alone would pad: units rounded up to
    even, then 2 quads if that is 2 more than a multiple of 6, 1 if 4 more (2 units: one padded quad)."""
    even = units + units % 2
    if even == 2:
        return 0, 1
    quads = {0: 0, 2: 2, 4: 1}[even % 6]
    return (even - FC16_QUAD * quads) // FC16_HEXTET, quads


def fc16_sums_fit(weights: np.ndarray, bias: np.ndarray | None) -> bool:
    """Whether twice every unit's sum plus its bias fits int32 whatever the int8 input: |bias| + depth * 255 * 128
    < 2^30 (the kernel accumulates doubled weights from 2 * bias)."""
    reach = weights.shape[1] * 255 * 128
    return reach + (int(np.abs(bias.astype(np.int64)).max()) if bias is not None and bias.size else 0) < 2 ** 30


def widened_weights(weights: np.ndarray, bias: np.ndarray | None) -> bytes:
    """int8 weights [units, depth] and int32 bias as the DSP kernel's pre-widened stream (little-endian): the
    units in groups (fc16_groups: hextets, then quads; padded units have zero weights and bias), the depth
    padded with zeros to a multiple of 4. Per group: each unit's doubled bias (int32), then per 4 elements of
    depth each unit's 4 weights, doubled, as int16 (two words: the pairs SMLAD multiplies with the input's)."""
    units, depth = weights.shape
    hextets, quads = fc16_groups(units)
    total = FC16_HEXTET * hextets + FC16_QUAD * quads
    padded = np.zeros((total, -(-depth // 4) * 4), dtype=np.int16)
    padded[:units, :depth] = 2 * weights.astype(np.int16)
    doubled_bias = np.zeros(total, dtype="<i4")
    if bias is not None:
        doubled_bias[:units] = 2 * bias.astype(np.int64)
    groups = padded.shape[1] // 4
    stream, u0 = [], 0
    for size in [FC16_HEXTET] * hextets + [FC16_QUAD] * quads:
        block = padded[u0:u0 + size].reshape(size, groups, 4).transpose(1, 0, 2)   # group, unit, element
        stream += [doubled_bias[u0:u0 + size].tobytes(), block.astype("<i2").tobytes()]
        u0 += size
    return b"".join(stream)


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
        lowered = LoweredOp(
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
        dims, dtype = FcDims.of(ctx), ctx.input(0).dtype
        if dtype == "int8" and lowered.fields["filter_offset"] == 0 and dims.depth <= DSP_FC_MAX_DEPTH:
            assert weights.data is not None
            matrix = np.frombuffer(weights.data, dtype=np.int8).reshape(units, dims.depth)
            bias = ctx.tensor(2)
            bias_values = None if bias is None else np.frombuffer(bias.data or b"", dtype="<i4")
            if (bias is None or bias.data is not None) and fc16_sums_fit(matrix, bias_values):
                lowered.guarded_arrays["weights16"] = ("TM_FC_WEIGHTS16", "int16_t",
                                                       widened_weights(matrix, bias_values))
        lowered.scratch = per_kernel(row_of(lowered.kind),
                                     lambda kernel: fully_connected_scratch_bytes(kernel, lowered.fields, dims, dtype))
        return lowered

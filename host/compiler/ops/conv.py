"""CONV_2D and DEPTHWISE_CONV_2D: int8 or int16 (16x8) activations, per-channel int8 weights."""

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
from host.tflite.reader import ACTIVATIONS, PADDINGS

INT8 = ("int8",)


@dataclass(frozen=True)
class ConvDims:
    """tm_conv_dims_t: NHWC input and output, filter OHWI (CONV_2D, f_c = in_c / groups) or 1HWC
    (DEPTHWISE_CONV_2D, f_c = out_c)."""

    batches: int
    in_h: int
    in_w: int
    in_c: int
    f_h: int
    f_w: int
    f_c: int
    out_h: int
    out_w: int
    out_c: int

    @classmethod
    def of(cls, ctx: OpContext) -> ConvDims:
        (n, in_h, in_w, in_c), (_, f_h, f_w, f_c) = ctx.input(0).shape, ctx.input(1).shape
        _, out_h, out_w, out_c = ctx.output().shape
        return cls(n, in_h, in_w, in_c, f_h, f_w, f_c, out_h, out_w, out_c)

    def values(self) -> tuple[int, ...]:
        return astuple(self)


# The kernels' buffer sizes (the C constants of the same names).
DSP_GEMM_MAX_TAPS = 1024                        # ops_dsp/dsp_conv.h TM_DSP_GEMM_MAX_TAPS
DSP_GEMM_COLUMN_SLOTS = 2 * DSP_GEMM_MAX_TAPS + 8   # ops_dsp/conv_2d_gemm.c GEMM_COLUMN_SLOTS (int16)
DSP_GEMM_STAGE_BYTES = DSP_GEMM_MAX_TAPS + 4    # GEMM_STAGE_BYTES
DSP_GEMM_CHUNK_PAIRS = 64                       # GEMM_CHUNK_PAIRS
DSP_RQ_TABLE_CHANNELS = 128                     # RQ_TABLE_CHANNELS
DSP_S16_CHUNK_PAIRS = 32                        # S16_CHUNK_PAIRS
DSP_S16_STAGE_TAPS = 512                        # S16_STAGE_TAPS
DSP_S16_TABLE_CHANNELS = 128                    # S16_TABLE_CHANNELS
DSP_S16_WIDE_WEIGHT_BYTES = 9216                # S16_WIDE_WEIGHT_BYTES
DSP_S16_WIDE_GROUPS = 72                        # S16_WIDE_GROUPS
WIDE_MAX_TAPS = 256                             # ops_dsp/conv_2d_wide.c WIDE_*
WIDE_WEIGHT_BYTES = 9216
WIDE_SCRATCH_BYTES = 10752
WIDE_MAX_CHUNK = 64
WIDE_TABLE_WORDS = 6 + 12 * (WIDE_MAX_CHUNK // 2)
WIDE_STAGE_BYTES = WIDE_MAX_TAPS + 8
DW_MAX_TAPS = 64                                # ops_dsp/depthwise_conv_2d.c DW_*
DW_MAX_PREPARED = 256
DW_RQ_BYTES = 8                                 # sizeof(dw_rq_t)
DW_SHARED_WORDS = 128 // 4 * 34                 # DW3_MAX_CH / 4 * DW3_GROUP_WORDS
WINO_MAX_IN_C = 128                             # ops_dsp/conv_2d_winograd.c WINO_*
WINO_CHUNK = 64
# WINO_SCRATCH_WORDS: V of a tile pair at its largest with its control words, the 16 x 4 sums, the padding pixel,
# the requantization table, the first pass and pixel pointers, wino_pair's frame
WINO_V_WORDS = 16 * (WINO_MAX_IN_C + 1) + 1
WINO_SCRATCH_BYTES = (WINO_V_WORDS + 16 * 4 + WINO_MAX_IN_C // 4 + 4 * WINO_CHUNK + 48 + 24 + 2 + 64) * 4
# F(2x2, 3x3) with the filter transform's halves doubled: U = (2G) g (2G)^T (ops_dsp/conv_2d_winograd.c).
WINO_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.int64)
WINO16_MAX_IN_C = 128                           # ops_dsp/conv_2d_winograd16.c WINO16_*
WINO16_CHUNK = 64
# WINO16_SCRATCH_WORDS: V of a tile pair at its largest with its control words, the 8 combined sums, the padding pixel,
# the requantization table and offsets, the pixel pointers and wino16_sums' frame
WINO16_V_WORDS = 4 * (4 * (3 * WINO16_MAX_IN_C // 4) + 1) + 1
WINO16_SCRATCH_BYTES = (WINO16_V_WORDS + 8 + WINO16_MAX_IN_C // 2 + 7 * WINO16_CHUNK + 18 + 2 + 16 + 9) * 4
# The producers whose fused activation makes their output non-negative (int16: zero point 0), by the option slot
# of that activation (host/compiler/ops: conv.py, add.py, fully_connected.py, mul.py, pooling.py).
ACTIVATION_SLOTS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 4, "ADD": 0, "FULLY_CONNECTED": 0, "MUL": 0,
                    "AVERAGE_POOL_2D": 5, "MAX_POOL_2D": 5}
MVE_PATCH_BYTES = 1152                          # ops_mve/mve_common.h TM_MVE_PATCH_BYTES
MVE_CHANNEL_CHUNK = 64                          # TM_MVE_CHANNEL_CHUNK
MVE_GROUP_BYTES = 64                            # sizeof(tm_mve_group_t)
MVE_SMALL_1X1 = 16                              # ops_mve/conv_2d.c TM_MVE_SMALL_1X1
MVE_SMALL_1X1_FILTER_BYTES = 64
MVE_DW_GROUP_BYTES = 320                        # ops_mve/depthwise_conv_2d.c sizeof(dw_group_t)
MVE_DW_PAIR_BYTES = MVE_DW_GROUP_BYTES + 25 * 16    # sizeof(dw_pair_t)


def _dsp_gemm_scratch(in_c: int, dtype: str) -> int:
    """tm_dsp_conv_2d_gemm_scratch_bytes."""
    columns = DSP_GEMM_COLUMN_SLOTS * 2
    if dtype == "int16":
        sums = 4 * DSP_S16_CHUNK_PAIRS * (8 + 4)
        stage = (DSP_S16_STAGE_TAPS + 4) * 2 if in_c % 4 else 0
        pairs = columns + 4 * DSP_S16_TABLE_CHANNELS * 4 + max(sums, stage)
        wide = DSP_S16_WIDE_WEIGHT_BYTES + 8 * DSP_S16_WIDE_GROUPS * 2 + (4 + 8) * DSP_S16_CHUNK_PAIRS * 4 + stage
        return max(pairs, wide)
    table = 3 * DSP_RQ_TABLE_CHANNELS * 4
    sums = 4 * DSP_GEMM_CHUNK_PAIRS * 4
    stage = DSP_GEMM_STAGE_BYTES if in_c % 4 else 0
    return columns + table + max(stage, sums)


def winograd_takes(p: Mapping[str, int], d: ConvDims) -> bool:
    """tm_dsp_winograd_takes (ops_dsp/conv_2d_winograd.c): does the Winograd path take an int8 op of these dims?"""
    return (d.f_h == d.f_w == 3 and d.f_c == d.in_c and p["stride_h"] == p["stride_w"] == 1
            and p["dilation_h"] == p["dilation_w"] == 1 and d.in_c % 4 == 0 and 4 <= d.in_c <= WINO_MAX_IN_C
            and d.out_c % 2 == 0 and d.out_c >= 2 and d.out_h >= 2 and d.out_w >= 2)


def winograd_weights(weights: np.ndarray) -> bytes:
    """int8 OHWI 3x3 weights [out_c (even), 3, 3, in_c (a multiple of 4)] in the Winograd domain for
    conv_2d_winograd.c (int16, little-endian): U = (2G) g (2G)^T per output and input channel (|U| <= 1143),
    laid out per output-channel pair, per position 4i + j, per group of 4 input channels, the first
    channel's words in SXTB16 order (c0, c2, c1, c3), then the second's."""
    out_c, _, _, in_c = weights.shape
    u = np.einsum("ia,kabc,jb->kijc", WINO_G2, weights.astype(np.int64), WINO_G2)    # k, i, j, c
    groups = u.reshape(out_c // 2, 2, 16, in_c // 4, 4)[..., [0, 2, 1, 3]]          # pair, ch, p, group, 4
    return groups.transpose(0, 2, 3, 1, 4).astype("<i2").tobytes()                   # pair, p, group, ch, 4


def winograd16_takes(p: Mapping[str, int], d: ConvDims) -> bool:
    """tm_dsp_winograd16_takes (ops_dsp/conv_2d_winograd16.c): does the int16x8 Winograd path take these dims?"""
    return (d.f_h == d.f_w == 3 and d.f_c == d.in_c and p["stride_h"] == p["stride_w"] == 1
            and p["dilation_h"] == p["dilation_w"] == 1 and p["input_offset"] == 0 and d.in_c % 4 == 0
            and 4 <= d.in_c <= WINO16_MAX_IN_C and d.out_c % 2 == 0 and d.out_c >= 2 and d.out_w >= 2)


def input_after_relu(ctx: OpContext) -> bool:
    """Whether the op's input is made by an op of this graph whose fused ReLU or ReLU6 keeps it non-negative
    (its zero point 0: the clamp's floor is 0)."""
    index = ctx.op.inputs[0]
    producer = next((op for op in ctx.graph.operators if index in op.outputs), None)
    if producer is None or producer.opcode not in ACTIVATION_SLOTS or producer.options is None:
        return False
    activation = ACTIVATIONS.get(int(producer.options.scalar(ACTIVATION_SLOTS[producer.opcode], "b", 0)), "?")
    return activation in ("RELU", "RELU6") and qparams(ctx.input(0))[1] == 0


def winograd16_sums_fit(weights: np.ndarray, bias: np.ndarray | None) -> bool:
    """Whether twice every channel's sum plus its bias, over inputs in [0, 32767], fits int32 (conv_2d_winograd16.c's
    2 * sum and 2 * (sum + bias)): |bias| + 32767 * max(sum of the positive weights, sum of the negative ones'
    magnitudes) < 2^30, per output channel."""
    w = weights.reshape(weights.shape[0], -1).astype(np.int64)
    reach = 32767 * np.maximum(np.where(w > 0, w, 0).sum(axis=1), np.where(w < 0, -w, 0).sum(axis=1))
    if bias is not None:
        reach += np.abs(bias.astype(np.int64))
    return bool((reach < 2**30).all())


def winograd16_weights(weights: np.ndarray) -> bytes:
    """int8 OHWI 3x3 weights [out_c (even), 3, 3, in_c (a multiple of 4)] in the F(2, 3) Winograd domain along the
    rows for conv_2d_winograd16.c (int16, little-endian): U = (2G) g per output channel, input channel and filter
    row (|U| <= 381), laid out per output-channel pair, per position t, per filter row, per group of 4 input
    channels, the first channel's 4 values in natural order, then the second's."""
    out_c, _, _, in_c = weights.shape
    u = np.einsum("ta,kyac->ktyc", WINO_G2, weights.astype(np.int64))                # k, t, row, c
    groups = u.reshape(out_c // 2, 2, 4, 3, in_c // 4, 4)                              # pair, ch, t, row, group, 4
    return groups.transpose(0, 2, 3, 4, 1, 5).astype("<i2").tobytes()                # pair, t, row, group, ch, 4


def _winograd_filter(ctx: OpContext, fields: Mapping[str, int], arrays: Mapping[str, tuple[str, list[int]]],
                     dims: ConvDims, weights: np.ndarray) -> bytes | None:
    """The transformed filter of a CONV_2D the DSP kernel's Winograd paths take, or None: int8 3x3 stride-1 ops
    (conv_2d_winograd.c); int16x8 ones over a ReLU's output whose sums fit, with an int64 bias or none and the
    int32 route's requantization (conv_2d_winograd16.c declines others: they would lose the widened weights)."""
    dtype = ctx.input(0).dtype
    if dtype == "int8" and winograd_takes(fields, dims):
        return winograd_weights(weights.reshape(dims.out_c, 3, 3, dims.in_c))
    if dtype != "int16" or not winograd16_takes(fields, dims) or not fields["acc64"] or fields["acc32_fits"] != 1:
        return None
    w = weights.reshape(dims.out_c, 3, 3, dims.in_c)
    if not all(1 <= 15 - shift <= 31 for shift in arrays["out_shift"][1]):
        return None
    bias = ctx.tensor(2)
    bias_values = None if bias is None or bias.data is None else np.frombuffer(bias.data, dtype="<i8")
    if bias is not None and bias_values is None:
        return None
    return winograd16_weights(w) if input_after_relu(ctx) and winograd16_sums_fit(w, bias_values) else None


def _wide_runs(p: Mapping[str, int], out_c: int, kp: int, pixels: int) -> bool:
    """wide_plan (ops_dsp/conv_2d_wide.c): do the dims and activation range let the wide path run?"""
    if out_c % 2 or out_c < 2 or kp > WIDE_MAX_TAPS or p["act_min"] != -128 or p["act_max"] != 127:
        return False
    max_chunk = min(WIDE_WEIGHT_BYTES // (2 * kp), WIDE_MAX_CHUNK) & ~1
    cols_bytes = ((pixels + 2) // 3) * 6 * kp
    all_cols = out_c > max_chunk and cols_bytes + 2 * 2 * kp <= WIDE_SCRATCH_BYTES
    if all_cols:
        max_chunk = min((WIDE_SCRATCH_BYTES - cols_bytes) // (2 * kp), WIDE_MAX_CHUNK) & ~1
    chunks = -(-out_c // max_chunk)
    return all_cols or pixels >= 2 * chunks


def _dsp_wide_scratch(p: Mapping[str, int], d: ConvDims) -> int:
    """tm_dsp_conv_2d_wide_scratch_bytes."""
    kp = (d.f_h * d.f_w * d.f_c + 3) & ~3
    if not _wide_runs(p, d.out_c, kp, d.out_h * d.out_w):
        return 0
    return WIDE_SCRATCH_BYTES + WIDE_TABLE_WORDS * 4 + (WIDE_STAGE_BYTES if d.in_c % 4 else 0)


def conv_2d_scratch_bytes(kernel: str, p: Mapping[str, int], d: ConvDims, dtype: str) -> int:
    """tm_conv_2d_<kernel>_scratch_bytes: bytes of scratch the kernel holds for this op, or NEXT.
    `p`: the op's tm_conv_params_t fields."""
    row = row_of("TM_OP_CONV_2D")
    if kernel == "dsp":
        taps = d.f_h * d.f_w * d.f_c
        if d.f_c != d.in_c or not row.takes("dsp", dtype):
            return NEXT
        if dtype == "int16":   # without the transformed filter or over a negative input the im2col path runs
            if p["input_offset"] != 0 or taps > DSP_GEMM_MAX_TAPS:
                return NEXT
            return max(_dsp_gemm_scratch(d.in_c, dtype), WINO16_SCRATCH_BYTES if winograd16_takes(p, d) else 0)
        gemm = _dsp_gemm_scratch(d.in_c, dtype) if taps <= DSP_GEMM_MAX_TAPS else 0
        winograd = WINO_SCRATCH_BYTES if winograd_takes(p, d) else 0   # without its filter the others run
        return max(_dsp_wide_scratch(p, d), gemm, winograd)
    if kernel == "mve":
        one_by_one = (d.f_h == 1 and d.f_w == 1 and p["pad_h"] == 0 and p["pad_w"] == 0
                      and (d.out_h - 1) * p["stride_h"] < d.in_h and (d.out_w - 1) * p["stride_w"] < d.in_w)
        tables = MVE_CHANNEL_CHUNK // 4 * MVE_GROUP_BYTES
        if not row.takes("mve", dtype) or d.f_c != d.in_c:
            return NEXT
        if dtype == "int16":   # the int16 path may hand the op on to the DSP kernel
            if 2 * d.f_h * d.f_w * d.f_c > MVE_PATCH_BYTES:
                return NEXT
            return max(tables + MVE_PATCH_BYTES, conv_2d_scratch_bytes("dsp", p, d, dtype))
        if not one_by_one and d.f_h * d.f_w * d.f_c > MVE_PATCH_BYTES:
            return NEXT
        small = one_by_one and d.in_c <= MVE_SMALL_1X1
        return tables + (MVE_SMALL_1X1_FILTER_BYTES if small else MVE_PATCH_BYTES)
    raise ValueError(f"CONV_2D has no {kernel} kernel with scratch")


def depthwise_conv_2d_scratch_bytes(kernel: str, p: Mapping[str, int], d: ConvDims, dtype: str) -> int:
    """tm_depthwise_conv_2d_<kernel>_scratch_bytes: bytes of scratch the kernel holds, or NEXT."""
    row = row_of("TM_OP_DEPTHWISE_CONV_2D")
    if not row.takes(kernel, dtype) or p["depth_multiplier"] != 1 or d.out_c != d.in_c or d.f_c != d.in_c:
        return NEXT
    if kernel == "dsp":
        if d.f_h * d.f_w > DW_MAX_TAPS or d.in_c > DW_MAX_PREPARED:
            return 0   # the direct path
        return 2 * DW_MAX_TAPS * 4 + DW_MAX_PREPARED * (DW_RQ_BYTES + 3 * 4) + DW_SHARED_WORDS * 4
    if kernel == "mve":
        return MVE_CHANNEL_CHUNK // 16 * MVE_DW_GROUP_BYTES + MVE_DW_PAIR_BYTES
    raise ValueError(f"DEPTHWISE_CONV_2D has no {kernel} kernel with scratch")


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
    lowered = _lower_params(ctx, kind, geometry, depth_multiplier, activation)
    scratch = conv_2d_scratch_bytes if kind == "TM_OP_CONV_2D" else depthwise_conv_2d_scratch_bytes
    dims, dtype = ConvDims.of(ctx), ctx.input(0).dtype
    lowered.scratch = per_kernel(row_of(kind), lambda kernel: scratch(kernel, lowered.fields, dims, dtype))
    k = dims.f_h * dims.f_w * dims.f_c
    kp, pixels = (k + 3) & ~3, dims.out_h * dims.out_w
    wide = _wide_runs(lowered.fields, dims.out_c, kp, pixels)
    gemm = k % 4 == 0 and dims.out_c % 2 == 0 and k <= DSP_GEMM_MAX_TAPS   # conv_2d_gemm.c's g.w16
    if dtype == "int16":   # conv_2d_gemm.c's pre_widened: its widened-weight path, or gemm_pairs16
        wide = False
        gemm = dims.out_c % 2 == 0 and (kp <= 4 * DSP_S16_WIDE_GROUPS or gemm)
    filt = ctx.input(1)
    assert filt.data is not None
    weights = np.frombuffer(filt.data, dtype=np.int8)
    winograd = _winograd_filter(ctx, lowered.fields, lowered.arrays, dims, weights) if kind == "TM_OP_CONV_2D" \
        else None
    if winograd is not None:
        macro = "TM_CONV_WINOGRAD16" if dtype == "int16" else "TM_CONV_WINOGRAD"
        lowered.guarded_arrays["winograd"] = (macro, "int16_t", winograd)
    elif kind == "TM_OP_CONV_2D" and dtype in ("int8", "int16") and dims.f_c == dims.in_c and (wide or gemm):
        doubled = wide   # conv_2d_wide.c takes them doubled, in its order; the im2col path undoubled only
        stream = wide_weights(weights.reshape(dims.out_c, -1), kp, doubled, natural=dtype == "int16")
        lowered.guarded_arrays["weights16"] = ("TM_CONV_WEIGHTS16", "int16_t", stream)
        lowered.fields["weights16_doubled"] = int(doubled)
    bias = ctx.tensor(2)
    if dtype == "int8" and (bias is None or bias.data is not None) and _wide_rq_wanted(kind, lowered.fields, dims):
        bias_values = None if bias is None else np.frombuffer(bias.data, dtype="<i4")
        table = wide_rq_table(lowered.fields, lowered.arrays, weights, dims, kind == "TM_OP_CONV_2D", bias_values)
        lowered.guarded_arrays["wide_rq"] = ("TM_CONV_WIDE_RQ", "int32_t", table)
    return lowered


def _wide_rq_wanted(kind: str, fields: Mapping[str, int], dims: ConvDims) -> bool:
    """Whether a DSP kernel asks tm_dsp_wide_rq about this op's channels: int8 CONV_2D with the full int8
    activation range (the wide and Winograd paths), int8 3x3 DEPTHWISE_CONV_2D (its register-blocked paths)."""
    if kind == "TM_OP_CONV_2D":
        return fields["act_min"] == -128 and fields["act_max"] == 127 and dims.out_c % 2 == 0
    return (dims.f_h, dims.f_w) == (3, 3)


def wide_weights(weights: np.ndarray, kp: int, doubled: bool, natural: bool = False) -> bytes:
    """int8 weights [out_c (even), k] widened to int16 (little-endian) for all channels, per channel pair and group of
    4 taps (zero-padded to kp).  `doubled`: conv_2d_wide.c's widen_weights, times 2, SXTB16's words in the order
    wide_triples reads them, the first channel's taps 0, 2, the second's 0, 2, the first's 1, 3, the second's 1, 3.
    Else conv_2d_gemm.c's: the first channel's two words, then the second's; SXTB16's order (taps 0, 2 and 1, 3), or
    with `natural` (int16x8 ops, conv_2d_gemm.c's s16_natural) the taps in natural order, 0, 1 and 2, 3."""
    out_c, k = weights.shape
    padded = np.zeros((out_c, kp), dtype=np.int16)
    padded[:, :k] = weights
    order = [0, 1, 2, 3] if natural else [0, 2, 1, 3]
    groups = padded.reshape(out_c // 2, 2, kp // 4, 4)[..., order]   # pair, channel, group, tap order
    if doubled:
        halves = groups.reshape(out_c // 2, 2, kp // 4, 2, 2)           # pair, channel, group, word, 2 taps
        return (halves.transpose(0, 2, 3, 1, 4) * 2).astype("<i2").tobytes()   # pair, group, word, channel, 2
    return groups.transpose(0, 2, 1, 3).astype("<i2").tobytes()       # pair, group, channel, 4


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _srdhm(a: int, b: int) -> int:
    """TFLite's SaturatingRoundingDoublingHighMul of two int32."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) >> 31
    return q if ab + nudge >= 0 else -q   # C's division truncates toward zero


def _rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    return (x >> exponent) + int((x & mask) > (mask >> 1) + int(x < 0))


def _mbqm_right(x: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier for shift <= 0."""
    return _rounding_divide_by_pot(_srdhm(x, multiplier), -shift)


def _wide_channel_in(fields: Mapping[str, int], m: int, shift: int, lo: int, hi: int) -> list[int] | None:
    """wide_channel_in (ops_dsp/conv_2d_wide.c): channel words M, c, r for sums in [lo, hi], or None."""
    right, o = -shift, fields["output_offset"]
    if m < 0 or shift > 0 or lo < INT32_MIN or hi > INT32_MAX:
        return None
    if 1 <= right <= 24 and lo > -(1 << 30) and hi < (1 << 30) and -(1 << (27 - right)) < o < (1 << (27 - right)):
        c = ((1 << (right - 1)) + ((o << right) & 0xFFFFFFFF)) & 0xFFFFFFFF
        return [m, c - (1 << 32) if c >= 1 << 31 else c, right]
    v_lo, v_hi = _mbqm_right(lo, m, shift), _mbqm_right(hi, m, shift)
    if v_lo == v_hi:
        return [0, 2 * min(max(v_lo + o, fields["act_min"]), fields["act_max"]) + 1, 1]   # v with either sign
    return None


def wide_rq_table(fields: Mapping[str, int], arrays: Mapping[str, tuple[str, list[int]]], weights: np.ndarray,
                  dims: ConvDims, conv: bool, bias: np.ndarray | None) -> bytes:
    """tm_dsp_wide_rq's words (M, c, r) for every output channel, r = 0 where it finds none: what the DSP kernels
    would compute from the weights at every inference (ops_dsp/conv_2d_wide.c), computed once here.  Channel oc's
    weights: row oc of the OHWI filter (CONV_2D), or column oc of the 1HWC one (DEPTHWISE_CONV_2D)."""
    per_channel = weights.reshape(dims.out_c, -1) if conv else weights.reshape(-1, dims.out_c).T
    k = per_channel.shape[1]
    multipliers, shifts = arrays["out_multiplier"][1], arrays["out_shift"][1]
    words: list[int] = []
    for oc in range(dims.out_c):
        b, m, shift = int(bias[oc]) if bias is not None else 0, int(multipliers[oc]), int(shifts[oc])
        coarse = k * 255 * 128
        t = _wide_channel_in(fields, m, shift, b - coarse, b + coarse)
        if t is None:
            w = per_channel[oc].astype(np.int64)
            pos, neg = int(w[w > 0].sum()), int(w[w < 0].sum())
            xl, xh = fields["input_offset"] - 128, fields["input_offset"] + 127
            t = _wide_channel_in(fields, m, shift, b + pos * xl + neg * xh, b + pos * xh + neg * xl)
        words += t if t is not None else [0, 0, 0]
    return np.asarray(words, dtype="<i4").tobytes()


def _acc32_fits(ctx: OpContext, kind: str, multipliers: list[int]) -> int:
    """tm_conv_params_t.acc32_fits: for an int16x8 CONV_2D with an int64 bias or none and constant weights, 1 when
    every channel has |bias| + 32768 * sum |w| < 2^31 and a non-negative multiplier, else 2; 0 for other ops (the
    kernels' tm_dsp_s16_channels_fit checks the same from the weights)."""
    filt, bias = ctx.input(1), ctx.tensor(2)
    if kind != "TM_OP_CONV_2D" or not uses_64bit_accumulator(ctx) or filt.data is None or (
            bias is not None and bias.data is None):
        return 0
    out_c = ctx.output().shape[3]
    reach = 32768 * np.abs(np.frombuffer(filt.data, dtype=np.int8).reshape(out_c, -1).astype(np.int64)).sum(axis=1)
    if bias is not None:
        reach += np.abs(np.frombuffer(bias.data, dtype="<i8"))
    return 1 if bool((reach <= INT32_MAX).all()) and min(multipliers) >= 0 else 2


def _lower_params(ctx: OpContext, kind: str, geometry: dict[str, int], depth_multiplier: int,
                  activation: str) -> LoweredOp:
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
            "acc32_fits": _acc32_fits(ctx, kind, mults),
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

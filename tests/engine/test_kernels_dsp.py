"""Shapes that reach the paths added to the DSP kernels (firmware/engine/ops_dsp/) for issue 6, byte for
byte against TFLite Micro on mps2-an386 (M4), mps2-an500 (M7) and mps3-an547 (M55, which uses the DSP
kernels as fallback): ADD without broadcasting (tabulated inputs), QUANTIZE / DEQUANTIZE on the FPU (with
rounding ties and the float32 just below 0.5), CONV_2D through the im2col + matrix
product path (odd pixel counts, odd channel counts, tap counts not a multiple of 4, the KWS-like 10x4
first layer; int16x8 with int64/int32/no bias, also over 508 taps) and above its tap limit (direct
path), int16x8 FULLY_CONNECTED up to depth 1000, int8 FULLY_CONNECTED over the compiler's pre-widened stream
(six units per pass, its requantization in registers and the general one).  More seeds: `-m slow`."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from host.compiler.compile import compile_bytes
from host.compiler.ops import conv as conv_ops
from host.core.boards import load_board
from host.emulators.launch import boot_elf
from host.engine import build
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter
from tests.support.chip import assert_bit_exact_on_chip, default_suite_boards
from tests.support.tflite_builder import ACTIVATIONS, GraphBuilder, fb
from tests.support.tflite_builder import GENERATORS as BUILDER_GENERATORS

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

BOARDS = ("mps2-an386", "mps2-an500", "mps3-an547")
SEEDS = 2
SLOW_SEEDS = 10
GEMM_MAX_TAPS = 1024  # TM_DSP_GEMM_MAX_TAPS in firmware/engine/ops_dsp/dsp_conv.h


def random_add_same_shape(rng: np.random.Generator) -> bytes:
    """int8 ADD of two tensors of the output's shape, large enough for the tabulated path (>= 256 elements)
    and small enough for the reference interpreter's arena (10x the model's bytes)."""
    g = GraphBuilder()
    shape = (1, int(rng.integers(6, 9)), int(rng.integers(6, 9)), int(rng.integers(8, 16)))
    scales = rng.uniform(0.01, 0.2, size=2)
    a = g.tensor(shape, "int8", float(scales[0]), int(rng.integers(-128, 128)))
    b = g.tensor(shape, "int8", float(scales[1]), int(rng.integers(-128, 128)))
    y = g.tensor(shape, "int8", float(rng.uniform(0.01, 0.2) * rng.uniform(1.0, 3.0)), int(rng.integers(-128, 128)))
    opt = fb.AddOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("ADD", [a, b], [y], opt)
    return g.build([a, b], [y])


def random_add_int16(rng: np.random.Generator) -> bytes:
    """int16 ADD (zero points 0, as TFLite requires) of two tensors of the output's shape: the DSP kernel's
    right-shift loop, and its general one for input scales 2^16 apart and more (TFLite Micro aborts on an output
    scale below 2^-15 of the inputs', the left shift)."""
    g = GraphBuilder()
    shape = (1, int(rng.integers(2, 9)), int(rng.integers(2, 9)), int(rng.integers(1, 16)))
    scales = rng.uniform(1e-4, 0.01, size=2)
    if rng.random() < 0.2:  # an input rescaled by a right shift beyond 16: add_s16_any
        scales[int(rng.integers(0, 2))] = max(scales) * float(rng.uniform(1e-7, 1e-5))
    out_scale = float(max(scales) * rng.uniform(0.3, 3.0))
    a = g.tensor(shape, "int16", float(scales[0]), 0)
    b = g.tensor(shape, "int16", float(scales[1]), 0)
    y = g.tensor(shape, "int16", out_scale, 0)
    opt = fb.AddOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("ADD", [a, b], [y], opt)
    return g.build([a, b], [y])


def random_conv(rng: np.random.Generator, kws: bool = False, big: bool = False) -> bytes:
    """int8 CONV_2D: `kws` a 10x4 filter over a one-channel input with stride 2 (KWS's first layer),
    `big` more taps than the column buffer holds, else random small shapes."""
    g = GraphBuilder()
    if kws:
        h, w, in_c, kh, kw, stride = int(rng.integers(10, 20)), int(rng.integers(4, 10)), 1, 10, 4, 2
    elif big:
        h, w, in_c, kh, kw, stride = 5, 5, int(rng.choice([120, 125])), 3, 3, 1
    else:
        h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        in_c, kh, kw = int(rng.integers(1, 24)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = int(rng.integers(1, 3))
    assert big == (kh * kw * in_c > GEMM_MAX_TAPS)
    same = bool(rng.random() < 0.6) or kh > h or kw > w
    out_h = (h + stride - 1) // stride if same else (h - kh + stride) // stride
    out_w = (w + stride - 1) // stride if same else (w - kw + stride) // stride
    out_c = int(rng.integers(1, 12)) if not kws else 64
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    out_scale = in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(kh * kw * in_c) * float(rng.uniform(0.3, 3)) / 127
    if rng.random() < 0.2:  # total shifts of 14..16: both forms of the requantization table (conv_2d_gemm.c)
        out_scale = in_scale * float(np.median(w_scales)) * float(rng.uniform(0.5, 2))
    weights = rng.integers(-127, 128, size=(out_c, kh, kw, in_c), dtype=np.int8)
    x = g.tensor((1, h, w, in_c), "int8", in_scale, in_zp)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int32)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias) if rng.random() < 0.9 else -1
    y = g.tensor((1, out_h, out_w, out_c), "int8", out_scale, int(rng.integers(-128, 128)))
    opt = fb.Conv2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = stride
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def _conv_int16(rng: np.random.Generator, dims: tuple[int, int, int, int, int],
                out_c_of: Callable[[], int], weights_of: Callable[[tuple[int, ...]], np.ndarray],
                bias_of: Callable[[GraphBuilder, int, np.ndarray, float], int]) -> bytes:
    """An int16x8 CONV_2D (int16 activations, zero point 0, int8 per-channel weights) of input h x w x in_c and
    a kh x kw filter, random stride, padding and activation; the generators choose channels, weights, bias."""
    h, w, in_c, kh, kw = dims
    g = GraphBuilder()
    stride = int(rng.integers(1, 3))
    same = bool(rng.random() < 0.6) or kh > h or kw > w
    out_h = (h + stride - 1) // stride if same else (h - kh + stride) // stride
    out_w = (w + stride - 1) // stride if same else (w - kw + stride) // stride
    out_c = out_c_of()
    in_scale = float(rng.uniform(0.005, 0.2)) / 256.0
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    out_scale = in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(kh * kw * in_c) * float(rng.uniform(0.3, 3)) / 127
    if rng.random() < 0.2:  # total shifts of 14..16: both forms of the requantization table (conv_2d_gemm.c)
        out_scale = in_scale * float(np.median(w_scales)) * float(rng.uniform(0.5, 2))
    weights = weights_of((out_c, kh, kw, in_c))
    x = g.tensor((1, h, w, in_c), "int16", in_scale, 0)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    b = bias_of(g, out_c, w_scales, in_scale)
    y = g.tensor((1, out_h, out_w, out_c), "int16", out_scale, 0)
    opt = fb.Conv2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = stride
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_conv_int16(rng: np.random.Generator, long: bool = False) -> bytes:
    """int16x8 CONV_2D (int64 or int32 bias or none) through the im2col path: `long` dot products of more
    than 508 taps."""
    h, w = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    in_c = int(rng.choice([60, 64, 61])) if long else int(rng.choice([1, 3, 4, 8, 12, 13]))
    kh, kw = (3, 3) if long else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))

    def bias_of(g: GraphBuilder, out_c: int, w_scales: np.ndarray, in_scale: float) -> int:
        bias_type = "int64" if rng.random() < 0.6 else "int32"
        bias = rng.integers(-500_000, 500_000, size=out_c).astype(bias_type)
        return g.tensor((out_c,), bias_type, list(in_scale * w_scales), 0, bias) if rng.random() < 0.85 else -1

    return _conv_int16(rng, (h, w, in_c, kh, kw), lambda: int(rng.integers(1, 10)),
                       lambda shape: rng.integers(-127, 128, size=shape, dtype=np.int8), bias_of)


def random_conv_int16_wide(rng: np.random.Generator) -> bytes:
    """int16x8 CONV_2D through the widened-weight path and its limits (conv_2d_gemm.c): out_c up to 130 (one
    or two chunks of widened weights, more than the 64 sums of a chunk, more than the 128 channels of the
    requantization table), and channels that must take the int64 route: weights all +-127 over 576 taps or
    a bias beyond int32 (|bias| + 32768 * sum |w| >= 2^31)."""
    h, w = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    in_c = int(rng.choice([3, 8, 16, 32, 64]))
    kh, kw = (3, 3) if in_c == 64 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))

    def weights_of(shape: tuple[int, ...]) -> np.ndarray:
        if rng.random() < 0.2:
            return rng.choice([-127, 127], size=shape).astype(np.int8)
        return rng.integers(-127, 128, size=shape, dtype=np.int8)

    def bias_of(g: GraphBuilder, out_c: int, w_scales: np.ndarray, in_scale: float) -> int:
        bias = rng.integers(-500_000, 500_000, size=out_c).astype(np.int64)
        if rng.random() < 0.2:
            bias[int(rng.integers(0, out_c))] = int(rng.choice([-1, 1])) * (1 << 33)
        return g.tensor((out_c,), "int64", list(in_scale * w_scales), 0, bias)

    return _conv_int16(rng, (h, w, in_c, kh, kw), lambda: int(rng.choice([2, 7, 16, 34, 66, 130])), weights_of,
                       bias_of)


def random_conv_int16_winograd(rng: np.random.Generator) -> bytes:
    """int16x8 CONV_2D 3x3, stride 1, over a ReLU's output (a 1x1 CONV_2D with ReLU before it): the Winograd
    F(2, 3) path (conv_2d_winograd16.c).  SAME and VALID, output widths not a multiple of 4 (a tile pair cut by
    the image's edge), in_c a multiple of 4 up to its 128, out_c even up to 130 (more than one 64-channel
    table), no activation, ReLU or ReLU6, an int64 bias or none, total shifts of 14..16 (both forms of the
    requantization table: the assembly requantization and the C one); now and then weights all +-127 over 1152
    taps or a bias of 2^30, whose sums may not fit (the compiler leaves the filter alone: the im2col path)."""
    g = GraphBuilder()
    h, w = int(rng.integers(1, 10)), int(rng.integers(2, 12))
    in_c = int(rng.choice([4, 8, 12, 16, 32, 64, 128]))
    out_c = int(rng.choice([2, 4, 6, 16, 18, 64])) if rng.random() < 0.85 else int(rng.choice([66, 130]))
    if in_c * out_c > 4096:   # the reference interpreter's arena and the test's time
        h, w = min(h, 5), min(w, 6)
    same = bool(rng.random() < 0.6) or h < 3 or w < 4
    out_h, out_w = (h, w) if same else (h - 2, w - 2)
    src_c = int(rng.choice([3, 8]))
    x_scale = float(rng.uniform(0.005, 0.2)) / 256.0
    x = g.tensor((1, h, w, src_c), "int16", x_scale, 0)
    s0 = rng.uniform(0.002, 0.05, size=in_c)
    f0 = g.tensor((in_c, 1, 1, src_c), "int8", list(s0), 0,
                  rng.integers(-127, 128, size=(in_c, 1, 1, src_c), dtype=np.int8), quantized_dimension=0)
    t_scale = x_scale * float(s0.mean()) * 60.0 * np.sqrt(src_c) / 127 * float(rng.uniform(0.3, 1.5))
    t = g.tensor((1, h, w, in_c), "int16", t_scale, 0)
    opt0 = fb.Conv2DOptionsT()
    opt0.padding, opt0.strideH, opt0.strideW, opt0.fusedActivationFunction = 0, 1, 1, 1   # ReLU
    g.op("CONV_2D", [x, f0, -1], [t], opt0)
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    out_scale = t_scale * float(w_scales.mean()) * 60.0 * np.sqrt(9 * in_c) * float(rng.uniform(0.3, 3)) / 127
    if rng.random() < 0.2:   # total shifts of 14..16
        out_scale = t_scale * float(np.median(w_scales)) * float(rng.uniform(0.5, 2))
    limit = 128 if in_c <= 64 else 60   # 32767 * 1152 * 60 / 2 < 2^30 (winograd16_sums_fit)
    weights = rng.integers(-limit + 1, limit, size=(out_c, 3, 3, in_c), dtype=np.int8)
    if rng.random() < 0.1:
        weights = rng.choice([-127, 127], size=weights.shape).astype(np.int8)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    bias = rng.integers(-500_000, 500_000, size=out_c).astype(np.int64)
    if rng.random() < 0.15:   # beyond winograd16_sums_fit's reach: the im2col path
        bias[int(rng.integers(0, out_c))] = int(rng.choice([-1, 1])) * (1 << 30)
    b = g.tensor((out_c,), "int64", list(t_scale * w_scales), 0, bias) if rng.random() < 0.85 else -1
    y = g.tensor((1, out_h, out_w, out_c), "int16", out_scale, 0)
    opt = fb.Conv2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = 1
    opt.fusedActivationFunction = int(rng.choice([0, 1, 3]))
    g.op("CONV_2D", [t, f, b], [y], opt)
    return g.build([x], [y])


def random_fc_int16(rng: np.random.Generator) -> bytes:
    """int16x8 FULLY_CONNECTED with depths up to 1000 (summed in parts beyond 508), int64/int32/no bias,
    per-tensor weights, units not a multiple of 4."""
    g = GraphBuilder()
    batches, depth, units = int(rng.integers(1, 3)), int(rng.integers(1, 1000)), int(rng.integers(1, 12))
    in_scale, w_scale = float(rng.uniform(0.005, 0.2)) / 256.0, float(rng.uniform(0.002, 0.05))
    out_scale = in_scale * w_scale * 60.0 * np.sqrt(depth) * float(rng.uniform(0.3, 3.0)) / 127.0
    weights = rng.integers(-127, 128, size=(units, depth), dtype=np.int8)
    x = g.tensor((batches, depth), "int16", in_scale, 0)
    f = g.tensor((units, depth), "int8", w_scale, 0, weights)
    bias_type = "int64" if rng.random() < 0.6 else "int32"
    bias = rng.integers(-500_000, 500_000, size=units).astype(bias_type)
    b = g.tensor((units,), bias_type, in_scale * w_scale, 0, bias) if rng.random() < 0.85 else -1
    y = g.tensor((batches, units), "int16", out_scale, 0)
    opt = fb.FullyConnectedOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("FULLY_CONNECTED", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_fc_int8_wide(rng: np.random.Generator, stored: bool = False) -> bytes:
    """int8 FULLY_CONNECTED over the compiler's pre-widened stream (ops_dsp/fully_connected.c, fc16_hextets):
    depths up to 1000 (runs of 128 elements jumped into, then repeated), unit counts up to 140 (hextets, the
    quads after them, odd counts, more hextets than one chunk of stored sums), the SMMLAR requantization in
    registers (no activation, or ReLU at zero point -128) and the stored sums' general one (other clamps,
    output scales that need a left shift), biases large enough that the compiler keeps the int8 weights.
    `stored`: always one of the general requantization's cases (a clamp narrower than int8, or a left shift)."""
    g = GraphBuilder()
    batches, depth = int(rng.integers(1, 3)), int(rng.choice([rng.integers(1, 140), rng.integers(120, 1000)]))
    units = int(rng.choice([rng.integers(1, 20), rng.integers(100, 141)]))
    in_scale, in_zp = float(rng.uniform(0.01, 0.2)), int(rng.integers(-128, 128))
    w_scale, small = float(rng.uniform(0.002, 0.05)), rng.random() < 0.4
    weights = rng.integers(-2 if small else -127, 3 if small else 128, size=(units, depth), dtype=np.int8)
    # sums spread over the int8 outputs (most not clamped, so the rounding shows), or for small weights a
    # right shift of 1 to 4 (rounding ties common), or a multiplier above 1 (a left shift)
    spread = 147.0 * (1.0 if small else 73.0) * np.sqrt(depth) / 100.0 * float(rng.uniform(0.5, 2.0))
    out_scale = in_scale * w_scale * (2.0 ** int(rng.integers(1, 5)) * float(rng.uniform(1.0, 1.9)) if small
                                      else spread)
    left_shift = rng.random() < (0.5 if stored else 0.15)
    if left_shift:
        out_scale = in_scale * w_scale * float(rng.uniform(0.3, 0.9))
    bias = rng.integers(-3000 * depth, 3000 * depth, size=units).astype(np.int32)
    if rng.random() < 0.1:   # |bias| + depth * 255 * 128 >= 2^30: no pre-widened stream
        bias[int(rng.integers(units))] = int(rng.choice([-1, 1])) * (2 ** 30 - depth * 255 * 64)
    x = g.tensor((batches, depth), "int8", in_scale, in_zp)
    f = g.tensor((units, depth), "int8", w_scale, 0, weights)
    b = g.tensor((units,), "int32", in_scale * w_scale, 0, bias) if rng.random() < 0.85 else -1
    activation = int(rng.choice([1, 3] if stored and not left_shift else [0, 0, 1, 3]))
    out_zp = int(rng.choice([-128, 127, rng.integers(-128, 128)]))
    if activation:   # ReLU at zero point -128 clamps nothing; above it, the clamp is narrower than int8
        out_zp = int(rng.integers(-127, 128)) if stored or rng.random() < 0.5 else -128
    y = g.tensor((batches, units), "int8", out_scale, out_zp)
    opt = fb.FullyConnectedOptionsT()
    opt.fusedActivationFunction = activation
    g.op("FULLY_CONNECTED", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_conv_no_act(rng: np.random.Generator, depthwise: bool) -> bytes:
    """int8 (depthwise) CONV_2D with no fused activation (act range all of int8): the requantization with
    the output offset folded into the rounding constant and SSAT as the clamp (tm_dsp_rq_table), output
    zero points up to the int8 limits; depthwise 3x3 with SAME padding reaches both the pre-widened
    filter (pixels that see the whole filter) and the tap-list path (border pixels)."""
    g = GraphBuilder()
    h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    in_c = int(rng.choice([4, 8, 13, 36] if depthwise else [4, 8, 16, 24]))
    kh = kw = 3 if depthwise else 1
    stride = int(rng.integers(1, 3)) if depthwise else 1
    out_h, out_w = (h + stride - 1) // stride, (w + stride - 1) // stride
    out_c = in_c if depthwise else int(rng.choice([4, 8, 16, 17]))
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    # every effective scale below 1/2 (right shifts only: the assembly requantization's condition)
    out_scale = in_scale * float(w_scales.max()) * 2.0 * float(rng.uniform(1.0, 4.0))
    out_zp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    shape = (1, kh, kw, out_c) if depthwise else (out_c, kh, kw, in_c)
    weights = rng.integers(-127, 128, size=shape, dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int32)
    x = g.tensor((1, h, w, in_c), "int8", in_scale, in_zp)
    f = g.tensor(shape, "int8", list(w_scales), 0, weights, quantized_dimension=3 if depthwise else 0)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias)
    y = g.tensor((1, out_h, out_w, out_c), "int8", out_scale, out_zp)
    opt = fb.DepthwiseConv2DOptionsT() if depthwise else fb.Conv2DOptionsT()
    if depthwise:
        opt.depthMultiplier = 1
    opt.padding = 0
    opt.strideH, opt.strideW = stride, stride
    opt.dilationHFactor, opt.dilationWFactor = 1, 1
    opt.fusedActivationFunction = 0
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_conv_wide(rng: np.random.Generator, rgb_stride2: bool = False) -> bytes:
    """int8 CONV_2D on the path over weights widened once per op (conv_2d_wide.c): an activation range of
    all of int8 (none, or ReLU with output zero point -128), even out_c (odd: the fallback), up to 256 taps
    rounded to 4 (some beyond: the fallback), several channel chunks (few pixels: all columns filled once),
    in_c not a multiple of 4 (staged columns, zero-weight padding taps, the 3x3 RGB fast fill), a lone last
    pixel, 1x1 pointwise layers, and channels whose bias is near +-2^30 with a tiny scale (constant
    outputs, decided from the weights' exact range).  `rgb_stride2`: VWW's first layer, 3x3 stride 2 over
    3 channels of an image wide enough for row triples of windows inside it (rgb3_triple_s2), and its
    border (the per-pixel fills)."""
    g = GraphBuilder()
    kind = 6 if rgb_stride2 else int(rng.integers(0, 6))
    h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    dilation = 1
    if kind == 6:
        h, w = int(rng.integers(7, 20)), int(rng.integers(7, 26))
        in_c, kh, kw, stride = 3, 3, 3, 2
    elif kind == 5:  # few input channels, tall filters (KWS's first layer: 1 channel, 10x4, stride 2): the padded plane
        h, w = int(rng.integers(8, 20)), int(rng.integers(3, 10))
        in_c, kh, kw = int(rng.choice([1, 1, 2, 3, 5])), int(rng.integers(1, 11)), int(rng.integers(1, 5))
        stride, dilation = int(rng.integers(1, 3)), int(rng.choice([1, 1, 2]))
    elif kind == 0:  # 1x1 pointwise, stride 1
        in_c, kh, kw, stride = int(rng.choice([4, 8, 16, 64, 256, 3, 6, 12])), 1, 1, 1
    elif kind == 4:  # few pixels, several chunks: the columns of all pixels filled once (VWW's last layers)
        h, w = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        in_c, kh, kw, stride = int(rng.choice([128, 256])), 1, 1, 1
    elif kind == 1:  # an RGB-like first layer
        h, w = h + 2, w + 2
        in_c, kh, kw, stride = int(rng.choice([1, 2, 3])), 3, 3, int(rng.integers(1, 3))
    elif kind == 2:  # near the tap limit: 3x3x28 = 252 (chunks of 8 channels), 3x3x29 = 261 (fallback)
        h, w = max(h, 4), max(w, 4)
        in_c, kh, kw, stride = int(rng.choice([28, 29, 27])), 3, 3, 1
    else:
        h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        in_c, kh, kw = int(rng.integers(1, 24)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = int(rng.integers(1, 3))
    kh_eff = (kh - 1) * dilation + 1
    same = bool(rng.random() < 0.6) or kh_eff > h or kw > w
    out_h = (h + stride - 1) // stride if same else (h - kh_eff + stride) // stride
    out_w = (w + stride - 1) // stride if same else (w - kw + stride) // stride
    out_c = int(rng.choice([2, 4, 8, 16, 24])) if rng.random() < 0.85 else int(rng.choice([3, 9]))
    out_c = int(rng.choice([18, 32])) if kind == 4 else 64 if kind == 5 and rng.random() < 0.3 else out_c
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    taps = kh * kw * in_c
    out_scale = in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(taps) * float(rng.uniform(0.3, 3)) / 127
    out_scale *= float(rng.choice([1.0, 4.0, 16.0]))  # mostly right shifts (shift 0 or left: the fallback)
    weights = rng.integers(-127, 128, size=(out_c, kh, kw, in_c), dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int64)
    for oc in rng.choice(out_c, size=int(rng.integers(0, 3)), replace=False):  # dead channels: tiny scale, bias ~2^30
        w_scales[oc] = 1e-9
        bias[oc] = int(rng.choice([-(1 << 30), 1 << 30, -(1 << 30) + 64, (1 << 30) - 64]))
    bias = bias.astype(np.int32)
    relu = bool(rng.random() < 0.5)
    out_zp = -128 if relu else int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    x = g.tensor((1, h, w, in_c), "int8", in_scale, in_zp)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias)
    y = g.tensor((1, out_h, out_w, out_c), "int8", out_scale, out_zp)
    opt = fb.Conv2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = stride
    opt.dilationHFactor, opt.dilationWFactor = dilation, 1
    opt.fusedActivationFunction = 1 if relu else 0
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_conv_winograd(rng: np.random.Generator) -> bytes:
    """int8 CONV_2D 3x3, stride 1, on the Winograd path (conv_2d_winograd.c): SAME and VALID, odd and even
    output sizes (tile pairs cut by the image's edge: the C store), in_c a multiple of 4 up to its 128, out_c
    even up to 130 (more than one 64-channel table), input zero points at the int8 ends, no activation, ReLU
    with output zero point -128 (the assembly store) or ReLU6 (a narrower range: the C store), and channels with
    a tiny scale and a bias near +-2^30 (constant outputs) or a multiplier above 1 (a left shift: the C store)."""
    g = GraphBuilder()
    h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
    in_c = int(rng.choice([4, 8, 12, 16, 32, 64, 128]))
    out_c = int(rng.choice([2, 4, 6, 16, 18, 64])) if rng.random() < 0.85 else int(rng.choice([66, 130]))
    if in_c * out_c > 4096:   # the reference interpreter's arena and the test's time
        h, w = min(h, 6), min(w, 6)
    same = bool(rng.random() < 0.6) or h < 4 or w < 4
    out_h, out_w = (h, w) if same else (h - 2, w - 2)
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    out_scale = in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(9 * in_c) * float(rng.uniform(0.3, 3)) / 127
    weights = rng.integers(-127, 128, size=(out_c, 3, 3, in_c), dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int64)
    for oc in rng.choice(out_c, size=int(rng.integers(0, 3)), replace=False):
        if rng.random() < 0.7:   # dead channel: tiny scale, bias ~2^30
            w_scales[oc] = 1e-9
            bias[oc] = int(rng.choice([-(1 << 30), 1 << 30, -(1 << 30) + 64, (1 << 30) - 64]))
        else:                    # multiplier > 1
            w_scales[oc] = out_scale / in_scale * float(rng.uniform(1.5, 3.0))
    activation = int(rng.choice([0, 1, 3]))   # none, ReLU, ReLU6
    out_zp = -128 if activation == 1 and rng.random() < 0.8 else int(rng.integers(-128, 128))
    x = g.tensor((1, h, w, in_c), "int8", in_scale, in_zp)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias.astype(np.int32))
    y = g.tensor((1, out_h, out_w, out_c), "int8", out_scale, out_zp)
    opt = fb.Conv2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = 1
    opt.fusedActivationFunction = activation
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def _dw3x3(rng: np.random.Generator, in_shape: tuple[int, int, int], out_hw: tuple[int, int], stride: int,
           same: bool, scales: tuple, weights: np.ndarray, bias: np.ndarray) -> bytes:
    """The model of one int8 DEPTHWISE_CONV_2D 3x3 (depth multiplier 1): no activation, or ReLU with
    output zero point -128 (a full int8 range either way)."""
    (h, w, ch), (out_h, out_w), (in_scale, in_zp, w_scales, out_scale) = in_shape, out_hw, scales
    g = GraphBuilder()
    relu = bool(rng.random() < 0.5)
    out_zp = -128 if relu else int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    x = g.tensor((1, h, w, ch), "int8", in_scale, in_zp)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=3)
    b = g.tensor((ch,), "int32", list(in_scale * w_scales), 0, bias.astype(np.int32))
    y = g.tensor((1, out_h, out_w, ch), "int8", out_scale, out_zp)
    opt = fb.DepthwiseConv2DOptionsT()
    opt.depthMultiplier = 1
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = stride
    opt.dilationHFactor, opt.dilationWFactor = 1, 1
    opt.fusedActivationFunction = 1 if relu else 0
    g.op("DEPTHWISE_CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_dw_run(rng: np.random.Generator) -> bytes:
    """int8 DEPTHWISE_CONV_2D 3x3 on the interior-run path (depthwise_conv_2d.c, dw3_run): SAME and VALID,
    strides 1 and 2, no activation or ReLU with output zero point -128, channels a multiple of 4 up to the
    128 of its table (132 and 13: the tap-list path), interiors around its threshold of 8 pixels, and
    channels with a tiny scale and a bias near +-2^30 (constant outputs)."""
    h, w = int(rng.integers(3, 12)), int(rng.integers(3, 12))
    ch = int(rng.choice([4, 8, 16, 64, 128, 132, 13]))
    stride = int(rng.integers(1, 3))
    same = bool(rng.random() < 0.6)
    out_h = (h + stride - 1) // stride if same else (h - 3 + stride) // stride
    out_w = (w + stride - 1) // stride if same else (w - 3 + stride) // stride
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    w_scales = rng.uniform(0.002, 0.05, size=ch)
    out_scale = in_scale * float(w_scales.max()) * 2.0 * float(rng.uniform(1.0, 8.0))
    weights = rng.integers(-127, 128, size=(1, 3, 3, ch), dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=ch).astype(np.int64)
    for k in rng.choice(ch, size=int(rng.integers(0, 3)), replace=False):
        w_scales[k] = 1e-9
        bias[k] = int(rng.choice([-(1 << 30), 1 << 30, -(1 << 30) + 64, (1 << 30) - 64]))
    return _dw3x3(rng, (h, w, ch), (out_h, out_w), stride, same, (in_scale, in_zp, w_scales, out_scale), weights, bias)


def random_dw_planar(rng: np.random.Generator, big_planes: bool = False) -> bytes:
    """int8 DEPTHWISE_CONV_2D 3x3, stride 1, on the channel-plane path (depthwise_conv_2d_planar.c): runs
    along x and (taller than wide) along y, odd and even run lengths, SAME and VALID, any channel count,
    no activation or ReLU with output zero point -128; channels with a tiny scale and a bias near +-2^30
    (constant outputs) and channels whose multiplier exceeds 1 (a left shift: the one-output-at-a-time
    fallback); sizes around the path's limits (25 pixels; runs of 62, 64 plane rows).  `big_planes`: both
    sides 17 to 40 (VWW's 48 x 48 and 24 x 24 layers), too many runs for four planes at once: each plane
    filled alone (fill_quads), at either alignment of its rows."""
    long_side, short_side = int(rng.choice([5, 9, 25, 40, 61, 62, 63, 64])), int(rng.integers(3, 14))
    if big_planes:
        long_side, short_side = int(rng.integers(17, 41)), int(rng.integers(17, 41))
    h, w = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
    ch = int(rng.choice([1, 3, 4, 8, 13, 16]))
    same = bool(rng.random() < 0.6)
    out_h, out_w = (h, w) if same else (h - 2, w - 2)
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    w_scales = rng.uniform(0.002, 0.05, size=ch)
    out_scale = in_scale * float(w_scales.max()) * 2.0 * float(rng.uniform(1.0, 8.0))
    weights = rng.integers(-127, 128, size=(1, 3, 3, ch), dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=ch).astype(np.int64)
    for k in rng.choice(ch, size=int(rng.integers(0, min(ch, 2) + 1)), replace=False):
        if rng.random() < 0.5:
            w_scales[k] = 1e-9
            bias[k] = int(rng.choice([-(1 << 30), 1 << 30, -(1 << 30) + 64, (1 << 30) - 64]))
        else:
            w_scales[k] = out_scale / in_scale * float(rng.uniform(1.5, 3.0))   # multiplier > 1
    return _dw3x3(rng, (h, w, ch), (out_h, out_w), 1, same, (in_scale, in_zp, w_scales, out_scale), weights, bias)


GENERATORS = {
    "DEPTHWISE_CONV_2D_PLANAR": random_dw_planar,
    "DEPTHWISE_CONV_2D_PLANAR_BIG": lambda rng: random_dw_planar(rng, big_planes=True),
    "DEPTHWISE_CONV_2D_RUN": random_dw_run,
    "DEPTHWISE_CONV_2D_RUN_MORE": random_dw_run,
    "CONV_2D_WINOGRAD": random_conv_winograd,
    "CONV_2D_WINOGRAD_MORE": random_conv_winograd,
    "CONV_2D_WIDE": random_conv_wide,
    "CONV_2D_WIDE_MORE": random_conv_wide,
    "CONV_2D_WIDE_RGB_STRIDE2": lambda rng: random_conv_wide(rng, rgb_stride2=True),
    "CONV_2D_NO_ACT": lambda rng: random_conv_no_act(rng, depthwise=False),
    "DEPTHWISE_CONV_2D_NO_ACT": lambda rng: random_conv_no_act(rng, depthwise=True),
    "ADD_SAME_SHAPE": random_add_same_shape,
    "ADD_INT16": random_add_int16,
    "CONV_2D_GEMM": random_conv,
    "CONV_2D_KWS": lambda rng: random_conv(rng, kws=True),
    "CONV_2D_DIRECT": lambda rng: random_conv(rng, big=True),
    "CONV_2D_INT16": random_conv_int16,
    "CONV_2D_INT16_LONG": lambda rng: random_conv_int16(rng, long=True),
    "CONV_2D_INT16_WIDE": random_conv_int16_wide,
    "CONV_2D_INT16_WINOGRAD": random_conv_int16_winograd,
    "FULLY_CONNECTED_INT16": random_fc_int16,
    "FULLY_CONNECTED_WIDE": random_fc_int8_wide,
    "FULLY_CONNECTED_WIDE_STORED": lambda rng: random_fc_int8_wide(rng, stored=True),
    "QUANTIZE": BUILDER_GENERATORS["QUANTIZE"],
    "DEQUANTIZE": BUILDER_GENERATORS["DEQUANTIZE"],
}


@pytest.fixture(scope="session")
def dsp_board_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return {name: tmp_path_factory.mktemp(f"dsp-{name}") for name in BOARDS}


def _check(board_name: str, op: str, seeds: range, dirs: dict) -> None:  # noqa: ANN001
    for seed in seeds:
        rng = np.random.default_rng([seed, sum(op.encode()), 61])
        assert_bit_exact_on_chip(board_name, dirs[board_name], GENERATORS[op](rng), f"{op} seed {seed}", rng)


def default_cases() -> list:
    """(board, op) for the default suite: the M4's; the M7's and the M55's marked slow (the same C compiled for
    other cores; the M55's builds leave out the paths Helium runs, e.g. TM_CONV_WINOGRAD and TM_FC_WEIGHTS16 are 0
    there); `make test-slow` runs them, and every shared model on every board (tests/core/test_boards.py)."""
    cases = []
    for board in default_suite_boards(BOARDS):
        name = board if isinstance(board, str) else board.values[0]
        for op in sorted(GENERATORS):
            slow = not isinstance(board, str) or name == "mps3-an547"
            cases.append(pytest.param(name, op, marks=pytest.mark.slow) if slow else pytest.param(name, op))
    return cases


@pytest.mark.parametrize(("board_name", "op"), default_cases())
def test_dsp_paths(board_name: str, op: str, dsp_board_dirs: dict) -> None:
    _check(board_name, op, range(SEEDS), dsp_board_dirs)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(GENERATORS))
@pytest.mark.parametrize("board_name", BOARDS)
def test_dsp_paths_more_seeds(board_name: str, op: str, dsp_board_dirs: dict) -> None:
    _check(board_name, op, range(SEEDS, SEEDS + SLOW_SEEDS), dsp_board_dirs)


def test_wide_conv_without_the_compilers_copies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where a build leaves the compiler's copies out (a board short of flash: TM_CONV_WEIGHTS16=0,
    TM_CONV_WIDE_RQ=0), the wide CONV_2D path widens and doubles the weights itself, in the order wide_triples
    reads them, and computes the requantization words: bit-exact the same."""
    def leave_all_out(model, board, mlperf=False):  # noqa: ANN001, ANN202
        return dataclasses.replace(model, guarded_bytes={}), {macro: "0" for macro in model.guarded_bytes}

    monkeypatch.setattr(build, "without_guarded_if_short", leave_all_out)
    for seed in range(4):
        rng = np.random.default_rng([seed, 97])
        data = random_conv_wide(rng)
        model = compile_bytes(data, name="chip_model")
        out = tmp_path / str(seed)
        assert_bit_exact_on_chip("mps2-an386", out, data, f"CONV_2D_WIDE without copies, seed {seed}", rng, model)
        assert build_firmware(model, load_board("mps2-an386"), out).kernel_weights_bytes == 0


def quantize_edges() -> np.ndarray:
    """Float inputs whose quotient by a power-of-two scale is a rounding tie, the float32 just below 0.5,
    values near the int8/int16 limits and beyond them (saturation; not beyond int32, where TFLM's cast is
    undefined). The first value is no tie, so that ties fall both first and second in the int8 kernel's pairs."""
    below_half = float(np.nextafter(np.float32(0.5), np.float32(0)))
    base = [0.25, 0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, below_half, -below_half, 126.5, 127.5, -128.5, -129.5,
            32766.5, 32767.5, -32768.5, 1048575.5, 1048576.0, -1048577.0, 5.0e8, -5.0e8]
    return np.array(base + [k + 0.5 for k in range(-200, 200, 7)], dtype=np.float32)


def reciprocal_traps(scale: float, n: int) -> np.ndarray:
    """n float32 inputs (the first found, then zeros) whose quotient by `scale` lies within +-120 (not clamped
    to int8 with a small zero point) and whose quotient and product by its float32 reciprocal round half away
    from zero to different integers: a QUANTIZE that multiplies must notice these and divide."""
    s = np.float32(scale)
    inv = np.float32(1) / s
    found = []
    for k in range(120):
        x = np.float32((k + 0.5) * float(s))
        for _ in range(4):
            for candidate in (x, -x):
                q, qp = np.float64(candidate / s), np.float64(candidate * inv)
                if np.sign(q) * np.floor(abs(q) + 0.5) != np.sign(qp) * np.floor(abs(qp) + 0.5):
                    found.append(candidate)
            x = np.nextafter(x, np.float32(np.inf))
    out = np.zeros(n, dtype=np.float32)
    out[:min(n, len(found))] = found[:n]
    return out


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("board_name", default_suite_boards(BOARDS))
def test_quantize_rounding_edges(board_name: str, dtype: str, dsp_board_dirs: dict) -> None:
    edges = quantize_edges()
    # 0.013: quotients and products by the reciprocal round differently (reciprocal_traps; the raw edges' quotients
    # would pass int32)
    for scale, zp in ((1.0, 0), (0.25, 3), (1.0, -7), (0.013, 5)):
        g = GraphBuilder()
        x = g.tensor((len(edges),), "float32")
        y = g.tensor((len(edges),), dtype, scale, zp)
        g.op("QUANTIZE", [x], [y])
        data = g.build([x], [y])
        model = compile_bytes(data, name="quantize_edges")
        image = build_firmware(model, load_board(board_name), dsp_board_dirs[board_name])
        with boot_elf(load_board(board_name), image.elf, model.sha256, timeout_s=60) as device:
            tried = [reciprocal_traps(scale, len(edges))] if scale == 0.013 else [edges]
            for xs in (edges * np.float32(scale), *tried):
                ours, _ = device.infer_arrays(xs.astype(np.float32))
                golden = ReferenceInterpreter(data).run(xs.astype(np.float32))
                assert ours[0].tobytes() == golden[0].tobytes(), (board_name, dtype, scale, zp, ours[0], golden[0])


def conv_int16_winograd_over_model_input(rng: np.random.Generator) -> bytes:
    """An int16x8 CONV_2D 3x3, stride 1, SAME, ReLU, directly over the model's (signed) input: the compiler gives it
    no Winograd filter (input_after_relu is false)."""
    g = GraphBuilder()
    h, w, in_c, out_c = 6, 7, 8, 6
    x_scale = 0.05 / 256.0
    x = g.tensor((1, h, w, in_c), "int16", x_scale, 0)
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    weights = rng.integers(-127, 128, size=(out_c, 3, 3, in_c), dtype=np.int8)
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    bias = rng.integers(-500_000, 500_000, size=out_c).astype(np.int64)
    b = g.tensor((out_c,), "int64", list(x_scale * w_scales), 0, bias)
    y = g.tensor((1, h, w, out_c), "int16", x_scale * float(w_scales.mean()) * 1200.0, 0)
    opt = fb.Conv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW, opt.fusedActivationFunction = 0, 1, 1, 1
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def test_winograd16_hands_a_negative_input_to_im2col(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """conv_2d_winograd16.c's F(2, 3) is exact only over inputs in [0, 32767], which the compiler's graph rule
    (input_after_relu) promises; the kernel still checks the input's signs and hands anything else to the im2col
    path.  With the rule forced true over a signed model input: the filter is there, and the chip matches TFLite
    Micro both on inputs with negative values (the fallback) and on their magnitudes (the Winograd path)."""
    monkeypatch.setattr(conv_ops, "input_after_relu", lambda ctx: True)
    data = conv_int16_winograd_over_model_input(np.random.default_rng([3, 11]))
    model = compile_bytes(data, name="wino16_signed")
    assert "TM_CONV_WINOGRAD16" in model.guarded_bytes
    board = load_board("mps2-an386")
    image = build_firmware(model, board, tmp_path)
    reference = ReferenceInterpreter(data)
    rng = np.random.default_rng(5)
    signed = rng.integers(-32768, 32768, size=model.inputs[0].shape).astype(np.int16)
    with boot_elf(board, image.elf, model.sha256, timeout_s=60) as device:
        for label, xs in (("signed", signed), ("magnitudes", np.abs(signed.astype(np.int32)).clip(0, 32767))):
            xs = xs.astype(np.int16)
            assert (xs < 0).any() == (label == "signed")
            ours, _ = device.infer_arrays(xs)
            golden = reference.run(xs)
            assert ours[0].tobytes() == golden[0].tobytes(), (label, ours[0], golden[0])


def test_winograd_paths_only_in_the_firmware_of_models_that_have_them(tmp_path: Path) -> None:
    """The Winograd paths run only over the compiler's transformed filters (TM_CONV_WINOGRAD, TM_CONV_WINOGRAD16):
    a model without them gets firmware without their code (host/engine/build.py, DATA_ONLY_PATHS)."""
    def symbols(data: bytes, name: str) -> str:
        image = build_firmware(compile_bytes(data, name=name), load_board("mps2-an386"), tmp_path / name)
        return subprocess.run([build.toolchain("nm"), str(image.elf)], capture_output=True, text=True,
                              check=True).stdout

    int16 = symbols(random_conv_int16_winograd(np.random.default_rng([0, 5])), "int16_wino")
    assert "wino16_run_end" in int16 and "wino_run_end" not in int16
    int8 = symbols(random_conv_winograd(np.random.default_rng([0, 7])), "int8_wino")
    assert "wino_run_end" in int8 and "wino16_run_end" not in int8

"""Shapes that reach the Helium kernels (firmware/engine/ops_mve/) and their edges, byte for byte against
TFLite Micro on mps3-an547 (Cortex-M55): DEPTHWISE_CONV_2D with channel counts around the 16- and 8-lane
passes and the 64-channel table chunk, border and interior pixels, strides, dilation, 8-channel layers
(two pixels per pass), depth multipliers (DSP fallback); CONV_2D im2col patches (RGB, KWS-like 10x4,
dilation, all-border windows), 1x1 layers with 1-16 input channels (row loop) and with wide inputs, more
output channels than one chunk and patches above the stack buffer (DSP fallback); ADD without
broadcasting (vector path) and with it (fallback); FULLY_CONNECTED unit counts around the 4-unit pass.
More seeds: `-m slow`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.support.chip import assert_bit_exact_on_chip
from tests.support.tflite_builder import ACTIVATIONS, GENERATORS, GraphBuilder, fb

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

BOARD = "mps3-an547"
SEEDS = 2
SLOW_SEEDS = 8
PATCH_BYTES = 1152  # TM_MVE_PATCH_BYTES in firmware/engine/ops_mve/mve_common.h


def _pow2(rng: np.random.Generator, scale: float, spread: int = 0) -> float:
    """The power of two nearest `scale` (times 2^-spread..2^spread): with power-of-two scales every
    multiplier is exactly 2^30 and the accumulators land on rounding ties in both roundings."""
    return float(2.0 ** (np.round(np.log2(scale)) + int(rng.integers(-spread, spread + 1))))


def _conv(rng: np.random.Generator, h: int, w: int, in_c: int, kh: int, kw: int, out_c: int, stride: int,
          dilation: int = 1, depthwise: bool = False, same: bool | None = None, ties: bool = False) -> bytes:
    """One int8 (depthwise) convolution, per-channel weights, random activation and quantization
    (`ties`: power-of-two scales, some giving left shifts)."""
    g = GraphBuilder()
    eff_h, eff_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if same is None:
        same = bool(rng.random() < 0.6)
    same = same or eff_h > h or eff_w > w
    out_h = (h + stride - 1) // stride if same else (h - eff_h + stride) // stride
    out_w = (w + stride - 1) // stride if same else (w - eff_w + stride) // stride
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    fan_in = kh * kw * (1 if depthwise else in_c)
    out_scale = in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(fan_in) * float(rng.uniform(0.3, 3.0)) / 127.0
    if ties:
        in_scale, w_scales = _pow2(rng, in_scale), np.array([_pow2(rng, s, 1) for s in w_scales])
        out_scale = _pow2(rng, out_scale, 3)
    shape = (1, kh, kw, out_c) if depthwise else (out_c, kh, kw, in_c)
    weights = rng.integers(-127, 128, size=shape, dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int32)
    x = g.tensor((1, h, w, in_c), "int8", in_scale, in_zp)
    f = g.tensor(shape, "int8", list(w_scales), 0, weights, quantized_dimension=3 if depthwise else 0)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias) if depthwise or rng.random() < 0.9 else -1
    y = g.tensor((1, out_h, out_w, out_c), "int8", out_scale, int(rng.integers(-128, 128)))
    opt = fb.DepthwiseConv2DOptionsT() if depthwise else fb.Conv2DOptionsT()
    if depthwise:
        opt.depthMultiplier = out_c // in_c
    opt.padding = 0 if same else 1
    opt.strideH = opt.strideW = stride
    opt.dilationHFactor = opt.dilationWFactor = dilation
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_depthwise(rng: np.random.Generator) -> bytes:
    """Channels around the 16-lane pass, the 8-lane rest and the 64-channel chunk; 3x3 or other windows."""
    c = int(rng.choice([1, 3, 8, 9, 15, 16, 17, 24, 33, 64, 72]))
    kh, kw = (3, 3) if rng.random() < 0.6 else (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    dilation = int(rng.integers(1, 3)) if rng.random() < 0.25 else 1
    return _conv(rng, int(rng.integers(1, 9)), int(rng.integers(1, 9)), c, kh, kw, c,
                 int(rng.integers(1, 3)), dilation, depthwise=True)


def random_depthwise_pairs(rng: np.random.Generator) -> bytes:
    """8 channels, stride 1: two neighbouring interior pixels per 16-lane pass (windows up to 5x5, beyond
    that one pixel per pass), odd widths so that rows end on a single pixel, dilation sometimes."""
    kh, kw = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    dilation = int(rng.integers(1, 3)) if rng.random() < 0.25 else 1
    return _conv(rng, int(rng.integers(1, 10)), int(rng.integers(1, 12)), 8, kh, kw, 8, 1, dilation,
                 depthwise=True)


def random_ties(rng: np.random.Generator) -> bytes:
    """CONV_2D (3x3 or 1x1 small) or DEPTHWISE_CONV_2D with power-of-two scales: rounding ties in the vector
    requantization, negative and positive, and left shifts."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return _conv(rng, 5, 5, int(rng.integers(1, 20)), 3, 3, int(rng.integers(1, 12)), 1, ties=True)
    if kind == 1:
        return _conv(rng, 5, 5, int(rng.integers(1, 17)), 1, 1, int(rng.integers(1, 12)), 1, ties=True)
    c = int(rng.choice([8, 16, 24]))
    return _conv(rng, 5, 5, c, 3, 3, c, 1, depthwise=True, ties=True)


def random_depthwise_multiplier(rng: np.random.Generator) -> bytes:
    """Depth multiplier 2-3 (the DSP/portable fallback inside the Helium kernel)."""
    in_c = int(rng.integers(1, 9))
    return _conv(rng, int(rng.integers(2, 7)), int(rng.integers(2, 7)), in_c, 3, 3, in_c * int(rng.integers(2, 4)),
                 int(rng.integers(1, 3)), depthwise=True)


def random_conv_patch(rng: np.random.Generator) -> bytes:
    """im2col patches: RGB 3x3, KWS-like 10x4 over one channel, dilation, windows larger than the image."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return _conv(rng, int(rng.integers(3, 10)), int(rng.integers(3, 10)), 3, 3, 3, int(rng.integers(1, 20)),
                     int(rng.integers(1, 3)))
    if kind == 1:
        return _conv(rng, int(rng.integers(10, 16)), int(rng.integers(4, 8)), 1, 10, 4, int(rng.integers(1, 20)),
                     2, same=True)
    if kind == 2:
        return _conv(rng, int(rng.integers(4, 9)), int(rng.integers(4, 9)), int(rng.integers(1, 20)), 3, 3,
                     int(rng.integers(1, 12)), int(rng.integers(1, 3)), dilation=2)
    return _conv(rng, 2, 3, int(rng.integers(1, 40)), 5, 5, int(rng.integers(1, 9)), 1, same=True)


def random_conv_1x1_small(rng: np.random.Generator) -> bytes:
    """1x1 layers with 1-16 input channels (one predicated vector per pixel, row loop in assembly), output
    channel counts around the 4-channel groups, strides 1-2."""
    return _conv(rng, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 17)), 1, 1,
                 int(rng.integers(1, 24)), int(rng.integers(1, 3)))


def random_conv_wide(rng: np.random.Generator) -> bytes:
    """1x1 layers with wide inputs (direct pointer, no copy), more than one 64-channel chunk of outputs, and
    patches above the stack buffer (DSP fallback)."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return _conv(rng, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(100, 300)), 1, 1,
                     int(rng.integers(1, 40)), int(rng.integers(1, 3)))
    if kind == 1:
        return _conv(rng, int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 20)), 3, 3,
                     int(rng.integers(65, 140)), 1)
    in_c = PATCH_BYTES // 9 + int(rng.integers(1, 20))
    return _conv(rng, 3, 3, in_c, 3, 3, int(rng.integers(1, 6)), 1, same=True)


def random_add_same_shape(rng: np.random.Generator) -> bytes:
    """int8 ADD of two tensors of the output's shape (the vector path), any element count."""
    g = GraphBuilder()
    shape = (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 20)))
    scales = rng.uniform(0.01, 0.2, size=2)
    a = g.tensor(shape, "int8", float(scales[0]), int(rng.integers(-128, 128)))
    b = g.tensor(shape, "int8", float(scales[1]), int(rng.integers(-128, 128)))
    y = g.tensor(shape, "int8", float(rng.uniform(0.01, 0.2) * rng.uniform(1.0, 3.0)), int(rng.integers(-128, 128)))
    opt = fb.AddOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("ADD", [a, b], [y], opt)
    return g.build([a, b], [y])


def random_fc_units(rng: np.random.Generator) -> bytes:
    """FULLY_CONNECTED with 1-13 units (the 4-unit pass and its tail), depths around 16, batches 1-3."""
    g = GraphBuilder()
    batches, depth, units = int(rng.integers(1, 4)), int(rng.choice([1, 15, 16, 17, 31, 64, 130])), int(
        rng.integers(1, 14))
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    w_scale = float(rng.uniform(0.002, 0.05))
    out_scale = in_scale * w_scale * 60.0 * np.sqrt(depth) * float(rng.uniform(0.3, 3.0)) / 127.0
    x = g.tensor((batches, depth), "int8", in_scale, in_zp)
    f = g.tensor((units, depth), "int8", w_scale, 0, rng.integers(-127, 128, size=(units, depth), dtype=np.int8))
    b = g.tensor((units,), "int32", in_scale * w_scale, 0, rng.integers(-3000, 3000, size=units).astype(np.int32))
    y = g.tensor((batches, units), "int8", out_scale, int(rng.integers(-128, 128)))
    opt = fb.FullyConnectedOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("FULLY_CONNECTED", [x, f, b], [y], opt)
    return g.build([x], [y])


MVE_GENERATORS = {
    "DEPTHWISE_CONV_2D": random_depthwise,
    "DEPTHWISE_CONV_2D_MULTIPLIER": random_depthwise_multiplier,
    "DEPTHWISE_CONV_2D_PAIRS": random_depthwise_pairs,
    "DEPTHWISE_CONV_2D_INT16": GENERATORS["DEPTHWISE_CONV_2D_INT16"],
    "CONV_2D_PATCH": random_conv_patch,
    "CONV_2D_WIDE": random_conv_wide,
    "CONV_DEPTHWISE_TIES": random_ties,
    "CONV_2D_1X1_SMALL": random_conv_1x1_small,
    "ADD_SAME_SHAPE": random_add_same_shape,
    "ADD_BROADCAST": GENERATORS["ADD"],
    "FULLY_CONNECTED_UNITS": random_fc_units,
}


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return tmp_path_factory.mktemp(BOARD)


def _check(op: str, seeds: range, board_dir) -> None:  # noqa: ANN001
    for seed in seeds:
        rng = np.random.default_rng([seed, sum(op.encode()), 55])
        assert_bit_exact_on_chip(BOARD, board_dir, MVE_GENERATORS[op](rng), f"{op} seed {seed}", rng, None, 3)


@pytest.mark.parametrize("op", sorted(MVE_GENERATORS))
def test_mve_kernels(op: str, board_dir) -> None:  # noqa: ANN001
    _check(op, range(SEEDS), board_dir)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(MVE_GENERATORS))
def test_mve_kernels_more_seeds(op: str, board_dir) -> None:  # noqa: ANN001
    _check(op, range(SEEDS, SEEDS + SLOW_SEEDS), board_dir)

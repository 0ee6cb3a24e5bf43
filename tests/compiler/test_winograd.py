"""The compiler's Winograd filters (host/compiler/ops/conv.py): int8's F(2x2, 3x3) (winograd_weights) read back in
the layout firmware/engine/ops_dsp/conv_2d_winograd.c reads them, with the kernel's input and output transforms
done in integers, give four times the direct convolution's sums exactly, at the int8 extremes too; int16x8's
F(2, 3) along the rows (winograd16_weights, conv_2d_winograd16.c) twice them, with V in int16 for inputs in
[0, 32767]; and the ops the compiler transforms are exactly those the kernels' rules take."""

from __future__ import annotations

import numpy as np
import pytest

from host.compiler.ops.base import REGISTRY, OpContext
from host.compiler.ops.conv import (
    ConvDims,
    winograd16_sums_fit,
    winograd16_takes,
    winograd16_weights,
    winograd_takes,
    winograd_weights,
)
from host.tflite.reader import parse_model
from tests.support.tflite_builder import GraphBuilder, fb

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.int64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.int64)


def _filters_as_kernel_reads(data: bytes, out_c: int, in_c: int) -> np.ndarray:
    """U[k, position, c] from the stream: per channel pair, position, group of 4, channel, (c0, c2, c1, c3)."""
    stream = np.frombuffer(data, dtype="<i2").astype(np.int64).reshape(out_c // 2, 16, in_c // 4, 2, 4)
    u = np.zeros((out_c, 16, in_c), dtype=np.int64)
    for lane, c in enumerate((0, 2, 1, 3)):
        u[:, :, c::4] = stream[..., lane].transpose(0, 3, 1, 2).reshape(out_c, 16, in_c // 4)
    return u


def _direct(patch: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The 2x2 outputs of a 4x4xC patch (offset added), per output channel: [k, 2, 2]."""
    w = weights.astype(np.int64)
    return np.array([[[np.sum(patch[r:r + 3, s:s + 3, :] * w[k]) for s in range(2)] for r in range(2)]
                     for k in range(w.shape[0])])


@pytest.mark.parametrize("seed", range(6))
def test_winograd_filters_give_four_times_the_direct_sums(seed: int) -> None:
    rng = np.random.default_rng(seed)
    in_c, out_c = int(rng.choice([4, 8, 16, 128])), int(rng.choice([2, 6, 16]))
    weights = rng.integers(-127, 128, size=(out_c, 3, 3, in_c)).astype(np.int8)
    patch = rng.integers(-255, 256, size=(4, 4, in_c)).astype(np.int64)   # x + offset, 0 for padding
    if seed == 0:   # the extremes: every |U| and |V| at its bound
        weights[:] = 127
        patch[:] = np.where((np.arange(4)[:, None] + np.arange(4)[None, :]) % 2 == 0, 255, -255)[..., None]
    u = _filters_as_kernel_reads(winograd_weights(weights), out_c, in_c)
    v = np.einsum("ia,abc,jb->ijc", BT, patch, BT).reshape(16, in_c)
    assert np.abs(u).max() <= 1143 and np.abs(v).max() <= 1020   # int16 operands of SMLAD
    m = np.einsum("kpc,pc->kp", u, v).reshape(out_c, 4, 4)
    y = np.einsum("ri,kij,sj->krs", AT, m, AT)
    assert np.array_equal(y, 4 * _direct(patch, weights))
    assert np.abs(y).max() < 2**31


def _dims(in_c: int, out_c: int, f: int = 3, out_hw: int = 8) -> ConvDims:
    return ConvDims(1, out_hw, out_hw, in_c, f, f, in_c, out_hw, out_hw, out_c)


def test_the_ops_the_kernel_takes() -> None:
    p = {"stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1}
    assert winograd_takes(p, _dims(16, 16))
    assert winograd_takes(p, _dims(128, 2))
    assert not winograd_takes(p, _dims(132, 16))       # V of a tile pair beyond its buffer
    assert not winograd_takes(p, _dims(6, 16))         # channels not in groups of 4
    assert not winograd_takes(p, _dims(16, 15))        # odd out_c: channel pairs
    assert not winograd_takes(p, _dims(16, 16, f=5))
    assert not winograd_takes(p, _dims(16, 16, out_hw=1))
    assert not winograd_takes({**p, "stride_h": 2}, _dims(16, 16))
    assert not winograd_takes({**p, "dilation_w": 2}, _dims(16, 16))


# ---- int16x8: F(2, 3) along the rows (conv_2d_winograd16.c) ------------------------------------------------------

def _filters16_as_kernel_reads(data: bytes, out_c: int, in_c: int) -> np.ndarray:
    """U[k, t, row, c] from the stream: per channel pair, position, filter row, group of 4, channel, 4 in order."""
    stream = np.frombuffer(data, dtype="<i2").astype(np.int64).reshape(out_c // 2, 4, 3, in_c // 4, 2, 4)
    return stream.transpose(0, 4, 1, 2, 3, 5).reshape(out_c, 4, 3, in_c)


def _v16(rows: np.ndarray) -> np.ndarray:
    """The kernel's V of one tile (int16 lanes): rows [3, 4 pixels, c] -> [t, row, c], position 1 less 32768."""
    d0, d1, d2, d3 = (rows[:, j, :] for j in range(4))
    return np.stack([d0 - d2, d1 + d2 - 32768, d2 - d1, d1 - d3])


@pytest.mark.parametrize("seed", range(6))
def test_winograd16_filters_give_twice_the_direct_sums(seed: int) -> None:
    """With the offset's share added back (32768 * sum of position 1's U, per channel) A^T (U . V) is twice the
    direct sums of two outputs, and every V fits int16, for inputs in [0, 32767] at their extremes too."""
    rng = np.random.default_rng(seed)
    in_c, out_c = int(rng.choice([4, 8, 16, 128])), int(rng.choice([2, 6, 16]))
    weights = rng.integers(-127, 128, size=(out_c, 3, 3, in_c)).astype(np.int8)
    rows = rng.integers(0, 32768, size=(3, 4, in_c)).astype(np.int64)
    if seed == 0:
        weights[:] = 127
        rows[:] = np.where(np.arange(4) % 2 == 0, 32767, 0)[None, :, None]
    if seed == 1:
        rows[:] = 0   # padding: position 1 at -32768
    u = _filters16_as_kernel_reads(winograd16_weights(weights), out_c, in_c)
    assert np.abs(u).max() <= 381
    v = _v16(rows)
    assert v.min() >= -32768 and v.max() <= 32767
    m = np.einsum("ktrc,trc->kt", u, v)
    share = 32768 * u[:, 1].sum(axis=(1, 2))
    y = np.stack([m[:, 0] + m[:, 1] + m[:, 2] + share, m[:, 1] - m[:, 2] - m[:, 3] + share], axis=1)
    w = weights.astype(np.int64)
    direct = np.array([[np.sum(rows[:, s:s + 3, :] * w[k]) for s in range(2)] for k in range(out_c)])
    assert np.array_equal(y, 2 * direct)


def test_winograd16_sums_fit_at_the_bound() -> None:
    """|bias| + 32767 * max(positive sum, negative magnitude) < 2^30 per channel: the kernel's 2 * (sum + bias)
    in int32."""
    w = np.zeros((2, 3, 3, 128), dtype=np.int8)
    w[0, ..., :] = 28   # 1152 * 28 * 32767 < 2^30
    assert winograd16_sums_fit(w, None)
    room = 2**30 - 1 - 32767 * 1152 * 28
    assert winograd16_sums_fit(w, np.array([room, -room]))
    assert not winograd16_sums_fit(w, np.array([room + 1, 0]))
    w[1, ..., :] = -29  # 1152 * 29 * 32767 >= 2^30
    assert not winograd16_sums_fit(w, None)


def test_the_int16_ops_the_kernel_takes() -> None:
    p = {"stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1, "input_offset": 0}
    assert winograd16_takes(p, _dims(16, 16))
    assert winograd16_takes(p, _dims(128, 2))
    assert winograd16_takes(p, ConvDims(1, 1, 2, 16, 3, 3, 16, 1, 2, 16))   # one row of two outputs
    assert not winograd16_takes(p, ConvDims(1, 4, 1, 16, 3, 3, 16, 4, 1, 16))   # one column
    assert not winograd16_takes(p, _dims(132, 16))
    assert not winograd16_takes(p, _dims(6, 16))
    assert not winograd16_takes(p, _dims(16, 15))
    assert not winograd16_takes(p, _dims(16, 16, f=5))
    assert not winograd16_takes({**p, "stride_w": 2}, _dims(16, 16))
    assert not winograd16_takes({**p, "input_offset": 1}, _dims(16, 16))


def _two_convs(activation: int, weight_limit: int = 100) -> bytes:
    """int16x8: a 1x1 CONV_2D with fused `activation`, then a 3x3 stride-1 one over its output."""
    rng = np.random.default_rng(7)
    g = GraphBuilder()
    x = g.tensor((1, 6, 6, 3), "int16", 1e-4, 0)
    f0 = g.tensor((8, 1, 1, 3), "int8", [0.01] * 8, 0, rng.integers(-127, 128, (8, 1, 1, 3), dtype=np.int8))
    t = g.tensor((1, 6, 6, 8), "int16", 2e-4, 0)
    opt0 = fb.Conv2DOptionsT()
    opt0.padding, opt0.strideH, opt0.strideW, opt0.fusedActivationFunction = 0, 1, 1, activation
    g.op("CONV_2D", [x, f0, -1], [t], opt0)
    weights = rng.integers(-weight_limit, weight_limit + 1, (4, 3, 3, 8), dtype=np.int8)
    f1 = g.tensor((4, 3, 3, 8), "int8", [0.01] * 4, 0, weights)
    b1 = g.tensor((4,), "int64", [2e-6] * 4, 0, np.arange(4, dtype=np.int64))
    y = g.tensor((1, 6, 6, 4), "int16", 1e-3, 0)
    opt1 = fb.Conv2DOptionsT()
    opt1.padding, opt1.strideH, opt1.strideW = 0, 1, 1
    g.op("CONV_2D", [t, f1, b1], [y], opt1)
    return g.build([x], [y])


@pytest.mark.parametrize(("activation", "transformed"), [(1, True), (3, True), (0, False), (2, False)])
def test_int16_filters_transformed_only_over_a_relu(activation: int, transformed: bool) -> None:
    """The compiler stores the F(2, 3) filter for an int16x8 3x3 op whose input a fused ReLU or ReLU6 made (never
    negative), not after no activation or RELU_N1_TO_1 (the im2col path's widened weights then)."""
    graph = parse_model(_two_convs(activation)).subgraphs[0]
    arrays = REGISTRY["CONV_2D"].lower(OpContext(graph.operators[1], graph)).guarded_arrays
    assert ("winograd" in arrays) == transformed
    assert ("weights16" in arrays) != transformed
    if transformed:   # its own guard: builds of models without such ops leave the int16x8 path out
        assert arrays["winograd"][0] == "TM_CONV_WINOGRAD16"

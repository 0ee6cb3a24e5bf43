"""What the compiler precomputes for the DSP kernels (host/compiler/ops/conv.py), checked against the rule it
replaces.

The requantization words (wide_rq_table; read by tm_dsp_wide_rq): for every channel that gets words, the
kernels' formula (conv_2d_wide.c, WIDE_RQ: SMMULR of the doubled sum by M, minus 1 when negative, plus c,
shifted right by r, saturated to int8) gives TFLite's output, clamped to the activation range, for every sum
the channel can reach, tried at both ends of that range and in between.  Channels cover big biases (sums near
2^30), tiny scales (right shifts beyond 24, constant outputs), zero multipliers and both activation ranges.
The kernels' bit-exactness on chips is tests/engine's.

acc32_fits (int16x8 CONV_2D, read by tm_dsp_s16_channels_fit): 1 exactly when every channel has
|bias| + 32768 * sum |w| < 2^31, 2 when one has not, 0 for the ops it does not describe.

FULLY_CONNECTED's pre-widened stream (host/compiler/ops/fully_connected.py, read by fc16_hextets and fc16_quads):
its groups of units, its layout and the bound on the sums that decides whether it is emitted."""

from __future__ import annotations

import numpy as np
import pytest

from host.compiler import quant
from host.compiler.compile import compile_bytes
from host.compiler.ops import fully_connected as fc_ops
from host.compiler.ops.conv import ConvDims, wide_rq_table
from tests.support.tflite_builder import GraphBuilder, fb

OUT_C, K = 24, 72


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def tflm_output(acc: int, m: int, shift: int, out_offset: int, act_min: int, act_max: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (int32), the offset and the clamp."""
    a = wrap32(acc * (1 << max(shift, 0)))
    ab = a * m
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    x = abs(ab + nudge) // 2**31 * (1 if ab + nudge >= 0 else -1)
    right = max(-shift, 0)
    mask = (1 << right) - 1
    x = (x >> right) + int((x & mask) > (mask >> 1) + int(x < 0))
    return min(max(x + out_offset, act_min), act_max)


def kernel_output(acc: int, words: tuple[int, int, int], sign_of_sum: bool = False) -> int:
    """The kernels' requantization: SMMULR(2 acc, M), the sign, c, ASR r, SSAT #8; with `sign_of_sum` the sign
    is the sum's, in SMMLAR(2 acc, M, c - [acc < 0]) (conv_2d_wide.c explains why both are exact)."""
    m, c, r = words
    if sign_of_sum:
        x = wrap32(((c - int(acc < 0)) * 2**32 + wrap32(2 * acc) * m + 2**31) >> 32) >> r
    else:
        x = (wrap32(2 * acc) * m + 2**31) >> 32
        x = wrap32(x + (x >> 31) + c) >> r
    return min(max(x, -128), 127)


def channels(rng: np.random.Generator) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    scales = 10.0 ** rng.uniform(-12, -0.2, size=OUT_C)
    scales[:2] = 0.0                                   # multiplier 0
    mults, shifts = zip(*(quant.quantize_multiplier(float(s)) for s in scales), strict=True)
    bias = rng.integers(-(2**20), 2**20, size=OUT_C)
    big = rng.random(OUT_C) < 0.3
    bias[big] = rng.choice([-1, 1], size=int(big.sum())) * rng.integers(2**29, 2**31 - 2**23, size=int(big.sum()))
    weights = rng.integers(-127, 128, size=(OUT_C, K), dtype=np.int8)
    weights[3] = 127                                   # the largest reach
    out_offset = int(rng.integers(-128, 128))
    act_min = -128 if rng.random() < 0.5 else out_offset
    fields = {"output_offset": out_offset, "input_offset": int(rng.integers(-127, 129)),
              "act_min": act_min, "act_max": 127}
    arrays = {"out_multiplier": ("int32_t", list(mults)), "out_shift": ("int32_t", list(shifts))}
    return fields, arrays, weights, bias.astype(np.int32)


@pytest.mark.parametrize("seed", range(6))
def test_every_channel_with_words_requantizes_as_tflite_over_its_reach(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fields, arrays, weights, bias = channels(rng)
    dims = ConvDims(1, 4, 4, K // 9, 3, 3, K // 9, 4, 4, OUT_C)
    table = np.frombuffer(wide_rq_table(fields, arrays, weights.reshape(-1), dims, True, bias), dtype="<i4")
    table = table.reshape(OUT_C, 3)
    xl, xh = fields["input_offset"] - 128, fields["input_offset"] + 127
    with_words = 0
    for oc in range(OUT_C):
        if table[oc, 2] == 0:
            continue
        with_words += 1
        w = weights[oc].astype(np.int64)
        lo = int(bias[oc]) + int(np.minimum(w * xl, w * xh).sum())
        hi = int(bias[oc]) + int(np.maximum(w * xl, w * xh).sum())
        near_zero = (s for s in range(-300, 300) if lo <= s <= hi)   # x = 0 > acc: the two signs differ
        sums = {lo, hi, lo + 1, hi - 1, *near_zero, *(int(s) for s in rng.integers(lo, hi + 1, size=300))}
        m, shift = arrays["out_multiplier"][1][oc], arrays["out_shift"][1][oc]
        words = (int(table[oc, 0]), int(table[oc, 1]), int(table[oc, 2]))
        for s in sorted(sums):
            expected = tflm_output(s, m, shift, fields["output_offset"], fields["act_min"], fields["act_max"])
            for sign_of_sum in (False, True):
                ours = min(max(kernel_output(s, words, sign_of_sum), fields["act_min"]), fields["act_max"])
                assert ours == expected, f"channel {oc} sum {s} words {words} sign of the sum {sign_of_sum}"
    assert with_words >= OUT_C // 2


def int16_conv(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """An int16x8 3x3 CONV_2D over 8x8xC with an int64 bias."""
    out_c, _, _, in_c = weights.shape
    g = GraphBuilder()
    x = g.tensor((1, 8, 8, in_c), "int16", 1e-4, 0)
    f = g.tensor(weights.shape, "int8", [0.01] * out_c, 0, weights, quantized_dimension=0)
    b = g.tensor((out_c,), "int64", [1e-6] * out_c, 0, bias)
    y = g.tensor((1, 8, 8, out_c), "int16", 1e-3, 0)
    opt = fb.Conv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW = 0, 1, 1
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


@pytest.mark.parametrize(("largest", "bias", "expected"), [
    (5, 1000, 1),            # small weights: the int32 sums are exact
    (127, 0, 2),             # 576 taps of 127: 32768 * 73,152 > 2^31
    (5, 2**31 - 2**20, 2),   # a bias near 2^31
])
def test_acc32_fits_follows_the_rule(largest: int, bias: int, expected: int) -> None:
    rng = np.random.default_rng(3)
    weights = rng.integers(-5, 6, size=(4, 3, 3, 64), dtype=np.int8)
    weights[1] = largest
    biases = np.full(4, 7, dtype=np.int64)
    biases[1] = bias
    model = compile_bytes(int16_conv(weights, biases), name="acc32")
    assert f".acc32_fits = {expected}" in model.c_source


@pytest.mark.parametrize("units", [*range(1, 20), 126, 127, 128, 640])
def test_fc16_groups_pad_at_most_one_unit(units: int) -> None:
    """The pre-widened FULLY_CONNECTED stream's groups (fc16_groups, mirrored by ops_dsp/fully_connected.c) hold every
    unit and pad at most one (an odd count), except 1 or 2 units, which take one quad."""
    hextets, quads = fc_ops.fc16_groups(units)
    held = 6 * hextets + 4 * quads
    assert held >= units and quads <= 2
    assert held - units <= (3 if units <= 2 else 1)


def test_fc16_stream_holds_the_doubled_weights_and_biases() -> None:
    """widened_weights' layout, read back the way fc16_hextets and fc16_quads read it: per group its doubled biases,
    then per 4 elements each unit's 4 doubled weights; padded units and elements are zero."""
    rng = np.random.default_rng(3)
    units, depth = 15, 10   # 2 hextets + 1 quad (16 units), depth padded to 12
    weights = rng.integers(-128, 128, size=(units, depth), dtype=np.int8)
    bias = rng.integers(-2**20, 2**20, size=units).astype(np.int32)
    stream = memoryview(fc_ops.widened_weights(weights, bias))
    pos, u0, got_w, got_b = 0, 0, np.zeros((16, 12), np.int64), np.zeros(16, np.int64)
    assert fc_ops.fc16_groups(units) == (2, 1)
    for size in (6, 6, 4):
        got_b[u0:u0 + size] = np.frombuffer(stream[pos:pos + 4 * size], "<i4")
        pos += 4 * size
        block = np.frombuffer(stream[pos:pos + 2 * size * 12], "<i2").reshape(3, size, 4)
        got_w[u0:u0 + size] = block.transpose(1, 0, 2).reshape(size, 12)
        pos, u0 = pos + 2 * size * 12, u0 + size
    assert pos == len(stream)
    assert (got_w[:units, :depth] == 2 * weights.astype(np.int64)).all()
    assert not got_w[units:].any() and not got_w[:, depth:].any()
    assert (got_b[:units] == 2 * bias.astype(np.int64)).all() and not got_b[units:].any()


def test_fc16_sums_fit_at_the_bound() -> None:
    """The stream (2 * (sum + bias) in int32) only where |bias| + depth * 255 * 128 < 2^30."""
    weights = np.zeros((2, 100), np.int8)
    edge = 2**30 - 100 * 255 * 128
    assert fc_ops.fc16_sums_fit(weights, np.array([0, edge - 1], np.int32))
    assert not fc_ops.fc16_sums_fit(weights, np.array([-edge, 0], np.int32))
    assert fc_ops.fc16_sums_fit(weights, None)

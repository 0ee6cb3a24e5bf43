"""The compiler's Winograd F(2x2, 3x3) filters (host/compiler/ops/conv.py, winograd_weights): read back in the
layout firmware/engine/ops_dsp/conv_2d_winograd.c reads them, with the kernel's input and output transforms
done in integers, they give four times the direct convolution's sums exactly, at the int8 extremes too; and
the ops the compiler transforms are exactly those the kernel's rule takes."""

from __future__ import annotations

import numpy as np
import pytest

from host.compiler.ops.conv import ConvDims, winograd_takes, winograd_weights

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

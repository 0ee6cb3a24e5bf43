"""Integer definitions of the pre-processing defenses on the QUANTIZED input tensor.

These NumPy functions are the reference a firmware pre-processing stage (working on the int8 /
int16 input bytes, given the input tensor's scale and zero point) must match bit for bit.
They use integer arithmetic only (no floats) except to locate the input range on the grid.
See docs/defenses.md for the derivations and what is (and is not) equal to the float defenses.

Quantization is the evaluator's: q = clip(round(x / scale) + zero_point) with NumPy's round
(host.compiler.types.TensorInfo.quantize); dequantization x = (q - zero_point) * scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from host.core.errors import UserError

ALIGN_TOL = 1e-3  # in quantization steps: how close lo/hi must be to grid points


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str | np.dtype = "int8") -> np.ndarray:
    """Float -> integer exactly as host.compiler.types.TensorInfo.quantize."""
    info = np.iinfo(np.dtype(dtype))
    q = np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) - zero_point) * scale


def grid_range(
    scale: float, zero_point: int, input_range: Sequence[float], dtype: str | np.dtype,
) -> tuple[int, int]:
    """(q_lo, q_hi): the integers representing the ends of the input range.

    UserError unless both ends lie on the quantization grid (within ALIGN_TOL steps) inside the
    integer type — true for TFLite's calibrated inputs whose range is the representative set's
    [lo, hi] (e.g. [0, 1] -> scale 1/255, zero point -128 for int8; 1/32767, 0 for int16).
    """
    if not scale > 0:
        raise UserError(f"quantization scale must be > 0, got {scale}")
    lo, hi = (float(v) for v in input_range)
    info = np.iinfo(np.dtype(dtype))
    ends = []
    for v in (lo, hi):
        exact = v / scale + zero_point
        q = int(np.round(exact))
        if abs(exact - q) > ALIGN_TOL or not info.min <= q <= info.max:
            raise UserError(
                f"input range end {v:g} is not on the {np.dtype(dtype).name} grid (scale {scale:g}, "
                f"zero point {zero_point}): {exact:.4f} steps",
                hint="use the float definition quantize(defense(dequantize(q))) as a lookup table instead",
            )
        ends.append(q)
    if ends[1] <= ends[0]:
        raise UserError(f"input range {input_range} maps to an empty integer range {ends}")
    return ends[0], ends[1]


def _div_round_half_even(a: np.ndarray, b: int) -> np.ndarray:
    """round(a / b) for integer arrays a >= 0 and b > 0, ties to even (NumPy's rint), exactly."""
    quot, rem = np.divmod(a, b)
    twice = 2 * rem
    up = (twice > b) | ((twice == b) & (quot % 2 == 1))
    return quot + up.astype(quot.dtype)


def squeeze_bits_quantized(
    q: np.ndarray, bits: int, scale: float, zero_point: int, input_range: Sequence[float] = (0.0, 1.0),
) -> np.ndarray:
    """Bit-depth squeezing on quantized inputs, in integers.

    With q_lo, q_hi the grid points of the range ends, N = q_hi - q_lo steps and M = 2**bits - 1
    levels:  u = clip(q, q_lo, q_hi) - q_lo;  k = round(u·M / N);  u' = round(k·N / M);
    q' = q_lo + u'  (round = half to even).  For int8 inputs on [lo, hi] (N = 255) this is
    k = (2uM + 255) // 510 and u' = (510k + M) // 2M: N and M are odd, so no ties occur.
    Equals quantize(feature_squeezing(dequantize(q))) for every q (tested for all int8 and int16
    values with the study's input grids).
    """
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise UserError(f"quantized inputs must be an integer array, got {q.dtype}")
    if not 1 <= int(bits) <= 30:
        raise UserError(f"bit_depth must be in [1, 30], got {bits}")
    q_lo, q_hi = grid_range(scale, zero_point, input_range, q.dtype)
    n = q_hi - q_lo
    m = (1 << int(bits)) - 1
    u = np.clip(q.astype(np.int64), q_lo, q_hi) - q_lo
    k = _div_round_half_even(u * m, n)
    u2 = _div_round_half_even(k * n, m)
    return (q_lo + u2).astype(q.dtype)


def median_offsets(window: int) -> range:
    """Offsets covered by scipy.ndimage.median_filter's window of this size (origin 0), per axis.

    The window is centred at index window // 2: size 2 covers {-1, 0} (the pixel and its
    upper/left neighbour), size 3 covers {-1, 0, 1}.
    """
    return range(-(window // 2), window - window // 2)


def median_filter_quantized(q: np.ndarray, window: int) -> np.ndarray:
    """The median filter on an NHWC integer batch, written out (no SciPy).

    out[n, i, j, c] = sorted(q[n, r(i + di), r(j + dj), c] for di, dj in median_offsets(window))
    [window² // 2], with r the half-sample reflection at the borders (… b a | a b c … ; SciPy's
    mode "reflect", NumPy's pad mode "symmetric").  For an even window there are two middle
    values and the upper one is taken (rank window²//2, 0-based), never their mean — so the
    result is always one of the input values and the filter commutes with any non-decreasing
    map, in particular with quantization: median(quantize(x)) = quantize(median(x)).
    """
    q = np.asarray(q)
    if q.ndim != 4:
        raise UserError(f"median filter: inputs must be NHWC, got shape {q.shape}")
    window = int(window)
    if window < 1:
        raise UserError(f"median filter: window must be >= 1, got {window}")
    offsets = median_offsets(window)
    before, after = -offsets[0], offsets[-1]
    _, height, width, _ = q.shape
    padded = _reflect_pad(q, before, after)
    stack = [
        padded[:, before + di: before + di + height, before + dj: before + dj + width, :]
        for di in offsets for dj in offsets
    ]
    values = np.sort(np.stack(stack, axis=0), axis=0, kind="stable")
    return values[(window * window) // 2].astype(q.dtype)


def _reflect_pad(q: np.ndarray, before: int, after: int) -> np.ndarray:
    """Half-sample symmetric padding on H and W, repeated for pads wider than the image."""
    out = q
    for axis in (1, 2):
        for side, amount in (("before", before), ("after", after)):
            while amount > 0:
                step = min(amount, out.shape[axis])
                pad = [(0, 0)] * out.ndim
                pad[axis] = (step, 0) if side == "before" else (0, step)
                out = np.pad(out, pad, mode="symmetric")
                amount -= step
    return out


def lookup_table(fn: object, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """A pointwise float defense as a table over every integer input value (int8: 256 entries).

    table[q - iinfo.min] = quantize(fn(dequantize(q))): what a firmware stage stores when the
    input range is not on the grid.  fn maps a float array to a float array of the same shape.
    """
    info = np.iinfo(np.dtype(dtype))
    q = np.arange(info.min, info.max + 1, dtype=np.int64)
    x = dequantize(q, scale, zero_point)
    y = np.asarray(fn(x), dtype=np.float64)  # type: ignore[operator]
    return quantize(y, scale, zero_point, dtype)

"""Prepare-time arithmetic of TFLite Micro, reproduced exactly.

Everything here mirrors what TFLM computes in its kernels' Prepare step
(quantization_util.cc, kernel_util.cc, padding.h), including which products
are taken in float32 and which in double, because a one-ulp difference in an
effective scale can change a Q31 multiplier and with it the output bytes.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)


def tflite_round(x: float) -> int:
    """std::round: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: real = q * 2**(shift - 31), q in [2**30, 2**31)."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = tflite_round(mantissa * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    if real <= 1.0:
        raise ValueError(f"multiplier {real} must be > 1")
    q, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError(f"multiplier {real} gives negative shift")
    return q, shift


def f32(x: float | np.floating) -> float:
    """The exact double value of a float32 (scales are stored as float32)."""
    return float(np.float32(x))


def conv_per_channel_multipliers(
    input_scale: float, filter_scales: np.ndarray, output_scale: float, channels: int
) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: double(in) * double(filter) / double(out)."""
    mults, shifts = [], []
    for c in range(channels):
        fs = filter_scales[c] if filter_scales.size > 1 else filter_scales[0]
        q, s = quantize_multiplier(f32(input_scale) * f32(fs) / f32(output_scale))
        mults.append(q)
        shifts.append(s)
    return mults, shifts


def per_tensor_conv_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler: the scale product is taken in float32."""
    product = float(np.float32(input_scale) * np.float32(filter_scale))
    return quantize_multiplier(product / f32(output_scale))


def activation_range(activation: str, dtype: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized (the division f / scale is in float32)."""
    info = np.iinfo(dtype)
    qmin, qmax = int(info.min), int(info.max)

    def quantize(f: float) -> int:
        return zero_point + tflite_round(float(np.float32(f) / np.float32(scale)))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise ValueError(f"unsupported fused activation {activation}")


def out_size(padding: str, in_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size + stride - effective) // stride


def pad_before(stride: int, dilation: int, in_size: int, filter_size: int, out: int) -> int:
    """ComputePaddingWithOffset: the smaller half goes before (top/left)."""
    effective = (filter_size - 1) * dilation + 1
    total = max(0, (out - 1) * stride + effective - in_size)
    return total // 2


def softmax_int8_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius with 5 integer bits."""
    integer_bits = 5
    real = min(float(beta) * f32(input_scale) * (1 << (31 - integer_bits)), float((1 << 31) - 1))
    multiplier, left_shift = quantize_multiplier_greater_than_one(real)
    radius = ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)
    diff_min = -math.floor(radius)
    return multiplier, left_shift, diff_min

"""TFLM's int16 lookup tables (gen_lut<float, int16_t, int16_t>), reproduced in
float32 step for step, with the C library's expf as TFLM calls it.

The tables are computed here once and stored as constants in the firmware, so
the chip uses exactly the table the reference interpreter computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable

import numpy as np

F32 = np.float32
LUT_STEPS = 512  # int16 tables: 512 intervals + 1 slope point

_libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
_libm.expf.restype = ctypes.c_float
_libm.expf.argtypes = [ctypes.c_float]


def expf(x: np.float32) -> np.float32:
    return F32(_libm.expf(float(x)))


def one_over_one_plus_x(x: np.float32) -> np.float32:
    return F32(F32(1.0) / F32(F32(1.0) + x))


def _roundf(x: np.float32) -> np.float32:
    """roundf: halves away from zero, evaluated exactly (the float32 value is exact in double)."""
    v = float(x)
    return F32(math.copysign(math.floor(abs(v) + 0.5), v))


def gen_lut_int16(
    func: Callable[[np.float32], np.float32],
    input_min: float,
    input_max: float,
    output_min: float = -1.0,
    output_max: float = 1.0,
) -> list[int]:
    lo, hi = F32(input_min), F32(input_max)
    step = F32((hi - lo) / F32(LUT_STEPS))
    half_step = F32(step / F32(2))
    scaling_inv = F32(F32(65536.0) / F32(F32(output_max) - F32(output_min)))
    table: list[int] = []
    for i in range(LUT_STEPS):
        x = F32(lo + F32(F32(i) * step))
        val = func(x)
        val_midpoint = func(F32(x + half_step))
        val_next = func(F32(lo + F32(F32(i + 1) * step)))
        sample = _roundf(F32(val * scaling_inv))
        midpoint_interp = _roundf(F32(F32(F32(val_next * scaling_inv) + sample) / F32(2)))
        midpoint = _roundf(F32(val_midpoint * scaling_inv))
        bias = _roundf(F32(F32(midpoint_interp - midpoint) / F32(2)))
        table.append(int(min(max(float(F32(sample - bias)), -32768.0), 32767.0)))
    last = _roundf(F32(func(hi) * scaling_inv))
    table.append(int(min(max(float(last), -32768.0), 32767.0)))
    return table


def softmax_int16_luts() -> tuple[list[int], list[int]]:
    """exp on [-10, 0] and 1/(1+x) on [0, 1], both to [-1, 1] (Q0.15)."""
    return gen_lut_int16(expf, -10.0, 0.0), gen_lut_int16(one_over_one_plus_x, 0.0, 1.0)

"""What the MLPerf Tiny mode firmware prints for a model's outputs (docs/mlperf.md)."""

from __future__ import annotations

import math

import numpy as np

from host.compiler import CompiledModel


def expected_scores(model: CompiledModel, outputs: list[np.ndarray]) -> list[str]:
    """What the firmware prints: (q - zero_point) * scale in double, rounded half away from zero to 3 decimals."""
    texts = []
    for info, values in zip(model.outputs, outputs, strict=True):
        for q in np.asarray(values).reshape(-1):
            v = (float(q) - info.zero_point) * float(np.float32(info.scale)) if info.dtype != "float32" else float(q)
            milli = math.floor(abs(v) * 1000.0 + 0.5)
            sign = "-" if v < 0 and milli else ""
            texts.append(f"{sign}{milli // 1000}.{milli % 1000:03d}")
    return texts

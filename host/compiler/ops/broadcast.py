"""Shape checks for elementwise ops with NumPy-style broadcasting."""

from __future__ import annotations

import numpy as np

MAX_RANK = 5  # firmware/engine/tm_engine.h TM_MAX_RANK


def broadcast_problems(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> list[str]:
    try:
        expected = tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return [f"shapes {a} and {b} do not broadcast"]
    if expected != tuple(out):
        return [f"output shape {out} is not the broadcast of {a} and {b}"]
    if len(out) > MAX_RANK:
        return [f"rank {len(out)} exceeds the engine's maximum of {MAX_RANK}"]
    return []

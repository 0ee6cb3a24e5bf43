"""Test inputs from the shipped digits data."""

from __future__ import annotations

import numpy as np

from host.attacks import FloatModel, ReferenceOracle


def both_correct(float_model: FloatModel, oracle: ReferenceOracle, x: np.ndarray, y: np.ndarray,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` of (x, y) that both the float and the int8 model classify correctly."""
    ok = (float_model.predict(x).argmax(axis=1) == y) & (oracle.predict_labels(x) == y)
    return x[ok][:n], y[ok][:n]

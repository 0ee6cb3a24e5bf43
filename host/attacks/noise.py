"""Uniform random noise in the L∞ ε-ball: the baseline an adversarial attack must beat."""

from __future__ import annotations

import numpy as np

from host.attacks.base import Attack, register
from host.attacks.oracle import QueryOracle
from host.attacks.target import FloatModel


@register
class UniformNoise(Attack):
    name = "noise"
    threat_model = "black-box"
    norm = "inf"
    description = "uniform random noise in the ε-ball (baseline; no model access)"
    needs = "nothing"

    def _generate(self, model: FloatModel | QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.params["seed"])
        return x + rng.uniform(-self.eps, self.eps, size=x.shape).astype(np.float32)

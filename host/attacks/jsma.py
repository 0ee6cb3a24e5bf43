"""JSMA (Papernot et al. 2016): saliency-map pixel changes toward a target class, minimal L0, via ART.

Targets are a seeded uniformly random class different from the true label.
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, BUDGET, SEED, Attack, Param, in_range, register
from host.attacks.common import art_evasion, random_targets
from host.attacks.target import FloatModel
from host.core.errors import UserError


@register
class JSMA(Attack):
    name = "jsma"
    threat_model = "white-box"
    norm = "0"
    bounded = False
    description = "Jacobian saliency map attack to a random target, minimal L0 (ART SaliencyMapMethod)"
    art_class = "SaliencyMapMethod"
    params_spec = (
        BUDGET,
        Param("theta", float, 0.08, "change per selected feature, input units (study: 0.08)"),
        Param("gamma", float, 1.0, "largest fraction of features changed (study: 1.0)", in_range(0, 1, lo_open=True)),
        SEED, BATCH_SIZE,
    )

    def _check_params(self) -> None:
        if self.params["theta"] == 0 or not -1 <= self.params["theta"] <= 1:
            raise UserError(f"attack 'jsma': theta={self.params['theta']} must be non-zero and in [-1, 1]")

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        targets = random_targets(y, model.num_classes, np.random.default_rng(p["seed"]))
        attack = art_evasion("SaliencyMapMethod")(
            model.art_classifier(), theta=p["theta"], gamma=p["gamma"], batch_size=p["batch_size"], verbose=False,
        )
        return attack.generate(x, y=targets)

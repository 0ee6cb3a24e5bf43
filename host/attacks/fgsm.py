"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size ε, via ART."""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, EPS, SEED, Attack, register
from host.attacks.target import FloatModel, import_art


@register
class FGSM(Attack):
    name = "fgsm"
    threat_model = "white-box"
    norm = "inf"
    description = "fast gradient sign method, one step of size eps (ART FastGradientMethod)"
    params_spec = (EPS, SEED, BATCH_SIZE)

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        attack = import_art("art.attacks.evasion").FastGradientMethod(
            model.art_classifier(),
            norm=np.inf,
            eps=self.eps,
            batch_size=self.params["batch_size"],
        )
        # True labels (not predictions): untargeted loss ascent away from the correct class.
        return attack.generate(x, y=y)

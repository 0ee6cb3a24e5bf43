"""APGD-CE (Croce & Hein 2020): step-size-free PGD on the cross-entropy loss, L∞, via ART."""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, SEED, Attack, Param, at_least_one, positive, register
from host.attacks.common import art_evasion
from host.attacks.target import FloatModel

AA_EPS = Param("eps", float, 0.004, "L∞ radius (the study's AutoAttack ε: 0.004)", positive)
APGD_ITER = Param("max_iter", int, 100, "iterations per restart (AutoAttack: 100)", at_least_one)
APGD_STEP = Param("rel_step", float, 2.0, "initial step as a fraction of eps (APGD: 2ε)", positive)


@register
class APGDCE(Attack):
    name = "apgd-ce"
    threat_model = "white-box"
    norm = "inf"
    description = "auto-PGD on cross-entropy, untargeted (ART AutoProjectedGradientDescent)"
    art_class = "AutoProjectedGradientDescent(loss_type='cross_entropy')"
    params_spec = (
        AA_EPS, APGD_ITER, APGD_STEP,
        Param("restarts", int, 1, "random restarts (AutoAttack standard: 1)", at_least_one),
        SEED, BATCH_SIZE,
    )

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        attack = art_evasion("AutoProjectedGradientDescent")(
            model.art_classifier(), norm=np.inf, eps=self.eps, eps_step=self.params["rel_step"] * self.eps,
            max_iter=self.params["max_iter"], targeted=False, nb_random_init=self.params["restarts"],
            batch_size=self.params["batch_size"], loss_type="cross_entropy", verbose=False,
        )
        return attack.generate(x, y=y)

"""DeepFool (Moosavi-Dezfooli et al. 2016): minimal L2 step to the linearised nearest boundary.

engine="ours" (default): our batched kernel (host/attacks/batched/deepfool.py); engine="art":
ART's DeepFool.  Same steps, stopping rule, overshoot and clipping.
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, BUDGET, SEED, Attack, Param, at_least_one, non_negative, register
from host.attacks.batched import ENGINE, deepfool
from host.attacks.common import art_evasion
from host.attacks.target import FloatModel


@register
class DeepFool(Attack):
    name = "deepfool"
    threat_model = "white-box"
    norm = "2"
    bounded = False
    description = "DeepFool, minimal L2 perturbation (ours; engine=art: ART DeepFool)"
    art_class = "DeepFool"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 100, "linearisation steps (study: 100)", at_least_one),
        Param("overshoot", float, 1e-6, "overshoot factor past the boundary (ART epsilon)", non_negative),
        Param("nb_grads", int, 10, "most likely classes whose boundaries are considered", at_least_one),
        SEED, BATCH_SIZE, ENGINE,
    )

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        nb_grads = min(p["nb_grads"], model.num_classes)
        if p["engine"] == "ours":
            return deepfool(model, x, max_iter=p["max_iter"], overshoot=p["overshoot"], nb_grads=nb_grads,
                            batch_size=p["batch_size"])
        attack = art_evasion("DeepFool")(
            model.art_classifier(), max_iter=p["max_iter"], epsilon=p["overshoot"],
            nb_grads=nb_grads, batch_size=p["batch_size"], verbose=False,
        )
        return attack.generate(x, y=y)

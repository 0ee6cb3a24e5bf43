"""APGD-T (Croce & Hein 2020): targeted auto-PGD on the DLR loss over the top-k other classes, via ART.

As in AutoAttack, each target class (the k highest-scoring wrong classes of the clean input, in
order) gets one run on the inputs no earlier target has fooled yet.
"""

from __future__ import annotations

import numpy as np

from host.attacks.apgd_ce import AA_EPS, APGD_ITER, APGD_STEP
from host.attacks.base import BATCH_SIZE, SEED, Attack, Param, at_least_one, register
from host.attacks.common import art_evasion
from host.attacks.target import FloatModel
from host.core.errors import UserError


@register
class APGDT(Attack):
    name = "apgd-t"
    threat_model = "white-box"
    norm = "inf"
    description = "auto-PGD on the targeted DLR loss, top-k target classes (ART AutoProjectedGradientDescent)"
    art_class = "AutoProjectedGradientDescent(loss_type='difference_logits_ratio', targeted=True)"
    params_spec = (
        AA_EPS, APGD_ITER, APGD_STEP,
        Param("n_targets", int, 9, "target classes tried per input (AutoAttack: 9)", at_least_one),
        SEED, BATCH_SIZE,
    )

    def _check_inputs(self, target: FloatModel, x: np.ndarray) -> None:
        if target.num_classes < 4:
            raise UserError(
                f"attack 'apgd-t': the targeted DLR loss needs >= 4 classes, the model has {target.num_classes}"
            )

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        attack = art_evasion("AutoProjectedGradientDescent")(
            model.art_classifier(), norm=np.inf, eps=self.eps, eps_step=self.params["rel_step"] * self.eps,
            max_iter=self.params["max_iter"], targeted=True, nb_random_init=1,
            batch_size=self.params["batch_size"], loss_type="difference_logits_ratio", verbose=False,
        )
        order = np.argsort(-model.predict(x), axis=1)
        x_adv = x.copy()
        todo = np.flatnonzero(order[:, 0] == y)  # already misclassified inputs need no attack
        for k in range(1, min(self.params["n_targets"], model.num_classes - 1) + 1):
            if todo.size == 0:
                break
            targets = np.where(order[todo, 0] == y[todo], order[todo, k], order[todo, 0])
            candidate = self.project(x[todo], attack.generate(x[todo], y=targets), model.input_range)
            fooled = model.predict(candidate).argmax(axis=1) != y[todo]
            x_adv[todo[fooled]] = candidate[fooled]
            todo = todo[~fooled]
        return x_adv

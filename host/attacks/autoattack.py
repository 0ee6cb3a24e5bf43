"""AutoAttack (Croce & Hein 2020), standard L∞ ensemble minus FAB-T: APGD-CE, APGD-T, Square.

Each stage runs only on the inputs every earlier stage left correctly classified.  Composed from
our registry attacks rather than ART's AutoAttack: that class imports the undeclared optional
package `multiprocess` in generate (ModuleNotFoundError here) and its default ensemble is not the
standard one (APGD-DLR untargeted and DeepFool instead of APGD-T and FAB-T).  ART 1.20 has no FAB.
Square runs on the float model through a FloatOracle (its queries are in `last_queries`).
"""

from __future__ import annotations

import numpy as np

from host.attacks.apgd_ce import AA_EPS, APGD_ITER
from host.attacks.base import BATCH_SIZE, SEED, Attack, Param, at_least_one, get_attack, register
from host.attacks.oracle import FloatOracle
from host.attacks.target import FloatModel


@register
class AutoAttack(Attack):
    name = "autoattack"
    threat_model = "white-box"
    norm = "inf"
    description = "AutoAttack ensemble: apgd-ce, apgd-t, square-linf on the float model (no FAB-T: not in ART)"
    art_class = "AutoProjectedGradientDescent ×2 + SquareAttack"
    params_spec = (
        AA_EPS, APGD_ITER,
        Param("n_targets", int, 9, "APGD-T target classes", at_least_one),
        Param("square_max_iter", int, 5000, "Square iterations (queries per input, AutoAttack: 5000)", at_least_one),
        SEED, BATCH_SIZE,
    )

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        common = {"eps": self.eps, "seed": self.params["seed"]}
        batch = {"batch_size": self.params["batch_size"]}
        stages = [
            (get_attack("apgd-ce", max_iter=self.params["max_iter"], **common, **batch), model),
            (get_attack("apgd-t", max_iter=self.params["max_iter"], n_targets=self.params["n_targets"],
                        **common, **batch), model),
            (get_attack("square-linf", max_iter=self.params["square_max_iter"], **common), FloatOracle(model)),
        ]
        x_adv = x.copy()
        robust = model.predict(x).argmax(axis=1) == y
        self.stage_fooled: dict[str, int] = {}
        for attack, target in stages:
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                break
            candidate = attack.generate(target, x[idx], y[idx])
            fooled = model.predict(candidate).argmax(axis=1) != y[idx]
            x_adv[idx[fooled]] = candidate[fooled]
            robust[idx[fooled]] = False
            self.stage_fooled[attack.name] = int(fooled.sum())
        return x_adv

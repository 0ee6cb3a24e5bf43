"""AutoAttack (Croce & Hein 2020), the standard L∞ ensemble: APGD-CE, APGD-T, FAB-T, Square.

Each stage runs only on the inputs every earlier stage left correctly classified (by the float
model).  Composed from our registry attacks rather than ART's AutoAttack: that class imports the
undeclared optional package `multiprocess` in generate (ModuleNotFoundError here) and its default
ensemble is not the standard one (APGD-DLR untargeted and DeepFool instead of APGD-T and FAB-T);
ART 1.20 has no FAB, so FAB-T is ours (host/attacks/fab_t.py).  Square runs on the float model
through a FloatOracle (its queries are in `last_queries`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.attacks.apgd_ce import AA_EPS, APGD_ITER
from host.attacks.base import BATCH_SIZE, SEED, Attack, Param, at_least_one, get_attack, in_range, register
from host.attacks.oracle import FloatOracle
from host.attacks.target import FloatModel

STAGES = ("apgd-ce", "apgd-t", "fab-t", "square-linf")


@register
class AutoAttack(Attack):
    name = "autoattack"
    threat_model = "white-box"
    norm = "inf"
    description = "AutoAttack standard ensemble: apgd-ce, apgd-t, fab-t, square-linf on the float model"
    art_class = "AutoProjectedGradientDescent ×2 + FAB-T (ours) + Square (ours)"
    craft_whole_set = True   # each stage batches the inputs the earlier ones left: in shards, a handful each
    params_spec = (
        AA_EPS, APGD_ITER,
        Param("n_targets", int, 9, "APGD-T and FAB-T target classes", at_least_one),
        Param("fab_max_iter", int, 100, "FAB-T iterations per target (AutoAttack: 100)", at_least_one),
        Param("square_max_iter", int, 5000, "Square iterations (queries per input, AutoAttack: 5000)", at_least_one),
        # AutoAttack's own Square starts at p_init=0.8; 0.05 (square-linf's default, the study's stand-alone Square)
        # is this registry's historical default, kept so earlier configs run unchanged.
        Param("square_p_init", float, 0.05, "Square's initial fraction of pixels changed (AutoAttack: 0.8)",
              in_range(0, 1, lo_open=True)),
        SEED, BATCH_SIZE,
    )

    def _stages(self, model: FloatModel) -> list[tuple[Attack, Any]]:
        p = self.params
        common = {"eps": self.eps, "seed": p["seed"]}
        batch = {"batch_size": p["batch_size"]}
        targets = {"n_targets": p["n_targets"]}
        return [
            (get_attack("apgd-ce", max_iter=p["max_iter"], **common, **batch), model),
            (get_attack("apgd-t", max_iter=p["max_iter"], **targets, **common, **batch), model),
            (get_attack("fab-t", max_iter=p["fab_max_iter"], **targets, **common, **batch), model),
            (get_attack("square-linf", max_iter=p["square_max_iter"], p_init=p["square_p_init"], **common),
             FloatOracle(model)),
        ]

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x_adv = x.copy()
        robust = model.predict(x).argmax(axis=1) == y
        self.stage_fooled: dict[str, int] = dict.fromkeys(STAGES, 0)  # inputs each stage fooled first
        for attack, target in self._stages(model):
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                break
            candidate = attack.generate(target, x[idx], y[idx])
            fooled = model.predict(candidate).argmax(axis=1) != y[idx]
            x_adv[idx[fooled]] = candidate[fooled]
            robust[idx[fooled]] = False
            self.stage_fooled[attack.name] = int(fooled.sum())
            if attack.last_queries is not None:  # Square's float-model queries
                self.last_queries = (self.last_queries or 0) + attack.last_queries
        return x_adv

"""EAD, elastic-net attack (Chen et al. 2018): C&W with an L1 penalty, minimal L1 perturbation.

engine="ours" (default): our batched, compiled kernel (host/attacks/batched/ead.py);
engine="art": ART's ElasticNet.  Both run ART's schedule: per binary-search round on c, max_iter
FISTA steps with shrinkage-thresholding (β) and a square-root decayed step size from x, the best
fooled iterate by the decision rule kept; ours counts an iterate as fooled only with the margin κ
(ART: any misclassification), the same at the default κ = 0.
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, BUDGET, SEED, Attack, Param, at_least_one, non_negative, positive, register
from host.attacks.batched import ENGINE
from host.attacks.batched.ead import DECISION_RULES, elastic_net
from host.attacks.common import art_evasion
from host.attacks.cw_l2 import CONFIDENCE, LEARNING_RATE
from host.attacks.target import FloatModel
from host.core.errors import UserError


@register
class EAD(Attack):
    name = "ead"
    threat_model = "white-box"
    norm = "1"
    bounded = False
    description = "elastic-net attack, minimal L1 (ours; engine=art: ART ElasticNet)"
    art_class = "ElasticNet"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 10, "iterations per binary-search step (study: 10)", at_least_one),
        Param("binary_search_steps", int, 10, "binary-search steps on c (study: 10)", at_least_one),
        Param("initial_const", float, 0.01, "initial trade-off constant c0 (study: 0.01)", positive),
        Param("beta", float, 0.001, "L1 weight β", non_negative),
        Param("decision_rule", str, "EN", "which adversarial example is best: EN, L1 or L2"),
        LEARNING_RATE, CONFIDENCE, SEED, BATCH_SIZE, ENGINE,
    )

    def _check_params(self) -> None:
        if self.params["decision_rule"] not in DECISION_RULES:
            raise UserError(f"attack 'ead': decision_rule must be one of {', '.join(DECISION_RULES)}")

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        if p["engine"] == "ours":
            return elastic_net(
                model, x, y, max_iter=p["max_iter"], binary_search_steps=p["binary_search_steps"],
                initial_const=p["initial_const"], learning_rate=p["learning_rate"], beta=p["beta"],
                confidence=p["confidence"], decision_rule=p["decision_rule"], batch_size=p["batch_size"],
            )
        attack = art_evasion("ElasticNet")(
            model.art_classifier(), confidence=p["confidence"], targeted=False, learning_rate=p["learning_rate"],
            binary_search_steps=p["binary_search_steps"], max_iter=p["max_iter"], beta=p["beta"],
            initial_const=p["initial_const"], batch_size=p["batch_size"], decision_rule=p["decision_rule"],
            verbose=False,
        )
        return attack.generate(x, y=y)

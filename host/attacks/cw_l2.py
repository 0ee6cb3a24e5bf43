"""Carlini & Wagner L2 (2017): minimal L2 perturbation by optimisation with a binary search on c.

engine="ours" (default): our batched, compiled kernel (host/attacks/batched/cw_l2.py);
engine="art": ART's CarliniL2Method.  Both minimise ‖δ‖² + c·max(z_y - max_{j≠y} z_j + κ, 0) in
tanh space by gradient descent with a line search on the step size, start at c = initial_const
and double c while an input is not fooled; ours then bisects c (ART keeps it).
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, BUDGET, SEED, Attack, Param, at_least_one, non_negative, positive, register
from host.attacks.batched import ENGINE, carlini_l2
from host.attacks.common import art_evasion
from host.attacks.target import FloatModel

CONFIDENCE = Param("confidence", float, 0.0, "logit margin required over the other classes (κ)", non_negative)
LEARNING_RATE = Param("learning_rate", float, 0.01, "Adam learning rate", positive)  # also cw-linf's and ead's
# The same parameter (name, default) for cw-l2, whose optimiser is a line search (both engines).
FIRST_STEP = Param("learning_rate", float, 0.01, "first step size of the line search, every round", positive)


@register
class CarliniL2(Attack):
    name = "cw-l2"
    threat_model = "white-box"
    norm = "2"
    bounded = False
    description = "Carlini-Wagner L2, minimal perturbation (ours; engine=art: ART CarliniL2Method)"
    art_class = "CarliniL2Method"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 10, "optimisation steps per binary-search step (study: 10)", at_least_one),
        Param("binary_search_steps", int, 10, "binary-search steps on c (study: 10)", at_least_one),
        Param("initial_const", float, 0.01, "initial trade-off constant c0 (study: 0.01)", positive),
        FIRST_STEP, CONFIDENCE, SEED, BATCH_SIZE, ENGINE,
    )

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        if p["engine"] == "ours":
            return carlini_l2(
                model, x, y, max_iter=p["max_iter"], binary_search_steps=p["binary_search_steps"],
                initial_const=p["initial_const"], learning_rate=p["learning_rate"], confidence=p["confidence"],
                batch_size=p["batch_size"],
            )
        attack = art_evasion("CarliniL2Method")(
            model.art_classifier(), confidence=p["confidence"], targeted=False, learning_rate=p["learning_rate"],
            binary_search_steps=p["binary_search_steps"], max_iter=p["max_iter"],
            initial_const=p["initial_const"], batch_size=p["batch_size"], verbose=False,
        )
        return attack.generate(x, y=y)

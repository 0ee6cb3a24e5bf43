"""Boundary attack (Brendel et al. 2018): decision-based random walk along the boundary, via ART.

Needs only labels from the QueryOracle; minimal L2 (eps is a budget).
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BUDGET, SEED, Attack, Param, at_least_one, in_range, positive, register
from host.attacks.common import art_evasion, random_adversarial_starts
from host.attacks.oracle import QueryOracle


@register
class Boundary(Attack):
    name = "boundary"
    threat_model = "black-box"
    norm = "2"
    bounded = False
    needs = "oracle"
    description = "boundary attack, decision-based, minimal L2 (ART BoundaryAttack)"
    art_class = "BoundaryAttack"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 500, "iterations (study: 500)", at_least_one),
        Param("delta", float, 0.1, "initial orthogonal step (study: 0.1)", positive),
        Param("epsilon", float, 1.0, "initial step toward the input (study: 1.0; a step, not a budget)", positive),
        Param("step_adapt", float, 0.667, "step-size adaptation factor, in (0, 1)", in_range(0, 1, lo_open=True)),
        Param("num_trial", int, 25, "trials per iteration", at_least_one),
        Param("sample_size", int, 20, "samples per trial", at_least_one),
        Param("init_size", int, 100, "random draws to find a first adversarial point", at_least_one),
        SEED,
        Param("batch_size", int, 64, "oracle batch size", at_least_one),
    )

    def _generate(self, model: QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        attack = art_evasion("BoundaryAttack")(
            model.art_classifier(), batch_size=p["batch_size"], targeted=False, delta=p["delta"],
            epsilon=p["epsilon"], step_adapt=p["step_adapt"], max_iter=p["max_iter"], num_trial=p["num_trial"],
            sample_size=p["sample_size"], init_size=p["init_size"], verbose=False,
        )
        starts = random_adversarial_starts(model, x, y, p["init_size"], np.random.default_rng(p["seed"]))
        return attack.generate(x, y=y, x_adv_init=starts)

"""ZOO (Chen et al. 2017): C&W loss with zeroth-order coordinate gradient estimates, via ART.

Runs on a QueryOracle's scores; minimal-L2 style (eps is a budget).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.attacks.base import BUDGET, SEED, Attack, Param, at_least_one, non_negative, positive, register
from host.attacks.common import art_evasion
from host.attacks.oracle import QueryOracle
from host.core.errors import UserError


@register
class ZOO(Attack):
    name = "zoo"
    threat_model = "black-box"
    norm = "2"
    bounded = False
    needs = "oracle"
    description = "zeroth-order optimisation (C&W loss, coordinate-wise finite differences) (ART ZooAttack)"
    art_class = "ZooAttack"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 10, "iterations per binary-search step (study: 10)", at_least_one),
        Param("binary_search_steps", int, 5, "binary-search steps on c (study: 5)", at_least_one),
        Param("initial_const", float, 1e-3, "initial trade-off constant c", positive),
        Param("learning_rate", float, 0.01, "coordinate step learning rate", positive),
        Param("nb_parallel", int, 128, "coordinates estimated per iteration (2 queries each; capped at inputs' size)",
              at_least_one),
        Param("variable_h", float, 1e-4, "finite-difference step", positive),
        Param("confidence", float, 0.0, "score margin required (κ)", non_negative),
        # ART's default is True (the study keeps it); False is this registry's historical default. ART only
        # reweights coordinates once the noise is wider than 32 pixels: a no-op on 32x32 CIFAR without resizing.
        Param("use_importance", bool, False, "importance sampling of coordinates (ART use_importance; study: ART's "
              "default, true)"),
        SEED,
    )

    def _check_inputs(self, target: QueryOracle, x: np.ndarray) -> None:
        if target.output != "scores":
            raise UserError("attack 'zoo' needs class scores: use an oracle with output='scores'")

    def art_attack(self, model: QueryOracle, x: np.ndarray) -> Any:
        """ART's ZooAttack over the oracle, with this attack's parameters, for inputs shaped like x."""
        p = self.params
        return art_evasion("ZooAttack")(
            model.art_classifier(), confidence=p["confidence"], targeted=False, learning_rate=p["learning_rate"],
            max_iter=p["max_iter"], binary_search_steps=p["binary_search_steps"], initial_const=p["initial_const"],
            abort_early=True, use_resize=False, use_importance=p["use_importance"],
            nb_parallel=min(p["nb_parallel"], int(np.prod(x.shape[1:]))), batch_size=1,
            variable_h=p["variable_h"], verbose=False,
        )

    def _generate(self, model: QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.art_attack(model, x).generate(x, y=y)

"""HopSkipJump (Chen et al. 2020): decision-based boundary gradient estimation, via ART.

Needs only labels from the QueryOracle; minimal L2 or L∞ (eps is a budget in that norm).
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BUDGET, SEED, Attack, Param, at_least_one, register
from host.attacks.common import art_evasion, random_adversarial_starts
from host.attacks.oracle import QueryOracle


class _HopSkipJump(Attack):
    threat_model = "black-box"
    bounded = False
    needs = "oracle"
    art_class = "HopSkipJump"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 50, "iterations (ART default; the study gives none)", at_least_one),
        Param("max_eval", int, 10000, "largest gradient-estimation sample per iteration", at_least_one),
        Param("init_eval", int, 100, "first gradient-estimation sample size", at_least_one),
        Param("init_size", int, 100, "random draws to find a first adversarial point", at_least_one),
        SEED,
        Param("batch_size", int, 64, "oracle batch size", at_least_one),
    )

    def _generate(self, model: QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        attack = art_evasion("HopSkipJump")(
            model.art_classifier(), batch_size=p["batch_size"], targeted=False,
            norm=np.inf if self.norm == "inf" else 2, max_iter=p["max_iter"], max_eval=p["max_eval"],
            init_eval=min(p["init_eval"], p["max_eval"]), init_size=p["init_size"], verbose=False,
        )
        starts = random_adversarial_starts(model, x, y, p["init_size"], np.random.default_rng(p["seed"]))
        return attack.generate(x, y=y, x_adv_init=starts)


@register
class HopSkipJumpL2(_HopSkipJump):
    name = "hopskipjump"
    norm = "2"
    description = "HopSkipJump, decision-based, minimal L2 (ART HopSkipJump)"

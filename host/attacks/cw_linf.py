"""Carlini & Wagner L∞ (2017): minimal L∞ perturbation, increasing c until success, shrinking τ.

engine="ours" (default): our batched, compiled version of ART's schedule
(host/attacks/batched/cw_linf.py); engine="art": ART's CarliniLInfMethod, one input at a time.
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import BATCH_SIZE, BUDGET, SEED, Attack, Param, at_least_one, in_range, positive, register
from host.attacks.batched import ENGINE
from host.attacks.batched.cw_linf import carlini_linf
from host.attacks.common import art_evasion
from host.attacks.cw_l2 import CONFIDENCE, LEARNING_RATE
from host.attacks.target import FloatModel
from host.core.errors import UserError


@register
class CarliniLinf(Attack):
    name = "cw-linf"
    threat_model = "white-box"
    norm = "inf"
    bounded = False
    description = "Carlini-Wagner L∞, minimal perturbation (ours; engine=art: ART CarliniLInfMethod)"
    art_class = "CarliniLInfMethod"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 10, "optimisation steps per constant (study: 10)", at_least_one),
        LEARNING_RATE,
        Param("initial_const", float, 1e-5, "first trade-off constant c", positive),
        Param("largest_const", float, 20.0, "give up once c exceeds this", positive),
        Param("const_factor", float, 2.0, "c multiplier between rounds (> 1)", positive),
        Param("decrease_factor", float, 0.9, "τ shrink factor, in (0, 1)", in_range(0, 1, lo_open=True)),
        CONFIDENCE, SEED, BATCH_SIZE, ENGINE,
    )

    def _check_params(self) -> None:
        p = self.params
        if p["const_factor"] <= 1:
            raise UserError(f"attack 'cw-linf': const_factor={p['const_factor']} must be > 1")
        if p["largest_const"] < p["initial_const"]:
            raise UserError("attack 'cw-linf': largest_const must be >= initial_const")

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        if p["engine"] == "ours":
            return carlini_linf(
                model, x, y, max_iter=p["max_iter"], learning_rate=p["learning_rate"],
                initial_const=p["initial_const"], largest_const=p["largest_const"], const_factor=p["const_factor"],
                decrease_factor=p["decrease_factor"], confidence=p["confidence"], batch_size=p["batch_size"],
            )
        attack = art_evasion("CarliniLInfMethod")(
            model.art_classifier(), confidence=p["confidence"], targeted=False, learning_rate=p["learning_rate"],
            max_iter=p["max_iter"], decrease_factor=p["decrease_factor"], initial_const=p["initial_const"],
            largest_const=p["largest_const"], const_factor=p["const_factor"], batch_size=p["batch_size"],
            verbose=False,
        )
        return attack.generate(x, y=y)

"""Square attack (Andriushchenko et al. 2020): score-based random search with square updates, via ART.

Runs on a QueryOracle (normally the quantized model itself); L∞ and L2 variants.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from host.attacks.base import SEED, Attack, Param, at_least_one, in_range, positive, register
from host.attacks.common import art_evasion
from host.attacks.oracle import QueryOracle
from host.errors import UserError

QUERY_BATCH = Param("batch_size", int, 128, "inputs attacked together (queries are per input)", at_least_one)


class _Square(Attack):
    threat_model = "black-box"
    needs = "oracle"
    art_class = "SquareAttack"
    art_norm: ClassVar[float]

    def _generate(self, model: QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        attack = art_evasion("SquareAttack")(
            model.art_classifier(), norm=self.art_norm, max_iter=p["max_iter"], eps=self.eps,
            p_init=p["p_init"], nb_restarts=p["restarts"], batch_size=p["batch_size"], verbose=False,
        )
        return attack.generate(x, y=y)


def _square_params(eps: float, max_iter: int, p_init: float, norm: str) -> tuple[Param, ...]:
    return (
        Param("eps", float, eps, f"L{norm} radius (study: {eps:g})", positive),
        Param("max_iter", int, max_iter, f"iterations (one query per input each; study: {max_iter})", at_least_one),
        Param("p_init", float, p_init, f"initial fraction of pixels changed (study: {p_init:g})",
              in_range(0, 1, lo_open=True)),
        Param("restarts", int, 1, "restarts on inputs not yet fooled", at_least_one),
        SEED, QUERY_BATCH,
    )


@register
class SquareLinf(_Square):
    name = "square-linf"
    norm = "inf"
    art_norm = np.inf
    description = "Square attack, L∞, score-based queries (ART SquareAttack)"
    params_spec = _square_params(0.015, 1000, 0.05, "∞")


@register
class SquareL2(_Square):
    name = "square-l2"
    norm = "2"
    art_norm = 2
    description = "Square attack, L2, score-based queries (ART SquareAttack)"
    params_spec = _square_params(1.0, 2000, 0.8, "2")

    def _check_inputs(self, target: QueryOracle, x: np.ndarray) -> None:
        # ART's L2 initialisation tiles the image 5x5 with tiles of side H // 5; below 10 pixels a
        # tile is 1 pixel, its perturbation normalises 0/0 and every query is NaN.
        if x.ndim != 4 or min(x.shape[1:3]) < 10:
            raise UserError(
                f"attack 'square-l2' needs NHWC images of at least 10x10 pixels (ART's 5x5 tiled start), "
                f"got inputs of shape {x.shape[1:]}",
                hint="use square-linf for small inputs such as the 8x8 digits",
            )

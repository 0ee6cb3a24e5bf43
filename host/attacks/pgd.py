"""PGD (Madry et al. 2018): iterated signed-gradient steps projected onto the L∞ ε-ball.

engine="ours" (default) runs our batched, compiled kernel (host/attacks/batched/pgd.py);
engine="art" runs ART's ProjectedGradientDescent with the same start, steps and projection.

Restarts follow the study (20 iterations, step ε/10, 20 restarts): each restart starts from a
fresh uniform random point in the ε-ball and runs only on the inputs no earlier restart fooled,
so an input counts as fooled iff any restart fooled it (the first fooling example is kept; an
input never fooled keeps the first restart's result).  This is the success set of ART's own
num_random_init loop, which re-attacks every input each restart and keeps the last success.
engine="ours" runs the later restarts of the few inputs left side by side in full batches
(host/attacks/batched/restarts.py): the same rule, drawn in a different order than engine="art".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from host.attacks.base import BATCH_SIZE, EPS, SEED, Attack, Param, at_least_one, positive, register
from host.attacks.batched import ENGINE, pgd_linf
from host.attacks.batched.restarts import restart_in_batches
from host.attacks.common import restart_until_fooled
from host.attacks.target import FloatModel, import_art
from host.core.errors import UserError

RANDOM_INIT = Param("random_init", bool, True, "start from a uniform random point in the ε-ball")


@register
class PGD(Attack):
    name = "pgd"
    threat_model = "white-box"
    norm = "inf"
    description = "projected gradient descent, L∞, restarts on still-robust inputs (ours; engine=art: ART)"
    art_class = "ProjectedGradientDescent"
    params_spec = (
        EPS,
        Param("max_iter", int, 20, "gradient steps per restart", at_least_one),
        # step = rel_step·ε: with 20 steps the iterate can cross the ball twice.
        Param("rel_step", float, 0.1, "step size as a fraction of eps", positive),
        RANDOM_INIT,
        Param("restarts", int, 20, "random starts (1 without random_init); the first that fools is kept",
              at_least_one),
        SEED,
        BATCH_SIZE,
        ENGINE,
    )

    def __init__(self, **params: Any) -> None:
        # Without random starts the study's 20 restarts would be identical: default to one.
        given = "random_init" in params and "restarts" not in params
        if given and not RANDOM_INIT.validate(params["random_init"], f"attack '{self.name}'"):
            params = {**params, "restarts": 1}
        super().__init__(**params)

    def _check_params(self) -> None:
        if self.params["restarts"] > 1 and not self.params["random_init"]:
            raise UserError(
                "attack 'pgd': restarts > 1 needs random_init=true (without it every restart is identical)"
            )

    @property
    def step(self) -> float:
        return self.params["rel_step"] * self.eps

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        def projected(run: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
            return lambda xs, ys: self.project(xs, run(xs, ys), model.input_range)

        restarts = self.params["restarts"]
        if self.params["engine"] == "art":
            return restart_until_fooled(model, x, y, restarts, projected(self._art_run(model)))
        # Same restart rule, but the few inputs left run several restarts per batch.
        return restart_in_batches(model, x, y, restarts, self.params["batch_size"], projected(self._our_run(model)))

    def _our_run(self, model: FloatModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        p = self.params

        def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            start = self._random_start(x, model.input_range) if p["random_init"] else x
            return pgd_linf(model, x, y, start, self.eps, self.step, p["max_iter"], p["batch_size"])

        return run

    def _random_start(self, x: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
        """Uniform in the ε-ball, clipped to the box; from NumPy's global generator (seeded by generate)."""
        noise = np.random.uniform(-self.eps, self.eps, size=x.shape).astype(np.float32)
        return np.clip(x + noise, *input_range).astype(np.float32)

    def _art_run(self, model: FloatModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        attack = import_art("art.attacks.evasion").ProjectedGradientDescent(
            model.art_classifier(),
            norm=np.inf,
            eps=self.eps,
            eps_step=self.step,
            max_iter=self.params["max_iter"],
            num_random_init=1 if self.params["random_init"] else 0,
            batch_size=self.params["batch_size"],
            verbose=False,
        )
        return lambda xs, ys: attack.generate(xs, y=ys)

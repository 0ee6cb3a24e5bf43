"""PGD adversarial training (Madry et al. 2018): fine-tune on L∞ PGD examples of the model itself.

Ours (an in-graph TensorFlow loop), following ART's AdversarialTrainerMadryPGD: every batch is
replaced by PGD examples crafted on the current weights (random start, `max_iter` steps of
rel_step·eps; ratio 1.0 = only adversarial examples, as Madry and ART).  Not ART's trainer
because it trains through an ART classifier around the logits model, and for models ending in
Dense(activation="softmax") (the study's ResNet) that logits model holds a COPY of the last
layer — the deployed model would not be the one trained; and its NumPy round trip per PGD
step is several times slower on two cores.  Study: eps 0.008, 10 iterations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.defenses.base import Param, Trainer, in_range, positive, register
from host.defenses.training import (
    TRAIN_PARAMS,
    clone_float_model,
    cross_entropy,
    fine_tune,
    logits_function,
    pgd_linf,
)

ATTACK_PARAMS = (
    Param("eps", float, 0.008, "L∞ radius of the training attack, in input units (study: 0.008)", positive),
    Param("max_iter", int, 10, "PGD steps per batch (study: 10)", in_range(1, 1000)),
    Param("rel_step", float, 0.25, "PGD step as a fraction of eps (ART's Madry default 2/8)", positive),
)


@register
class PGDAdversarialTraining(Trainer):
    name = "pgd-at"
    description = "PGD adversarial training: fine-tune on L∞ PGD examples of the current model"
    implementation = "ours: in-graph PGD + Adam (the algorithm of ART AdversarialTrainerMadryPGD)"
    params_spec = (
        *ATTACK_PARAMS,
        Param("adv_ratio", float, 1.0, "weight of the adversarial loss; 1 - adv_ratio on clean inputs",
              in_range(0.0, 1.0)),
        *TRAIN_PARAMS,
    )

    def _train(self, float_model: Any, x: np.ndarray, y: np.ndarray, input_range: tuple[float, float],
               params: dict[str, Any]) -> Any:
        model = clone_float_model(float_model)
        logits = logits_function(model)
        eps, ratio, train_bn = params["eps"], params["adv_ratio"], params["train_bn"]

        def prepare(xb: Any, yb: Any, seed: Any) -> tuple[Any]:
            return (pgd_linf(logits, xb, yb, eps=eps, step=params["rel_step"] * eps, iters=params["max_iter"],
                             input_range=input_range, seed=seed),)

        def loss(xb: Any, yb: Any, x_adv: Any) -> Any:
            value = ratio * cross_entropy(yb, logits(x_adv, train_bn))
            if ratio < 1.0:
                value += (1.0 - ratio) * cross_entropy(yb, logits(xb, train_bn))
            return value

        return fine_tune(model, x, y, loss, prepare=prepare, epochs=params["epochs"],
                         batch_size=params["batch_size"], learning_rate=params["learning_rate"],
                         optimizer=params["optimizer"],
                         seed=params["seed"])

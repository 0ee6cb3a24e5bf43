"""Sinkhorn adversarial training, SAT (Bouniot et al., "Optimal Transport as a Defense Against
Adversarial Attacks", ICPR 2020).

Ours.  Each batch: PGD examples of the current model (as in pgd-at), then the loss
    CE(f(x_adv), y) + sinkhorn_weight · S_ε(f(X), f(X_adv))
where f is the logits and S_ε the debiased Sinkhorn divergence between the batch of clean and
the batch of adversarial logits (uniform weights, cost ½‖a − b‖², entropic regularisation
ot_epsilon, `sinkhorn_iters` log-domain iterations): S_ε(A, B) = OT_ε(A, B) − ½ OT_ε(A, A)
− ½ OT_ε(B, B).  It pulls the distribution of adversarial representations onto the clean one,
as in domain adaptation.  Hyperparameters (weight, ε, iterations) are our choices: the study
does not give them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.defenses.base import Param, Trainer, at_least_one, non_negative, positive, register
from host.defenses.pgd_at import ATTACK_PARAMS
from host.defenses.training import (
    TRAIN_PARAMS,
    clone_float_model,
    cross_entropy,
    fine_tune,
    logits_function,
    pgd_linf,
)


def sinkhorn_divergence(a: Any, b: Any, epsilon: float, iters: int) -> Any:
    """Debiased entropic OT between two point clouds (rows), uniform weights, cost ½‖·‖²."""
    return ot_entropic(a, b, epsilon, iters) - 0.5 * ot_entropic(a, a, epsilon, iters) \
        - 0.5 * ot_entropic(b, b, epsilon, iters)


def ot_entropic(a: Any, b: Any, epsilon: float, iters: int) -> Any:
    """OT_ε(a, b) = <α, f> + <β, g> at the Sinkhorn fixed point (log domain, alternating updates)."""
    import tensorflow as tf

    return _ot_graph(tf)(a, b, tf.constant(epsilon, tf.float32), tf.constant(iters, tf.int32))


_OT_FN: list[Any] = []


def _ot_graph(tf: Any) -> Any:
    if not _OT_FN:
        _OT_FN.append(tf.function(_ot_body, reduce_retracing=True))
    return _OT_FN[0]


def _ot_body(a: Any, b: Any, epsilon: Any, iters: Any) -> Any:
    import tensorflow as tf

    a = tf.cast(a, tf.float32)
    b = tf.cast(b, tf.float32)
    cost = 0.5 * tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), axis=-1)
    n = tf.cast(tf.shape(a)[0], tf.float32)
    m = tf.cast(tf.shape(b)[0], tf.float32)
    log_alpha = -tf.math.log(n)
    log_beta = -tf.math.log(m)
    f = tf.zeros(tf.shape(a)[:1])
    g = tf.zeros(tf.shape(b)[:1])
    for _ in tf.range(iters):  # a graph loop: unrolling 3 × iters steps makes tracing slow
        f = -epsilon * tf.reduce_logsumexp(log_beta + (g[None, :] - cost) / epsilon, axis=1)
        g = -epsilon * tf.reduce_logsumexp(log_alpha + (f[:, None] - cost) / epsilon, axis=0)
    return tf.reduce_mean(f) + tf.reduce_mean(g)


@register
class SinkhornAdversarialTraining(Trainer):
    name = "sinkhorn-at"
    description = "Sinkhorn adversarial training (SAT): PGD examples, CE + Sinkhorn divergence clean vs adv"
    implementation = "ours: in-graph PGD + log-domain Sinkhorn divergence + Adam"
    params_spec = (
        *ATTACK_PARAMS,
        Param("sinkhorn_weight", float, 1.0, "weight of the Sinkhorn divergence term", non_negative),
        Param("ot_epsilon", float, 1.0, "entropic regularisation of the transport (logit units squared)",
              positive),
        Param("sinkhorn_iters", int, 30, "Sinkhorn iterations per divergence", at_least_one),
        *TRAIN_PARAMS,
    )

    def _train(self, float_model: Any, x: np.ndarray, y: np.ndarray, input_range: tuple[float, float],
               params: dict[str, Any]) -> Any:
        model = clone_float_model(float_model)
        logits = logits_function(model)
        eps, train_bn = params["eps"], params["train_bn"]
        weight, ot_eps, iters = params["sinkhorn_weight"], params["ot_epsilon"], params["sinkhorn_iters"]

        def prepare(xb: Any, yb: Any, seed: Any) -> tuple[Any]:
            return (pgd_linf(logits, xb, yb, eps=eps, step=params["rel_step"] * eps, iters=params["max_iter"],
                             input_range=input_range, seed=seed),)

        def loss(xb: Any, yb: Any, x_adv: Any) -> Any:
            z_adv = logits(x_adv, train_bn)
            value = cross_entropy(yb, z_adv)
            if weight > 0:
                value += weight * sinkhorn_divergence(logits(xb, train_bn), z_adv, ot_eps, iters)
            return value

        return fine_tune(model, x, y, loss, prepare=prepare, epochs=params["epochs"],
                         batch_size=params["batch_size"], learning_rate=params["learning_rate"],
                         optimizer=params["optimizer"],
                         seed=params["seed"])

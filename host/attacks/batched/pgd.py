"""PGD L∞, one run (random start given, then max_iter signed-gradient steps), all steps in one graph.

Per step, as in ART's ProjectedGradientDescent: x' = clip(x' + step·sign(∇ CE(y, f(x'))), box),
then x' = x + clip(x' - x, -ε, ε); the last iterate is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.attacks.batched.compiled import compiled, cross_entropy, in_batches, input_spec, scalar_spec
from host.attacks.target import FloatModel


def pgd_linf(
    model: FloatModel, x: np.ndarray, y: np.ndarray, start: np.ndarray,
    eps: float, step: float, max_iter: int, batch_size: int,
) -> np.ndarray:
    """The last PGD iterate from `start` (already in the ε-ball and the box) for every input."""
    kernel = compiled(model, ("pgd-linf",), _build)
    scalars = (np.float32(eps), np.float32(step), np.int32(max_iter))
    return in_batches(lambda xb, yb, sb: kernel(xb, yb, sb, *scalars), batch_size,
                      x.astype(np.float32), y.astype(np.int64), start.astype(np.float32))


def _build(net: Any, model: FloatModel) -> Any:
    import tensorflow as tf

    lo, hi = (float(v) for v in model.input_range)
    from_logits = model.outputs_logits()

    def ascent_direction(x_adv: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            scores = net(x_adv, training=False)
            # Summed, not averaged: the sign of each example's gradient is all that is used.
            loss = tf.reduce_sum(cross_entropy(y, scores, from_logits))
        grad = tape.gradient(loss, x_adv)
        return tf.sign(tf.where(tf.math.is_nan(grad), tf.zeros_like(grad), grad))

    @tf.function(input_signature=[input_spec(model), tf.TensorSpec((None,), tf.int64), input_spec(model),
                                  scalar_spec(), scalar_spec(), scalar_spec(tf.int32)],
                 reduce_retracing=True)
    def run(x: Any, y: Any, start: Any, eps: Any, step: Any, max_iter: Any) -> Any:
        def body(i: Any, x_adv: Any) -> tuple[Any, Any]:
            x_adv = tf.clip_by_value(x_adv + step * ascent_direction(x_adv, y), lo, hi)
            return i + 1, x + tf.clip_by_value(x_adv - x, -eps, eps)

        _, x_adv = tf.while_loop(lambda i, _: i < max_iter, body, (tf.constant(0), start))
        return x_adv

    return run

"""Carlini-Wagner L∞, batched: ART's CarliniLInfMethod schedule, every input of a batch at once.

ART 1.20 attacks one input at a time (the study's setting costs ~40 s per CIFAR image there);
the schedule below is ART's, step for step, so the results are the same attack:

* rounds on τ: τ starts at the input range's width (ART: 1.0 on [0, 1]); a round tries every
  c = initial_const · const_factorᵏ < largest_const, each from x afresh;
* for one c: Adam (lr, β = 0.9 / 0.999, bias-corrected, fresh moments) in tanh space for at most
  max_iter steps on c·max(z_y − max_{j≠y} z_j + κ, 0) + Σ max(|x' − x| − τ, 0), stopping an input
  once that loss is below 0.001; the step direction is ART's: ∇(z_y − z_j*) + sign(|δ| > τ)·sign(δ)
  (c only enters through the stopping rule);
* the last iterate of a c counts if it is misclassified and strictly closer (L∞) than the best so
  far (initially the range's width); after the round τ = min(τ, best L∞)·decrease_factor, and an
  input goes on to the next round only if this round improved it and τ > width/256.

Between rounds the inputs that are finished leave the batch.  Deliberate difference: ART's τ,
its first best distance and its 1/256 floor are absolute; ours scale with the input range (the
same on [0, 1], meaningful on 0..255 models).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.attacks.batched.compiled import (
    compiled,
    in_batches,
    input_spec,
    per_input_broadcaster,
    scalar_spec,
    true_class_margin,
)
from host.attacks.target import FloatModel

TANH_SMOOTHER = 0.999999   # ART's: keeps arctanh finite at the box edges
LOSS_CONVERGED = 0.001     # ART's Adam stops an input below this loss
TAU_FLOOR = 1.0 / 256.0    # in units of the input range's width
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def trade_off_constants(initial_const: float, largest_const: float, const_factor: float) -> np.ndarray:
    """The constants ART tries in every round: c0, c0·f, c0·f², … below largest_const."""
    consts, c = [], initial_const
    while c < largest_const:
        consts.append(c)
        c *= const_factor
    return np.asarray(consts, np.float32)


def carlini_linf(
    model: FloatModel, x: np.ndarray, y: np.ndarray, *, max_iter: int, learning_rate: float,
    initial_const: float, largest_const: float, const_factor: float, decrease_factor: float,
    confidence: float, batch_size: int,
) -> np.ndarray:
    """The closest (L∞) misclassified input found per input (x itself where none was found)."""
    kernel = compiled(model, ("cw-linf",), _build)
    consts = trade_off_constants(initial_const, largest_const, const_factor)
    lo, hi = (float(v) for v in model.input_range)
    width = np.float32(hi - lo)
    x, y = x.astype(np.float32), y.astype(np.int64)
    best, best_dist = x.copy(), np.full(len(x), width, np.float32)
    tau = np.full(len(x), width, np.float32)
    active = np.ones(len(x), bool)
    scalars = (consts, np.float32(learning_rate), np.float32(confidence), np.int32(max_iter))
    while active.any():
        todo = np.flatnonzero(active)
        best[todo], best_dist[todo], improved = in_batches(
            lambda xb, yb, tb, bb, db: kernel(xb, yb, tb, bb, db, *scalars), batch_size,
            x[todo], y[todo], tau[todo], best[todo], best_dist[todo])
        reached = np.abs(best[todo] - x[todo]).reshape(len(todo), -1).max(axis=1)
        tau[todo] = np.minimum(tau[todo], reached) * np.float32(decrease_factor)
        active[todo] = improved.astype(bool) & (tau[todo] > width * TAU_FLOOR)
    return best


def _build(net: Any, model: FloatModel) -> Any:
    import tensorflow as tf

    lo, hi = (float(v) for v in model.input_range)
    per_input = per_input_broadcaster(model)

    def to_tanh(x: Any) -> Any:
        return tf.atanh((2.0 * (x - lo) / (hi - lo) - 1.0) * TANH_SMOOTHER)

    def from_tanh(w: Any) -> Any:
        return (tf.tanh(w) + 1.0) / 2.0 * (hi - lo) + lo

    def max_abs(values: Any) -> Any:
        return tf.reduce_max(tf.abs(tf.reshape(values, (tf.shape(values)[0], -1))), axis=1)

    @tf.function(input_signature=[input_spec(model), tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,)),
                                  input_spec(model), tf.TensorSpec((None,)), tf.TensorSpec((None,)),
                                  scalar_spec(), scalar_spec(), scalar_spec(tf.int32)],
                 reduce_retracing=True)
    def one_round(x: Any, y: Any, tau: Any, best: Any, best_dist: Any, consts: Any, lr: Any, kappa: Any,
                  max_iter: Any) -> tuple[Any, Any, Any]:
        n = tf.shape(x)[0]
        w0 = to_tanh(x)
        tau_b = per_input(tau)

        def direction_and_loss(w: Any, c: Any) -> tuple[Any, Any, Any]:
            """ART's step direction in tanh space, its loss, and the logits, at w."""
            with tf.GradientTape() as tape:
                tape.watch(w)
                x_adv = from_tanh(w)
                logits = net(x_adv, training=False)
                margin = true_class_margin(logits, y)
                total = tf.reduce_sum(margin)   # examples are independent: each gets its own gradient
            toward = tape.gradient(total, w)   # ∇(z_y - z_j*) through the tanh box
            delta = x_adv - x
            outside = tf.nn.relu(tf.abs(delta) - tau_b)
            pull_in = tf.sign(outside) * tf.sign(delta) * (hi - lo) * (1.0 - tf.square(tf.tanh(w))) / 2.0
            direction = toward / TANH_SMOOTHER + pull_in / TANH_SMOOTHER
            loss = c * tf.nn.relu(margin + kappa) + tf.reduce_sum(tf.reshape(outside, (n, -1)), axis=1)
            return direction, loss, logits

        def adam(c: Any) -> tuple[Any, Any]:
            """The last Adam iterate for constant c (inputs stop once their loss converged)."""
            def step(k: Any, w: Any, m: Any, v: Any, g: Any, running: Any, logits: Any) -> tuple:
                m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * g
                v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(g)
                t = tf.cast(k, tf.float32)
                update = lr * (m / (1.0 - ADAM_BETA1 ** t)) / (tf.sqrt(v / (1.0 - ADAM_BETA2 ** t)) + ADAM_EPS)
                w = tf.where(per_input(running), w - update, w)
                g, loss, logits = direction_and_loss(w, c)
                return k + 1, w, m, v, g, running & (loss >= LOSS_CONVERGED), logits

            g, _, logits = direction_and_loss(w0, c)
            zeros = tf.zeros_like(w0)
            state = (tf.constant(1), w0, zeros, zeros, g, tf.ones((n,), tf.bool), logits)
            _, w, _, _, _, _, logits = tf.while_loop(
                lambda k, w, m, v, g, running, logits: (k <= max_iter) & tf.reduce_any(running), step, state)
            return from_tanh(w), logits

        def try_constant(i: Any, best: Any, best_dist: Any, improved: Any) -> tuple:
            x_adv, logits = adam(consts[i])
            dist = max_abs(x_adv - x)
            better = (tf.argmax(logits, axis=1) != y) & (dist < best_dist)
            return (i + 1, tf.where(per_input(better), x_adv, best), tf.where(better, dist, best_dist),
                    improved | better)

        state = (tf.constant(0), best, best_dist, tf.zeros((n,), tf.bool))
        _, best, best_dist, improved = tf.while_loop(
            lambda i, *_: i < tf.shape(consts)[0], try_constant, state)
        return best, best_dist, improved

    return one_round

"""Carlini-Wagner L2, batched: gradient descent in tanh space with a per-example line search on
the step size and a per-example binary search on c, one compiled graph per batch.

The schedule is ART's CarliniL2Method (whose success rates the study reports), not the paper's
Adam, which at the study's 10 steps of 0.01 barely moves saturated pixels:

* objective ‖x' - x‖² + c·max(z_y - max_{j≠y} z_j + κ, 0) with x' = tanh-box(w); the descent
  direction is the gradient of ‖x' - x‖² + c·(z_y - max_{j≠y} z_j) (ART's, also once fooled);
* per step, try the current step size, halving it up to 5 times until the objective drops;
  if the first try already dropped it, double it up to 5 times while it keeps dropping; take
  the best step; the step size carries over to the next step, and resets every round;
* every binary-search round restarts from x; c doubles while an example has never been fooled
  (ART's schedule; ART then keeps c fixed), then is bisected between the largest failing and
  smallest fooling c (a real binary search: it only adds closer candidates);
* every iterate with margin ≤ -κ closer than the best so far becomes the result; an example
  never fooled is returned unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.attacks.batched.compiled import (
    compiled,
    in_batches,
    input_spec,
    per_example_sum,
    per_input_broadcaster,
    scalar_spec,
    true_class_margin,
)
from host.attacks.target import FloatModel

TANH_SHRINK = 0.999999  # keeps arctanh finite at the box edges
MAX_HALVING = MAX_DOUBLING = 5  # line-search tries per step, as ART


def carlini_l2(
    model: FloatModel, x: np.ndarray, y: np.ndarray, *, max_iter: int, binary_search_steps: int,
    initial_const: float, learning_rate: float, confidence: float, batch_size: int,
) -> np.ndarray:
    """The closest fooling iterate found per input (x itself where none was found)."""
    kernel = compiled(model, ("cw-l2",), _build)
    scalars = (np.float32(initial_const), np.float32(learning_rate), np.float32(confidence),
               np.int32(binary_search_steps), np.int32(max_iter))
    return in_batches(lambda xb, yb: kernel(xb, yb, *scalars), batch_size,
                      x.astype(np.float32), y.astype(np.int64))


def _build(net: Any, model: FloatModel) -> Any:
    import tensorflow as tf

    lo, hi = (float(v) for v in model.input_range)
    per_input = per_input_broadcaster(model)

    def to_tanh(x: Any) -> Any:
        return tf.atanh((2.0 * (x - lo) / (hi - lo) - 1.0) * TANH_SHRINK)

    def from_tanh(w: Any) -> Any:
        return (tf.tanh(w) / TANH_SHRINK + 1.0) / 2.0 * (hi - lo) + lo

    @tf.function(input_signature=[input_spec(model), tf.TensorSpec((None,), tf.int64), scalar_spec(),
                                  scalar_spec(), scalar_spec(), scalar_spec(tf.int32), scalar_spec(tf.int32)],
                 reduce_retracing=True)
    def run(x: Any, y: Any, c0: Any, lr0: Any, kappa: Any, rounds: Any, max_iter: Any) -> Any:
        n = tf.shape(x)[0]
        w0 = to_tanh(x)

        def objective(w: Any, c: Any) -> Any:
            x_adv = from_tanh(w)
            margin = true_class_margin(net(x_adv, training=False), y)
            return per_example_sum(tf.square(x_adv - x)) + c * tf.nn.relu(margin + kappa)

        def evaluate(w: Any, c: Any) -> tuple[Any, Any, Any, Any, Any]:
            """Descent direction, the iterate, its distance, objective and success."""
            with tf.GradientTape() as tape:
                tape.watch(w)
                x_adv = from_tanh(w)
                l2 = per_example_sum(tf.square(x_adv - x))
                margin = true_class_margin(net(x_adv, training=False), y)
                pull = tf.reduce_sum(l2 + c * margin)  # ungated, as ART's gradient
            success = margin + kappa <= 0.0
            return -tape.gradient(pull, w), x_adv, l2, l2 + c * tf.nn.relu(margin + kappa), success

        def keep_best(x_adv: Any, l2: Any, success: Any, best: Any, best_l2: Any) -> tuple[Any, Any]:
            better = success & (l2 < best_l2)
            return tf.where(per_input(better), x_adv, best), tf.where(better, l2, best_l2)

        def line_search(w: Any, direction: Any, loss: Any, lr: Any, c: Any) -> tuple[Any, Any]:
            """The best step size found (0: none lowers the objective) and the next step size."""
            def try_step(trying: Any, lr: Any, best_loss: Any, best_lr: Any) -> tuple[Any, Any, Any]:
                trial = objective(w + per_input(lr) * direction, c)
                better = trying & (trial < best_loss)
                return trial, tf.where(better, trial, best_loss), tf.where(better, lr, best_lr)

            def halve(k: Any, trying: Any, lr: Any, best_loss: Any, best_lr: Any, tries: Any) -> tuple:
                trial, best_loss, best_lr = try_step(trying, lr, best_loss, best_lr)
                tries += tf.cast(trying, tf.int32)
                lr = tf.where(trying, lr / 2.0, lr)
                return k + 1, trying & (trial >= loss), lr, best_loss, best_lr, tries

            def double(k: Any, trying: Any, lr: Any, best_loss: Any, best_lr: Any) -> tuple:
                lr = tf.where(trying, lr * 2.0, lr)
                trial, best_loss, best_lr = try_step(trying, lr, best_loss, best_lr)
                return k + 1, trying & (trial <= best_loss), lr, best_loss, best_lr

            everyone = tf.ones((n,), tf.bool)
            state = (tf.constant(0), everyone, lr, loss, tf.zeros((n,)), tf.zeros((n,), tf.int32))
            _, _, lr, best_loss, best_lr, tries = tf.while_loop(
                lambda k, trying, *_: (k < MAX_HALVING) & tf.reduce_any(trying), halve, state)
            lr = lr * 2.0
            first_try_worked = tries == 1
            state = (tf.constant(0), first_try_worked, lr, best_loss, best_lr)
            _, _, lr, _, best_lr = tf.while_loop(
                lambda k, trying, *_: (k < MAX_DOUBLING) & tf.reduce_any(trying), double, state)
            return best_lr, tf.where(first_try_worked, lr / 2.0, lr)

        def one_round(c: Any, best: Any, best_l2: Any) -> tuple[Any, Any, Any]:
            def descend(i: Any, w: Any, lr: Any, fooled: Any, best: Any, best_l2: Any) -> tuple:
                direction, x_adv, l2, loss, success = evaluate(w, c)
                best, best_l2 = keep_best(x_adv, l2, success, best, best_l2)
                step, lr = line_search(w, direction, loss, lr, c)
                return i + 1, w + per_input(step) * direction, lr, fooled | success, best, best_l2

            state = (tf.constant(0), w0, tf.fill((n,), lr0), tf.zeros((n,), tf.bool), best, best_l2)
            _, w, _, fooled, best, best_l2 = tf.while_loop(lambda i, *_: i < max_iter, descend, state)
            _, x_adv, l2, _, success = evaluate(w, c)  # the last step's result counts too
            best, best_l2 = keep_best(x_adv, l2, success, best, best_l2)
            return fooled | success, best, best_l2

        def search_round(r: Any, c: Any, c_lo: Any, c_hi: Any, best: Any, best_l2: Any) -> tuple:
            fooled, best, best_l2 = one_round(c, best, best_l2)
            c_hi = tf.where(fooled, tf.minimum(c_hi, c), c_hi)
            c_lo = tf.where(fooled, c_lo, tf.maximum(c_lo, c))
            c = tf.where(tf.math.is_inf(c_hi), 2.0 * c, (c_lo + c_hi) / 2.0)
            return r + 1, c, c_lo, c_hi, best, best_l2

        inf = tf.fill((n,), np.float32(np.inf))
        state = (tf.constant(0), tf.fill((n,), c0), tf.zeros((n,)), inf, x, inf)
        *_, best, _ = tf.while_loop(lambda r, *_: r < rounds, search_round, state)
        return best

    return run

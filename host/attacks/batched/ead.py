"""EAD (elastic-net attack, Chen et al. 2018), batched: FISTA on c·max(z_y - max_{j≠y} z_j + κ, 0)
+ ‖δ‖² + β‖δ‖₁ with a per-example binary search on c, one compiled graph per batch.

The schedule is ART's ElasticNet (whose success rates the study reports), step for step:

* every binary-search round restarts from x' = y' = x and runs max_iter FISTA steps i = 0, 1, …
  with the square-root decayed step size lr·√(1 - i/max_iter);
* the gradient at the look-ahead point y' is c·∇(z_y - z_o) + 2(y' - x), where o is the best
  other class at y'; it is zeroed (the whole of it) for an example whose margin
  z_y - z_o + κ is already below 0 at y';
* x'_next = S_β(y' - lr·gradient): the shrinkage-thresholding of the step around x (moves of
  at most β snap back to x, larger ones shrink by β), clipped to the model's input range
  (ART clips to [0, 1] whatever the classifier's range); then
  y' = x'_next + i/(i+3)·(x'_next - x');
* every iterate x'_next that is fooled and closer to x than the best so far, by the decision
  rule's distance (EN: β‖δ‖₁ + ‖δ‖₂², L1: ‖δ‖₁, L2: ‖δ‖₂²), becomes the result;
* c starts at initial_const; after a round in which an example was fooled, its upper bound
  becomes min(bound, c), else its lower bound max(bound, c); c is then the middle of the
  bounds once the upper one is below 1e9 (it starts at 1e11), else multiplied by 10 after a
  failure (and kept after a success), as ART;
* an example never fooled is returned unchanged; the result is clipped to the input range.

Cost per step: one forward+backward pass at y' (the gradient and the gate) and one forward pass
at x'_next (the decision); ART makes two predictions and, in each of its two class_gradient
calls, a forward+backward pass over the whole batch per distinct label (up to 2 × classes).
The first step of every round starts at y' = x, whose margin and gradient are computed once per
batch.  (y' = x'_next also after the first step, where the momentum is 0; sharing that pass
would save one forward per round, not worth a second branch.)

Deliberate difference: an iterate counts as fooled when z_y - max_{j≠y} z_j + κ < 0, as in the
paper and our C&W-L2 kernel; ART only asks argmax ≠ y there, i.e. ignores κ in the decision
(the same rule when κ = 0, up to exact ties).  Arithmetic is float32 throughout (ART mixes in
float64 through c), so results agree with ART's to rounding, not bit for bit.
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

DECISION_RULES = ("EN", "L1", "L2")
UPPER_BOUND_START = 10e10   # ART's initial upper bound on c ...
BOUND_FOUND = 1e9           # ... and the value below which it counts as found (then bisect)
C_GROWTH = 10.0             # c's factor after a failed round while no upper bound exists


def elastic_net(
    model: FloatModel, x: np.ndarray, y: np.ndarray, *, max_iter: int, binary_search_steps: int,
    initial_const: float, learning_rate: float, beta: float, confidence: float, decision_rule: str,
    batch_size: int,
) -> np.ndarray:
    """The best fooling iterate per input by the decision rule (x itself where none was found)."""
    if decision_rule not in DECISION_RULES:
        raise ValueError(f"decision_rule must be one of {', '.join(DECISION_RULES)}, got {decision_rule!r}")
    kernel = compiled(model, ("ead",), _build)
    # The rule's distance as w1·‖δ‖₁ + w2·‖δ‖₂²: tensors, so one trace serves every rule.
    w_l1, w_l2 = {"EN": (beta, 1.0), "L1": (1.0, 0.0), "L2": (0.0, 1.0)}[decision_rule]
    scalars = (np.float32(initial_const), np.float32(learning_rate), np.float32(beta), np.float32(confidence),
               np.float32(w_l1), np.float32(w_l2), np.int32(binary_search_steps), np.int32(max_iter))
    return in_batches(lambda xb, yb: kernel(xb, yb, *scalars), batch_size,
                      x.astype(np.float32), y.astype(np.int64))


def _build(net: Any, model: FloatModel) -> Any:
    import tensorflow as tf

    lo, hi = (float(v) for v in model.input_range)
    per_input = per_input_broadcaster(model)

    @tf.function(input_signature=[input_spec(model), tf.TensorSpec((None,), tf.int64), scalar_spec(),
                                  scalar_spec(), scalar_spec(), scalar_spec(), scalar_spec(), scalar_spec(),
                                  scalar_spec(tf.int32), scalar_spec(tf.int32)],
                 reduce_retracing=True)
    def run(x: Any, y: Any, c0: Any, lr0: Any, beta: Any, kappa: Any, w_l1: Any, w_l2: Any,
            rounds: Any, max_iter: Any) -> Any:
        n = tf.shape(x)[0]
        steps = tf.cast(max_iter, tf.float32)

        def margin_and_gradient(point: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                tape.watch(point)
                margin = true_class_margin(net(point, training=False), y)
                total = tf.reduce_sum(margin)  # examples are independent: its gradient is per example
            return margin, tape.gradient(total, point)

        def shrink(z: Any) -> Any:
            """ART's projected shrinkage-thresholding around x, in the model's input range."""
            d = z - x
            return tf.where(d > beta, tf.minimum(z - beta, hi), tf.where(d < -beta, tf.maximum(z + beta, lo), x))

        margin_x, gradient_x = margin_and_gradient(x)  # every round's first look-ahead point is x

        def one_round(c: Any, best: Any, best_dist: Any) -> tuple[Any, Any, Any]:
            def fista_step(i: Any, x_adv: Any, y_adv: Any, fooled: Any, best: Any, best_dist: Any) -> tuple:
                margin, gradient = tf.cond(i == 0, lambda: (margin_x, gradient_x),
                                           lambda: margin_and_gradient(y_adv))
                step = per_input(c) * gradient + 2.0 * (y_adv - x)
                step = tf.where(per_input(margin + kappa < 0.0), tf.zeros_like(step), step)  # ART's gate
                fi = tf.cast(i, tf.float32)
                lr = lr0 * tf.sqrt(1.0 - fi / steps)
                x_next = shrink(y_adv - lr * step)
                y_next = x_next + fi / (fi + 3.0) * (x_next - x_adv)
                # The decision: is x_next fooled, and closer than the best so far?
                success = true_class_margin(net(x_next, training=False), y) + kappa < 0.0
                delta = x_next - x
                dist = w_l1 * per_example_sum(tf.abs(delta)) + w_l2 * per_example_sum(tf.square(delta))
                better = success & (dist < best_dist)
                best = tf.where(per_input(better), x_next, best)
                return i + 1, x_next, y_next, fooled | success, best, tf.where(better, dist, best_dist)

            state = (tf.constant(0), x, x, tf.zeros((n,), tf.bool), best, best_dist)
            _, _, _, fooled, best, best_dist = tf.while_loop(lambda i, *_: i < max_iter, fista_step, state)
            return fooled, best, best_dist

        def search_round(r: Any, c: Any, c_lo: Any, c_hi: Any, best: Any, best_dist: Any) -> tuple:
            fooled, best, best_dist = one_round(c, best, best_dist)
            c_hi = tf.where(fooled, tf.minimum(c_hi, c), c_hi)
            c_lo = tf.where(fooled, c_lo, tf.maximum(c_lo, c))
            c = tf.where(c_hi < BOUND_FOUND, (c_lo + c_hi) / 2.0, tf.where(fooled, c, C_GROWTH * c))
            return r + 1, c, c_lo, c_hi, best, best_dist

        state = (tf.constant(0), tf.fill((n,), c0), tf.zeros((n,)), tf.fill((n,), np.float32(UPPER_BOUND_START)),
                 x, tf.fill((n,), np.float32(np.inf)))
        *_, best, _ = tf.while_loop(lambda r, *_: r < rounds, search_round, state)
        return tf.clip_by_value(best, lo, hi)  # ART's final clip

    return run

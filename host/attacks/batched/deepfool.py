"""DeepFool, batched: every class gradient of a batch per step in one graph, per-example stop masks.

As in the paper and ART: k̂ = the model's own prediction at x (labels are not used); per step,
for each candidate class l ≠ k̂ with w_l = ∇(z_l - z_k̂) and f_l = z_l - z_k̂, go to the nearest
linearised boundary, r = |f_l| / ‖w_l‖² · w_l (l minimising |f_l| / ‖w_l‖), clipped to the box;
an example stops once its prediction differs from k̂.  Finally the total perturbation is
stretched by (1 + overshoot) and clipped.  Candidates are each example's nb_grads most likely
classes at x (ART takes the union of them over all inputs; the same when nb_grads ≥ classes).

Steps run in compiled chunks; between chunks the examples already fooled are dropped, so a
few slow examples do not keep a whole batch busy until max_iter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.attacks.batched.compiled import compiled, in_batches, input_spec, per_input_broadcaster, scalar_spec
from host.attacks.target import FloatModel

TOL = 1e-7     # keeps the divisions finite where two class gradients coincide
CHUNK = 4      # steps per compiled call before fooled examples are dropped


def deepfool(
    model: FloatModel, x: np.ndarray, *, max_iter: int, overshoot: float, nb_grads: int, batch_size: int,
) -> np.ndarray:
    """DeepFool's result for every input (x stretched towards the boundary it crossed, or tried to)."""
    kernel = compiled(model, ("deepfool",), _build)
    x = x.astype(np.float32)
    scores = model.predict(x)
    start_class = scores.argmax(axis=1).astype(np.int64)
    candidates = _top_classes(scores, nb_grads)
    x_adv, active, done = x.copy(), np.ones(len(x), bool), 0
    while active.any() and done < max_iter:
        steps = np.int32(min(CHUNK, max_iter - done))
        todo = np.flatnonzero(active)
        x_adv[todo], active[todo] = in_batches(lambda xb, kb, cb, n=steps: kernel(xb, kb, cb, n), batch_size,
                                               x_adv[todo], start_class[todo], candidates[todo])
        done += int(steps)
    lo, hi = model.input_range
    return np.clip(x + (1.0 + overshoot) * (x_adv - x), lo, hi).astype(np.float32)


def _top_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """A mask of each row's k highest-scoring classes."""
    mask = np.zeros(scores.shape, bool)
    np.put_along_axis(mask, np.argsort(-scores, axis=1)[:, :k], True, axis=1)
    return mask


def _build(net: Any, model: FloatModel) -> Any:
    import tensorflow as tf

    lo, hi = (float(v) for v in model.input_range)
    per_input = per_input_broadcaster(model)
    num_classes = model.num_classes

    def scores_and_gradients(x_adv: Any) -> tuple[Any, Any]:
        """Scores (n, K) and every class's input gradient (n, K, *input)."""
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x_adv)
            scores = net(x_adv, training=False)
            per_class = [scores[:, k] for k in range(num_classes)]
        # Examples are independent: the gradient of a class's column is each example's own.
        grads = tf.stack([tape.gradient(col, x_adv) for col in per_class], axis=1)
        del tape
        return scores, grads

    def step(x_adv: Any, scores: Any, grads: Any, start_class: Any, candidates: Any) -> Any:
        w = grads - tf.gather(grads, start_class, axis=1, batch_dims=1)[:, None]
        f = scores - tf.gather(scores, start_class, axis=1, batch_dims=1)[:, None]
        w_norm = tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(w), (tf.shape(w)[0], num_classes, -1)), axis=2))
        distance = tf.abs(f) / (w_norm + TOL)
        others = candidates & ~tf.one_hot(start_class, num_classes, on_value=True, off_value=False)
        nearest = tf.argmin(tf.where(others, distance, np.float32(np.inf)), axis=1)
        w_l = tf.gather(w, nearest, axis=1, batch_dims=1)
        f_l = tf.gather(f, nearest, axis=1, batch_dims=1)
        size = tf.abs(f_l) / (tf.square(tf.gather(w_norm, nearest, axis=1, batch_dims=1)) + TOL)
        return tf.clip_by_value(x_adv + per_input(size) * w_l * (hi - lo), lo, hi)

    @tf.function(input_signature=[input_spec(model), tf.TensorSpec((None,), tf.int64),
                                  tf.TensorSpec((None, num_classes), tf.bool), scalar_spec(tf.int32)],
                 reduce_retracing=True)
    def run(x_adv: Any, start_class: Any, candidates: Any, steps: Any) -> tuple[Any, Any]:
        def body(i: Any, x_adv: Any, active: Any, scores: Any, grads: Any) -> tuple:
            moved = step(x_adv, scores, grads, start_class, candidates)
            x_adv = tf.where(per_input(active), moved, x_adv)
            scores, grads = scores_and_gradients(x_adv)
            return i + 1, x_adv, tf.argmax(scores, axis=1) == start_class, scores, grads

        scores, grads = scores_and_gradients(x_adv)
        active = tf.argmax(scores, axis=1) == start_class
        state = (tf.constant(0), x_adv, active, scores, grads)
        _, x_adv, active, _, _ = tf.while_loop(lambda i, x, a, *_: (i < steps) & tf.reduce_any(a), body, state)
        return x_adv, active

    return run

"""FAB-T (Croce & Hein, ICML 2020): targeted Fast Adaptive Boundary attack, minimal L∞.

Ours, written from the paper (ART 1.20 has no FAB).  White-box on the float model's logits,
batched over inputs.  For a target class t, each step linearises the boundary between the
label y and t at the current point x_i (the hyperplane  f + <w, z - x_i> = 0  with
f = z_t(x_i) - z_y(x_i), w = ∇f), projects both x_i and the original x onto it (minimal L∞
step, inside the input box), and moves to a convex combination of the two extrapolated
projections, biased towards x's projection (weight α ≤ α_max) to stay close to x:

    x_{i+1} = clip((1 - α)(x_i + η δ_i) + α(x + η δ_x)),  α = min(‖δ_i‖/(‖δ_i‖ + ‖δ_x‖), α_max)

Whenever x_{i+1} is misclassified it is a candidate (the smallest ‖x_{i+1} - x‖∞ is kept) and
the search steps back towards x:  x_{i+1} ← (1 - β) x + β x_{i+1}.

As in AutoAttack, the targets are the n_targets highest-scoring wrong classes of the clean
input, one run each on the inputs no earlier target fooled within eps.  eps (AutoAttack's ε)
is the budget: a result farther than eps is replaced by x; later restarts start uniformly in
the ε-ball.  Not done: the paper's final binary search between x and the best point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from host.attacks.apgd_ce import AA_EPS
from host.attacks.base import BATCH_SIZE, SEED, Attack, Param, at_least_one, in_range, positive, register
from host.attacks.target import FloatModel

Step = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


# ---------------------------------------------------------------- the L∞ projection


def project_linf(z: np.ndarray, w: np.ndarray, b: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per row, the minimal-L∞ step δ with  b + <w, δ> = 0  and  lo <= z + δ <= hi.

    Along each coordinate δ_j moves in the direction that brings b to 0 (sign of -b·w_j), by
    min(r, room_j) where room_j is the distance to the box in that direction; the progress
    g(r) = Σ |w_j| min(r, room_j) is piecewise linear in r, so the smallest r with g(r) = |b|
    is found exactly from the sorted rooms.  If the box cannot reach the hyperplane, every
    coordinate goes to the box (the most progress possible).
    """
    direction = np.sign(-b)[:, None] * np.sign(w)
    room = np.where(direction > 0, hi - z, z - lo).clip(min=0.0)
    weight = np.abs(w) * (direction != 0)
    radius = _radius_reaching(room, weight, np.abs(b))
    return direction * np.minimum(radius[:, None], room)


def _radius_reaching(room: np.ndarray, weight: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Smallest r with Σ_j weight_j min(r, room_j) >= need per row (inf: unreachable)."""
    order = np.argsort(room, axis=1)
    rooms = np.take_along_axis(room, order, axis=1)
    weights = np.take_along_axis(weight, order, axis=1)
    saturated = np.cumsum(weights * rooms, axis=1)                   # coordinates at their room
    free = weights.sum(axis=1, keepdims=True) - np.cumsum(weights, axis=1)  # still growing with r
    progress = saturated + rooms * free                             # g at each breakpoint
    reached = progress >= need[:, None]
    k = reached.argmax(axis=1)                                      # first breakpoint reaching need
    rows = np.arange(len(need))
    before_saturated = np.where(k > 0, saturated[rows, k - 1], 0.0)
    before_free = np.where(k > 0, free[rows, k - 1], weights.sum(axis=1))
    radius = (need - before_saturated) / np.maximum(before_free, 1e-30)
    radius = np.where(reached.any(axis=1), radius, np.inf)
    return np.where(need <= 0, 0.0, radius)


# ---------------------------------------------------------------- one targeted run


def fab_targeted(
    step: Step, x: np.ndarray, y: np.ndarray, target: np.ndarray, start: np.ndarray,
    box: tuple[float, float], max_iter: int, alpha_max: float, eta: float, beta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One FAB run towards `target` from `start`: (best adversarial per input, its L∞ distance;
    x and inf where none was found)."""
    lo, hi = box
    n = len(x)
    flat_x = x.reshape(n, -1).astype(np.float64)
    current = start.reshape(n, -1).astype(np.float64)
    best, best_norm = flat_x.copy(), np.full(n, np.inf)
    for _ in range(max_iter):
        _, f, w = step(current.reshape(x.shape), y, target)
        w = w.reshape(n, -1)
        delta_i = project_linf(current, w, f, lo, hi)
        delta_x = project_linf(flat_x, w, f + np.sum(w * (flat_x - current), axis=1), lo, hi)
        alpha = _mixing(np.abs(delta_i).max(axis=1), np.abs(delta_x).max(axis=1), alpha_max)
        current = np.clip((1 - alpha) * (current + eta * delta_i) + alpha * (flat_x + eta * delta_x), lo, hi)
        logits, _, _ = step(current.reshape(x.shape), y, target)
        adversarial = logits.argmax(axis=1) != y
        norm = np.abs(current - flat_x).max(axis=1)
        improved = adversarial & (norm < best_norm)
        best[improved], best_norm[improved] = current[improved], norm[improved]
        current[adversarial] = (1 - beta) * flat_x[adversarial] + beta * current[adversarial]
    return best.reshape(x.shape).astype(np.float32), best_norm


def _mixing(step_norm: np.ndarray, origin_norm: np.ndarray, alpha_max: float) -> np.ndarray:
    """α = min(‖δ_i‖ / (‖δ_i‖ + ‖δ_x‖), α_max), 0 where both are 0 (already on the plane)."""
    total = step_norm + origin_norm
    ratio = np.divide(step_norm, total, out=np.zeros_like(total), where=total > 0)
    return np.minimum(ratio, alpha_max)[:, None]


def gradient_step(model: FloatModel) -> Step:
    """A batched TF function: (logits, f = z_t - z_y, ∇f) at x, through the logits model."""
    import tensorflow as tf

    logits_model = model.logits_model()
    classes = model.num_classes

    @tf.function(reduce_retracing=True)
    def run(x: Any, y: Any, t: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = logits_model(x, training=False)
            # Samples do not interact (inference mode): the gradient of the sum is per-sample.
            f = tf.reduce_sum(logits * (tf.one_hot(t, classes) - tf.one_hot(y, classes)), axis=1)
        return logits, f, tape.gradient(f, x)

    def step(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, f, grad = run(tf.constant(x, tf.float32), tf.constant(y, tf.int32), tf.constant(t, tf.int32))
        return logits.numpy().astype(np.float64), f.numpy().astype(np.float64), grad.numpy().astype(np.float64)

    return step


# ---------------------------------------------------------------- registry


@register
class FABT(Attack):
    name = "fab-t"
    threat_model = "white-box"
    norm = "inf"
    bounded = False
    description = "targeted FAB, minimal L∞ within the eps budget, top-k targets (ours, Croce & Hein 2020)"
    art_class = "(ours, from the paper)"
    params_spec = (
        Param("eps", float, AA_EPS.default,
              "L∞ budget (AutoAttack ε): a result farther than eps is replaced by x; restart radius", positive),
        Param("max_iter", int, 100, "iterations per target (AutoAttack: 100)", at_least_one),
        Param("n_targets", int, 9, "target classes tried per input (AutoAttack: 9)", at_least_one),
        Param("restarts", int, 1, "runs per target: the first from x, others uniform in the ε-ball", at_least_one),
        Param("alpha_max", float, 0.1, "largest weight of the step from x (paper: 0.1)", in_range(0, 1)),
        Param("eta", float, 1.05, "extrapolation past the linearised boundary (paper: 1.05)", positive),
        Param("beta", float, 0.9, "backward step towards x after a success (paper: 0.9)", in_range(0, 1, lo_open=True)),
        SEED, BATCH_SIZE,
    )

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        step, batch = gradient_step(model), self.params["batch_size"]
        rng = np.random.default_rng(self.params["seed"])
        x_adv = x.copy()
        self.distance = np.full(len(x), np.inf)  # smallest L∞ distance found (0: misclassified clean)
        for start in range(0, len(x), batch):
            rows = slice(start, start + batch)
            x_adv[rows], self.distance[rows] = self._attack_chunk(step, model, x[rows], y[rows], rng)
        return x_adv

    def _attack_chunk(
        self, step: Step, model: FloatModel, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every target in turn (then every restart) on the inputs not yet fooled within eps."""
        p = self.params
        logits, _, _ = step(x, y, y)
        order = np.argsort(-logits, axis=1)
        best, distance = x.copy(), np.where(order[:, 0] == y, np.inf, 0.0)
        for k in range(1, min(p["n_targets"], model.num_classes - 1) + 1):
            for restart in range(p["restarts"]):
                todo = np.flatnonzero(distance > self.eps)
                if todo.size == 0:
                    return best, distance
                target = np.where(order[todo, 0] == y[todo], order[todo, k], order[todo, 0])
                begin = x[todo] if restart == 0 else self._random_start(x[todo], model.input_range, rng)
                found, norm = fab_targeted(step, x[todo], y[todo], target, begin, model.input_range,
                                           p["max_iter"], p["alpha_max"], p["eta"], p["beta"])
                better = norm < distance[todo]
                best[todo[better]], distance[todo[better]] = found[better], norm[better]
        return best, distance

    def _random_start(self, x: np.ndarray, box: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
        return np.clip(x + rng.uniform(-self.eps, self.eps, size=x.shape), *box).astype(np.float32)

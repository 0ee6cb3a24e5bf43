"""Random restarts on the inputs still robust, several restarts per batch.

Same rule as host.attacks.common.restart_until_fooled: restart k runs only on inputs that no
restart before k fooled, the first fooling candidate (in restart order) is kept, an input never
fooled keeps the first run's result.  The difference is in the packing: when few inputs remain,
their next restarts run side by side in one batch (a restart after the first fooling one is
wasted work, but a full batch costs about what a tiny one does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from host.attacks.batched.compiled import predicted_labels
from host.attacks.target import FloatModel


def restart_in_batches(
    model: FloatModel, x: np.ndarray, y: np.ndarray, restarts: int, batch_size: int,
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """run(x, y) (fresh random start per row, projected result) up to `restarts` times per input."""
    x_adv = np.asarray(run(x, y), np.float32)
    todo = np.flatnonzero(predicted_labels(model, x_adv, batch_size) == y)
    left = restarts - 1
    while todo.size and left > 0:
        copies = min(left, max(1, batch_size // todo.size))
        x_rep, y_rep = np.tile(x[todo], (copies,) + (1,) * (x.ndim - 1)), np.tile(y[todo], copies)
        candidates = np.asarray(run(x_rep, y_rep), np.float32).reshape(copies, todo.size, *x.shape[1:])
        fooled = (predicted_labels(model, candidates.reshape(x_rep.shape), batch_size) != y_rep).reshape(copies, -1)
        hit = fooled.any(axis=0)
        first = fooled.argmax(axis=0)  # the earliest fooling restart of each input
        x_adv[todo[hit]] = candidates[first[hit], np.flatnonzero(hit)]
        todo, left = todo[~hit], left - copies
    return x_adv

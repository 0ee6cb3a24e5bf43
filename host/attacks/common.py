"""Helpers shared by several attack modules (no attack lives here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from host.attacks.oracle import QueryOracle
from host.attacks.target import import_art


def art_evasion(name: str) -> Any:
    """A class from art.attacks.evasion (imported quietly, on first use)."""
    return getattr(import_art("art.attacks.evasion"), name)


def predict_labels(model: Any, x: np.ndarray) -> np.ndarray:
    """Predicted classes from a FloatModel or a QueryOracle (an oracle counts the queries)."""
    if isinstance(model, QueryOracle):
        return model.predict_labels(x)
    return model.predict(x).argmax(axis=1)


def restart_until_fooled(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    restarts: int,
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Run `run(x, y)` (returning projected candidates) up to `restarts` times, each on the
    inputs not fooled yet; the first fooling candidate is kept, else the first run's result."""
    x_adv = np.asarray(run(x, y), np.float32)
    todo = np.flatnonzero(predict_labels(model, x_adv) == y)
    for _ in range(restarts - 1):
        if todo.size == 0:
            break
        candidate = np.asarray(run(x[todo], y[todo]), np.float32)
        fooled = predict_labels(model, candidate) != y[todo]
        x_adv[todo[fooled]] = candidate[fooled]
        todo = todo[~fooled]
    return x_adv


def random_targets(y: np.ndarray, nb_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random class different from each label."""
    shift = rng.integers(1, nb_classes, size=len(y))
    return (y + shift) % nb_classes


def random_adversarial_starts(
    oracle: Any, x: np.ndarray, y: np.ndarray, init_size: int, rng: np.random.Generator, chunk: int = 10
) -> np.ndarray:
    """Per input, the first of up to init_size seeded uniform random inputs the oracle does not
    label y (x itself when none is found).  ART's Boundary and HopSkipJump draw their own with an
    unseeded np.random.RandomState(); passing these as x_adv_init makes them reproducible."""
    lo, hi = oracle.input_range
    starts = x.copy()
    for i in range(len(x)):
        for first in range(0, init_size, chunk):
            draws = rng.uniform(lo, hi, size=(min(chunk, init_size - first), *x.shape[1:])).astype(np.float32)
            hits = np.flatnonzero(oracle.predict_labels(draws) != y[i])
            if hits.size:
                starts[i] = draws[hits[0]]
                break
    return starts

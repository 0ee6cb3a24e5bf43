"""Our batched C&W-L∞ (engine="ours") runs ART's CarliniLInfMethod schedule: the same examples as
ART's on the same inputs, on the digits model.  ART attacks one input at a time (seconds each), so
the default suite compares a few inputs and `make test-slow` sixteen."""

from __future__ import annotations

import numpy as np
import pytest

from host.attacks import get_attack
from host.attacks.batched.compiled import compiled
from host.attacks.batched.cw_linf import _build, trade_off_constants
from host.core.data import load_digits_split

# Small enough for ART to finish in seconds: 6 constants (0.5 … 16) of at most 5 Adam steps per round.
PARAMS = {"max_iter": 5, "learning_rate": 0.05, "initial_const": 0.5, "largest_const": 20.0}
FOOLED = [10, 12]          # digits test inputs these parameters fool (ART and ours alike)
ROBUST = [0]               # one they do not
SAME = 1e-5                # float32 arithmetic in a different order (batched TF vs ART's NumPy)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y = load_digits_split()
    return x, y


def both_engines(float_model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    return tuple(get_attack("cw-linf", engine=engine, **PARAMS).generate(float_model, x, y)
                 for engine in ("ours", "art"))


def test_same_examples_as_art(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    pick = FOOLED + ROBUST
    ours, art = both_engines(float_model, x[pick], y[pick])
    assert np.abs(ours - art).max() <= SAME
    fooled = float_model.predict(ours).argmax(axis=1) != y[pick]
    assert fooled.tolist() == [True] * len(FOOLED) + [False] * len(ROBUST)
    assert np.array_equal(ours[len(FOOLED):], x[ROBUST])      # not fooled: returned unchanged


@pytest.mark.slow
def test_same_examples_as_art_on_sixteen_inputs(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    ours, art = both_engines(float_model, x[:16], y[:16])
    assert np.abs(ours - art).max() <= SAME


def test_results_stay_in_the_box_and_shrink_with_more_steps(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits[0][:64], digits[1][:64]
    few = get_attack("cw-linf", **PARAMS).generate(float_model, x, y)
    more = get_attack("cw-linf", **{**PARAMS, "max_iter": 20}).generate(float_model, x, y)
    assert few.min() >= 0.0 and few.max() <= 1.0 and more.min() >= 0.0 and more.max() <= 1.0
    fooled = [float_model.predict(a).argmax(axis=1) != y for a in (few, more)]
    assert fooled[1].sum() >= fooled[0].sum() > 0   # longer Adam runs reach farther
    for x_adv, hit in zip((few, more), fooled, strict=True):
        assert np.array_equal(x_adv[~hit], x[~hit])


def test_constants_are_arts_schedule() -> None:
    assert np.allclose(trade_off_constants(1e-5, 20.0, 2.0), 1e-5 * 2.0 ** np.arange(21))
    assert np.allclose(trade_off_constants(0.5, 20.0, 2.0), [0.5, 1, 2, 4, 8, 16])


def test_traced_once_for_any_batch_size_and_parameters(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    for n, max_iter in ((3, 2), (7, 3)):
        get_attack("cw-linf", **{**PARAMS, "max_iter": max_iter, "batch_size": 4}).generate(float_model, x[:n], y[:n])
    kernel = compiled(float_model, ("cw-linf",), _build)
    assert kernel.experimental_get_tracing_count() == 1

"""Our Square attack (L2 and L∞, Andriushchenko et al. 2020) and FAB-T (Croce & Hein 2020):
small synthetic cases for the update rules, then the digits model (int8 reference oracle for
Square, the float model for FAB-T)."""

from __future__ import annotations

import numpy as np
import pytest

from host.attacks import FloatModel, ReferenceOracle, get_attack
from host.attacks.base import perturbation_norm
from host.attacks.common import art_evasion
from host.attacks.fab_t import FABT, project_linf
from host.attacks.square import SquareLinf, l2_init, l2_update, linf_update, p_at, pyramid, square_side, two_pyramids
from host.core.data import load_digits_split
from host.core.paths import DEFAULT_MODEL
from tests.support.digits import both_correct

N = 40
TOL = 1e-5
WIDE_BOX = (-100.0, 100.0)  # no clipping: the update rules' norms are exact


@pytest.fixture(scope="module")
def digits(float_model: FloatModel, oracle: ReferenceOracle) -> tuple[np.ndarray, np.ndarray]:
    """N test digits both the float and the int8 model classify correctly."""
    _, _, x, y = load_digits_split()
    return both_correct(float_model, oracle, x, y, N)


def in_contract(attack, x: np.ndarray, x_adv: np.ndarray) -> None:  # noqa: ANN001
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32 and np.all(np.isfinite(x_adv))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.all(perturbation_norm(x, x_adv, attack.norm) <= attack.eps + TOL)


# ---------------------------------------------------------------- Square: update rules


def test_pyramid_peaks_in_the_centre_and_two_pyramids_have_unit_norm_and_opposite_halves() -> None:
    eta = pyramid(5, 5)
    assert eta[2, 2] == eta.max() and eta[0, 0] == eta.min() > 0 and np.allclose(eta, eta.T)
    for side in (2, 3, 4, 7):
        pattern = two_pyramids(side)
        assert np.isclose(np.sqrt((pattern**2).sum()), 1.0)
        assert np.all(pattern[:, : side // 2] >= 0) and np.all(pattern[:, side // 2 :] < 0)
    assert np.isclose(np.abs(two_pyramids(1)).sum(), 1.0)  # degenerate side: one pixel, no NaN


def test_schedule_halves_p_at_the_papers_iterations_rescaled() -> None:
    assert p_at(0, 10_000, 0.8) == 0.8 and p_at(11, 10_000, 0.8) == 0.4 and p_at(9999, 10_000, 0.8) == 0.8 / 512
    # Iteration 1 of 100 stands for 100 of 10,000 (past 10 and 50), iteration 3 for 300 (past 200).
    assert (p_at(0, 100, 0.8), p_at(1, 100, 0.8), p_at(3, 100, 0.8)) == (0.8, 0.2, 0.1)
    assert square_side(0.8, 32, 32) == 29 and square_side(1e-6, 8, 8, minimum=2) == 2


@pytest.mark.parametrize("shape", [(5, 8, 8, 1), (3, 32, 32, 3), (2, 4, 4, 2)])
def test_l2_start_and_updates_spend_exactly_the_budget_without_nan(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    eps = 0.7
    best = l2_init(x, eps, WIDE_BOX, rng)
    assert np.allclose(perturbation_norm(x, best, "2"), eps)
    for side in (1, 2, 3, shape[1]):
        best = l2_update(x, best, eps, side, WIDE_BOX, rng)
        assert np.all(np.isfinite(best)) and np.allclose(perturbation_norm(x, best, "2"), eps)
    # From x itself (no perturbation yet: ART's 0/0) the whole budget goes into one window.
    fresh = l2_update(x, x.copy(), eps, 2, WIDE_BOX, rng)
    assert np.all(np.isfinite(fresh)) and np.allclose(perturbation_norm(x, fresh, "2"), eps)
    assert np.all(perturbation_norm(x, fresh, "0") <= 4 * shape[-1])


def test_linf_update_sets_one_window_per_channel_to_plus_or_minus_eps() -> None:
    rng = np.random.default_rng(1)
    x = np.full((4, 8, 8, 3), 0.5)
    out = linf_update(x, x.copy(), 0.1, 3, (0.0, 1.0), rng)
    changed = out != x
    assert np.all(changed.sum(axis=(1, 2)) == 9)  # a 3x3 window in each channel
    assert np.allclose(np.abs(out - x)[changed], 0.1)


# ---------------------------------------------------------------- Square on the int8 digits model


def test_square_l2_fools_the_int8_digits_inside_the_ball_and_counts_queries(oracle, digits) -> None:  # noqa: ANN001
    x, y = digits
    attack = get_attack("square-l2", eps=1.0, max_iter=200, seed=1)
    before = oracle.queries
    x_adv = attack.generate(oracle, x, y)
    in_contract(attack, x, x_adv)
    assert attack.last_queries == oracle.queries - before == attack.queries_per_input.sum()
    assert attack.queries_per_input.max() <= 200 + 1
    fooled = ReferenceOracle(DEFAULT_MODEL).predict_labels(x_adv) != y
    assert np.array_equal(fooled, attack.fooled)
    assert fooled.mean() >= 0.6, f"square-l2 fooled {fooled.sum()}/{len(x)}"  # measured 0.85 on 100 digits
    again = get_attack("square-l2", eps=1.0, max_iter=200, seed=1).generate(oracle, x, y)
    assert np.array_equal(x_adv, again)


def test_square_l2_restarts_only_add_successes(oracle, digits) -> None:  # noqa: ANN001
    x, y = digits[0][:12], digits[1][:12]
    one = get_attack("square-l2", eps=0.5, max_iter=40, seed=2)
    three = get_attack("square-l2", eps=0.5, max_iter=40, seed=2, restarts=3)
    one.generate(oracle, x, y)
    x_adv = three.generate(oracle, x, y)
    in_contract(three, x, x_adv)
    assert np.all(three.fooled[one.fooled]) and three.fooled.sum() >= one.fooled.sum()


def test_square_linf_is_at_least_as_strong_as_arts_at_the_same_budget(oracle, digits) -> None:  # noqa: ANN001
    x, y = digits
    eps, iters = 0.1, 100
    ours = get_attack("square-linf", eps=eps, max_iter=iters, seed=0)
    x_ours = ours.generate(oracle, x, y)
    in_contract(ours, x, x_ours)
    art = art_evasion("SquareAttack")(
        oracle.art_classifier(), norm=np.inf, eps=eps, max_iter=iters, p_init=0.05, nb_restarts=1, verbose=False,
    )
    np.random.seed(0)
    before = oracle.queries
    x_art = art.generate(x, y=y)
    art_queries = oracle.queries - before
    reference = ReferenceOracle(DEFAULT_MODEL)
    ours_fooled = int((reference.predict_labels(x_ours) != y).sum())
    art_fooled = int((reference.predict_labels(x_art) != y).sum())
    assert ours_fooled >= art_fooled, f"ours {ours_fooled}, ART {art_fooled} of {len(x)}"
    assert ours.last_queries <= art_queries


# ---------------------------------------------------------------- FAB-T: the projection, a linear model


def test_linf_projection_reaches_the_hyperplane_with_the_smallest_step_inside_the_box() -> None:
    rng = np.random.default_rng(0)
    z, w, b = rng.random((200, 6)), rng.normal(size=(200, 6)), rng.normal(size=200)
    delta = project_linf(z, w, b, 0.0, 1.0)
    assert np.all(z + delta >= -1e-12) and np.all(z + delta <= 1 + 1e-12)
    reached = np.isclose(b + np.sum(w * delta, axis=1), 0.0)
    # Where it is reached, no smaller L∞ radius reaches it: at radius 0.999 r the best progress falls short.
    radius = np.abs(delta).max(axis=1)
    shrunk = np.sign(-b)[:, None] * np.sign(w) * np.minimum(0.999 * radius[:, None], np.abs(delta))
    assert np.all(np.abs(np.sum(w * shrunk, axis=1))[reached] < np.abs(b)[reached])
    # Where it is not reached, every coordinate is at the box in its direction.
    corner = np.where(np.sign(-b)[:, None] * np.sign(w) > 0, 1 - z, z)
    assert np.allclose(np.abs(delta)[~reached], corner[~reached])
    assert np.all(project_linf(z[:3], w[:3], np.zeros(3), 0.0, 1.0) == 0)


def test_fab_t_finds_the_minimal_linf_adversarial_of_a_linear_model() -> None:
    from tensorflow import keras

    rng = np.random.default_rng(3)
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    model.set_weights([rng.normal(size=(16, 2)).astype(np.float32), np.zeros(2, np.float32)])
    x = rng.uniform(0.3, 0.7, size=(8, 4, 4, 1)).astype(np.float32)
    logits = model(x).numpy()
    y = logits.argmax(axis=1)
    w = (model.get_weights()[0][:, 1 - y] - model.get_weights()[0][:, y]).T  # (8, 16): z_t - z_y
    exact = np.abs(project_linf(x.reshape(8, -1), w, logits[np.arange(8), 1 - y] - logits[np.arange(8), y], 0, 1))
    attack = get_attack("fab-t", eps=1.0, max_iter=50)
    x_adv = attack.generate(model, x, y)
    assert np.all(model(x_adv).numpy().argmax(axis=1) != y)
    # Within the paper's 5 % extrapolation of the exact minimum (never below it).
    assert np.all(attack.distance >= exact.max(axis=1) * (1 - 1e-4))
    assert np.all(attack.distance <= exact.max(axis=1) * 1.05 + 1e-6)


# ---------------------------------------------------------------- FAB-T and AutoAttack on the digits float model


def test_fab_t_fools_the_digits_float_model_within_eps(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    attack = get_attack("fab-t", eps=0.1, max_iter=100, n_targets=3, seed=0)
    x_adv = attack.generate(float_model, x, y)
    in_contract(attack, x, x_adv)
    fooled = float_model.predict(x_adv).argmax(axis=1) != y
    # Measured: 62 % of 100 digits with 9 targets (APGD-T, 100 iterations: 62 %); bound for 3 targets:
    assert fooled.mean() >= 0.45, f"fab-t fooled {fooled.sum()}/{len(x)}"
    assert np.array_equal(fooled, attack.distance <= 0.1)
    assert np.array_equal(x_adv[~fooled], x[~fooled])  # failures within the budget are x itself
    again = get_attack("fab-t", eps=0.1, max_iter=100, n_targets=3, seed=0).generate(float_model, x, y)
    assert np.array_equal(x_adv, again)


def recording(generate, seen: list[tuple[str, int]]):  # noqa: ANN001, ANN201
    """An attack's _generate that also records (attack name, number of inputs)."""

    def wrapped(self, model, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # noqa: ANN001
        seen.append((self.name, len(x)))
        return generate(self, model, x, y)

    return wrapped


def test_autoattack_runs_apgd_ce_apgd_t_fab_t_square_in_order_on_robust_inputs(
    float_model, digits, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    x, y = digits
    seen: list[tuple[str, int]] = []
    for cls in (FABT, SquareLinf):
        monkeypatch.setattr(cls, "_generate", recording(cls._generate, seen))
    # Weak APGD (3 iterations) and FAB-T (30) at eps 0.1 leave inputs robust, so every stage runs: measured
    # on these 40 digits, APGD-CE fools 23, APGD-T 0, FAB-T 1, and Square (300 queries each) 1 of the 16 left.
    attack = get_attack("autoattack", eps=0.1, max_iter=3, n_targets=2, fab_max_iter=30, square_max_iter=300)
    x_adv = attack.generate(float_model, x, y)
    in_contract(attack, x, x_adv)
    assert list(attack.stage_fooled) == ["apgd-ce", "apgd-t", "fab-t", "square-linf"]
    # FAB-T runs on exactly the inputs both APGD stages left robust, Square on what FAB-T left.
    left_by_apgd = len(x) - attack.stage_fooled["apgd-ce"] - attack.stage_fooled["apgd-t"]
    left_by_fab = left_by_apgd - attack.stage_fooled["fab-t"]
    assert left_by_apgd > 0 and left_by_fab > 0, attack.stage_fooled
    assert seen == [("fab-t", left_by_apgd), ("square-linf", left_by_fab)]
    # Square queried the float model (at least the clean check and the start per input) and its finds count.
    assert attack.last_queries is not None and attack.last_queries >= 2 * left_by_fab
    assert attack.stage_fooled["square-linf"] >= 1, attack.stage_fooled
    fooled = float_model.predict(x_adv).argmax(axis=1) != y
    assert sum(attack.stage_fooled.values()) == fooled.sum() >= 0.45 * len(x)


def test_batches_smaller_than_the_input_set_keep_the_contract_and_the_query_count(
    float_model, oracle, digits,  # noqa: ANN001
) -> None:
    x, y = digits[0][:11], digits[1][:11]
    square = get_attack("square-l2", eps=1.0, max_iter=30, batch_size=4)
    before = oracle.queries
    in_contract(square, x, square.generate(oracle, x, y))
    assert square.last_queries == oracle.queries - before == square.queries_per_input.sum()
    assert np.all(square.queries_per_input >= 2)  # the clean check and the start, at least
    fab = get_attack("fab-t", eps=0.1, max_iter=20, n_targets=2, batch_size=4)
    x_adv = fab.generate(float_model, x, y)
    in_contract(fab, x, x_adv)
    assert fab.distance.shape == (11,)

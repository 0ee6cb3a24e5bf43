"""host.attacks: the registry and the FGSM/PGD attacks on the default float model."""

from __future__ import annotations

import numpy as np
import pytest

from host.attacks import FloatModel, get_attack, list_attacks
from host.attacks.base import Attack
from host.core.data import load_digits_split
from host.core.errors import UserError

N = 120
TOL = 1e-6  # x ± eps is computed in float32


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    _, _, x_test, y_test = load_digits_split()
    return x_test[:N], y_test[:N]


def accuracy(model: FloatModel, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x).argmax(axis=1) == y))


def test_registry_lists_builtin_attacks() -> None:
    names = list_attacks()
    assert {"fgsm", "pgd", "noise"} <= set(names)
    for name in names:
        attack = get_attack(name)
        assert isinstance(attack, Attack)
        assert attack.threat_model in ("white-box", "black-box")
        assert attack.norm in ("inf", "2", "1", "0", "patch")
    assert get_attack("fgsm").threat_model == "white-box"


def test_unknown_attack_lists_registry() -> None:
    with pytest.raises(UserError) as err:
        get_attack("carlini-wagner-9000")
    assert "unknown attack 'carlini-wagner-9000'" in str(err.value)
    assert "fgsm" in str(err.value) and "pgd" in str(err.value)


def test_params_defaults_and_overrides() -> None:
    pgd = get_attack("pgd")
    assert pgd.params["max_iter"] == 20 and pgd.params["random_init"] is True
    assert pgd.step == pytest.approx(0.1 * pgd.eps)
    custom = get_attack("PGD", eps="0.2", max_iter="5", random_init="false", rel_step=0.5)
    assert custom.eps == 0.2 and custom.params["max_iter"] == 5 and custom.params["random_init"] is False
    assert custom.step == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eps": 0}, "eps=0.0 is invalid: must be > 0"),
        ({"eps": "big"}, "eps must be float"),
        ({"max_iter": 0}, "max_iter=0 is invalid"),
        ({"max_iter": 2.5}, "must be an integer"),
        ({"random_init": "maybe"}, "must be true or false"),
        ({"steps": 3}, "has no parameter(s) steps"),
        ({"restarts": 3, "random_init": False}, "restarts > 1 needs random_init"),
    ],
)
def test_bad_params_rejected(params: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        get_attack("pgd", **params)
    assert message in str(err.value)


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_white_box_attack_raises_error_within_eps_ball(name: str, float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    eps = 0.1
    x_adv = get_attack(name, eps=eps).generate(float_model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.max(np.abs(x_adv - x)) <= eps + TOL
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    clean, attacked = accuracy(float_model, x, y), accuracy(float_model, x_adv, y)
    assert clean >= 0.95
    assert attacked <= clean - 0.3, f"{name} at eps {eps}: accuracy {clean:.3f} -> {attacked:.3f}"


def test_pgd_at_least_as_strong_as_fgsm_and_near_total_at_large_eps(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    fgsm = accuracy(float_model, get_attack("fgsm", eps=0.1).generate(float_model, x, y), y)
    pgd = accuracy(float_model, get_attack("pgd", eps=0.1).generate(float_model, x, y), y)
    assert pgd <= fgsm + 0.02
    assert accuracy(float_model, get_attack("pgd", eps=0.3).generate(float_model, x, y), y) <= 0.05


def test_pgd_seeded_and_reproducible(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits[0][:30], digits[1][:30]
    a = get_attack("pgd", eps=0.1, max_iter=3, seed=7).generate(float_model, x, y)
    b = get_attack("pgd", eps=0.1, max_iter=3, seed=7).generate(float_model, x, y)
    c = get_attack("pgd", eps=0.1, max_iter=3, seed=8).generate(float_model, x, y)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_noise_baseline_in_ball_and_keras_model_accepted(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    x_adv = get_attack("noise", eps=0.2).generate(float_model.keras_model, x, y)  # a bare Keras model works
    assert np.max(np.abs(x_adv - x)) <= 0.2 + TOL and x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_gradients_taken_through_logits(float_model) -> None:  # noqa: ANN001
    # The default model ends in Softmax; attacks must see logits (no saturated gradients).
    assert float_model.logits_model() is not float_model.keras_model
    assert float_model.outputs_logits()


def test_generate_rejects_label_count_mismatch(float_model, digits) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match="labels"):
        get_attack("fgsm").generate(float_model, digits[0][:5], digits[1][:4])

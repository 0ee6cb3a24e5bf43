"""Parameters added for the David-and-Goliath study's settings reach what runs the attack: ZOO's initial
constant and importance sampling (ART's ZooAttack), AutoAttack's Square p_init (its Square stage).
Builds the attack objects only: no queries, no attack run."""

from __future__ import annotations

import numpy as np
import pytest

from host.attacks import FloatModel, ReferenceOracle, get_attack
from host.core.errors import UserError


@pytest.fixture(scope="module")
def x(oracle: ReferenceOracle) -> np.ndarray:
    return np.zeros((2, *oracle.input_shape), dtype=np.float32)


@pytest.mark.parametrize("use_importance", [True, False])
def test_use_importance_and_initial_const_reach_art(oracle: ReferenceOracle, x: np.ndarray,
                                                    use_importance: bool) -> None:
    zoo = get_attack("zoo", use_importance=use_importance, initial_const=0.01)
    before = oracle.queries
    art = zoo.art_attack(oracle, x)
    assert type(art).__name__ == "ZooAttack"
    assert art.use_importance is use_importance
    assert art.initial_const == 0.01
    assert art.use_resize is False
    assert oracle.queries == before  # building it queries nothing


def test_use_importance_default_and_config_strings() -> None:
    assert get_attack("zoo").params["use_importance"] is False  # unchanged default (frozen benchmark configs)
    assert get_attack("zoo", use_importance="true").params["use_importance"] is True  # --attack-param form
    with pytest.raises(UserError):
        get_attack("zoo", use_importance="sometimes")


def test_autoattack_square_p_init_reaches_its_square_stage(float_model: FloatModel) -> None:
    stages = get_attack("autoattack", eps=0.004, square_p_init=0.8, square_max_iter=5000)._stages(float_model)
    square = [attack for attack, _ in stages if attack.name == "square-linf"]
    assert len(square) == 1
    assert square[0].params["p_init"] == 0.8 and square[0].params["max_iter"] == 5000 and square[0].eps == 0.004
    assert get_attack("autoattack").params["square_p_init"] == 0.05  # unchanged default (frozen benchmark configs)
    with pytest.raises(UserError):
        get_attack("autoattack", square_p_init=1.5)

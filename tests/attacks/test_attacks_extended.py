"""host.attacks: the study's attacks (white-box on the float model, black-box through a query
oracle over the int8 model, the adversarial patch) on the digits model, with reduced iterations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from host.attacks import (
    FloatModel,
    QuantizedOracle,
    QueryOracle,
    ReferenceOracle,
    attack_class,
    describe_registry,
    get_attack,
    list_attacks,
)
from host.attacks.base import NEEDS, NORMS, perturbation_norm
from host.attacks.patch import overlay
from host.backends.backend import ModelIO, ReferenceBackend
from host.core.data import load_digits_split
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL
from host.engine.reference import ReferenceInterpreter
from tests.support.digits import both_correct

N = 6
TOL = 1e-5

STUDY_ATTACKS = {
    "apgd-ce", "apgd-t", "autoattack", "cw-l2", "cw-linf", "deepfool", "ead", "jsma", "patch",
    "square-l2", "square-linf", "zoo", "boundary", "geoda", "hopskipjump", "pgd",
}

# name -> (reduced parameters, least number of the N inputs it must fool)
WHITE_BOX = {
    "apgd-ce": ({"eps": 0.2, "max_iter": 10}, 3),
    "apgd-t": ({"eps": 0.2, "max_iter": 10, "n_targets": 2}, 3),
    "autoattack": ({"eps": 0.2, "max_iter": 5, "n_targets": 1, "square_max_iter": 30}, 3),
    "cw-l2": ({"max_iter": 10, "binary_search_steps": 3, "initial_const": 1.0}, 3),
    "deepfool": ({"max_iter": 20, "overshoot": 0.02}, 3),
    "ead": ({"max_iter": 10, "binary_search_steps": 3, "learning_rate": 0.1}, 3),
    "jsma": ({"theta": 0.5}, 3),
    "patch": ({"max_iter": 30, "scale": 0.6, "scale_min": 0.5, "scale_max": 0.7, "rotation_max": 0.0}, 1),
}
BLACK_BOX = {
    "square-linf": ({"eps": 0.2, "max_iter": 60}, 2),
    "square-l2": ({"eps": 1.0, "max_iter": 60}, 2),
    "zoo": ({"max_iter": 20, "binary_search_steps": 2, "learning_rate": 0.2, "initial_const": 1.0}, 0),
    "boundary": ({"max_iter": 10, "num_trial": 5, "sample_size": 5, "init_size": 20}, 3),
    "geoda": ({"max_iter": 500, "sub_dim": 6}, 3),
    "hopskipjump": ({"max_iter": 3, "max_eval": 100, "init_eval": 10, "init_size": 20}, 3),
}


@pytest.fixture(scope="module")
def digits(float_model: FloatModel, oracle: ReferenceOracle) -> tuple[np.ndarray, np.ndarray]:
    """N test digits that both the float and the int8 model classify correctly."""
    _, _, x, y = load_digits_split()
    x, y = x[:40], y[:40]
    return both_correct(float_model, oracle, x, y, N)


def check_output(attack, x: np.ndarray, x_adv: np.ndarray) -> None:  # noqa: ANN001
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if attack.bounded:
        assert np.all(perturbation_norm(x, x_adv, attack.norm) <= attack.eps + TOL)


# ---------------------------------------------------------------- registry


def test_registry_has_the_study_attacks_with_study_defaults() -> None:
    assert set(list_attacks()) >= STUDY_ATTACKS
    for name in list_attacks():
        cls = attack_class(name)
        assert cls.needs in NEEDS and cls.norm in NORMS and cls.description
        assert name in describe_registry()
    pgd = get_attack("pgd").params
    assert (pgd["max_iter"], pgd["rel_step"], pgd["restarts"]) == (20, 0.1, 20)
    assert get_attack("pgd", random_init="false").params["restarts"] == 1  # no identical restarts
    assert get_attack("autoattack").eps == 0.004
    cw = {"max_iter": 10, "binary_search_steps": 10, "initial_const": 0.01}
    assert get_attack("cw-l2").params.items() >= cw.items() and get_attack("ead").params.items() >= cw.items()
    assert get_attack("cw-linf").params["max_iter"] == 10 and get_attack("cw-linf").params["learning_rate"] == 0.01
    assert get_attack("deepfool").params["max_iter"] == 100
    assert get_attack("jsma").params.items() >= {"gamma": 1.0, "theta": 0.08}.items()
    assert get_attack("square-l2").params.items() >= {"eps": 1.0, "max_iter": 2000, "p_init": 0.8}.items()
    assert get_attack("square-linf").params.items() >= {"eps": 0.015, "max_iter": 1000, "p_init": 0.05}.items()
    assert get_attack("zoo").params.items() >= {"max_iter": 10, "binary_search_steps": 5}.items()
    assert get_attack("boundary").params.items() >= {"delta": 0.1, "epsilon": 1.0, "max_iter": 500}.items()
    assert get_attack("geoda").params.items() >= {"tol": 1e-4, "sub_dim": 75}.items()
    assert math.isinf(get_attack("deepfool").eps) and not get_attack("deepfool").bounded
    assert "eps" not in get_attack("patch").params


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("square-linf", {"p_init": 1.5}, "p_init=1.5 is invalid: must be in (0, 1]"),
        ("square-l2", {"eps": -1}, "must be > 0"),
        ("cw-l2", {"binary_search_steps": 0}, "must be >= 1"),
        ("cw-linf", {"const_factor": 0.5}, "const_factor=0.5 must be > 1"),
        ("ead", {"decision_rule": "L7"}, "decision_rule must be one of"),
        ("jsma", {"gamma": 0}, "gamma=0.0 is invalid"),
        ("jsma", {"theta": 0}, "must be non-zero"),
        ("patch", {"scale_min": 0.8, "scale_max": 0.2}, "scale_min must be <= scale_max"),
        ("patch", {"eps": 0.1}, "has no parameter(s) eps"),
        ("boundary", {"step_adapt": 2}, "must be in (0, 1]"),
        ("deepfool", {"eps": 0}, "must be > 0"),
        ("apgd-t", {"n_targets": 0}, "must be >= 1"),
        ("geoda", {"max_iter": 100}, "too small"),
    ],
)
def test_bad_params_rejected(name: str, params: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        get_attack(name, **params)
    assert message in str(err.value)


def test_wrong_model_type_is_a_clear_error(float_model, oracle, digits) -> None:  # noqa: ANN001
    x, y = digits
    with pytest.raises(UserError, match="black-box query attack: it runs on a QueryOracle"):
        get_attack("square-linf").generate(float_model, x, y)
    with pytest.raises(UserError, match="white-box: it needs the float model"):
        get_attack("cw-l2").generate(oracle, x, y)
    with pytest.raises(UserError, match="needs square NHWC images"):
        get_attack("geoda").generate(oracle, x[:, :, :4], y)  # shape checked before any query


def test_noise_runs_on_an_oracle_too(oracle, digits) -> None:  # noqa: ANN001
    x, y = digits
    x_adv = get_attack("noise", eps=0.1).generate(oracle, x, y)
    assert np.max(np.abs(x_adv - x)) <= 0.1 + TOL


# ---------------------------------------------------------------- oracle


def test_reference_oracle_matches_the_interpreter_and_counts_queries(digits) -> None:  # noqa: ANN001
    x, _ = digits
    oracle = ReferenceOracle(DEFAULT_MODEL)
    scores = oracle(x)
    assert scores.shape == (len(x), 10) and oracle.queries == len(x)
    model_io = ModelIO.from_bytes(DEFAULT_MODEL.read_bytes())
    interp = ReferenceInterpreter(model_io.data)
    for sample, row in zip(x, scores, strict=True):
        raw = interp.run(model_io.input.quantize(sample).reshape(model_io.input.shape))[0]
        assert np.allclose(row, model_io.output.dequantize(raw).reshape(-1), atol=1e-6)
    oracle.predict_labels(x[:2])
    assert oracle.queries == len(x) + 2
    oracle.reset_queries()
    assert oracle.queries == 0


def test_generic_oracle_over_a_backend_and_labels_only(digits) -> None:  # noqa: ANN001
    x, _ = digits
    model_io = ModelIO.from_bytes(DEFAULT_MODEL.read_bytes())
    via_backend = QuantizedOracle.from_backend(ReferenceBackend(model_io), model_io)  # run() -> Inference bytes
    assert np.array_equal(via_backend(x), ReferenceOracle(DEFAULT_MODEL)(x))
    labels = QuantizedOracle.from_backend(ReferenceBackend(model_io), model_io, output="labels")(x)
    assert set(np.unique(labels)) <= {0.0, 1.0} and np.all(labels.sum(axis=1) == 1)
    assert isinstance(via_backend, QueryOracle)
    with pytest.raises(UserError, match="inputs of shape"):
        via_backend(np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(UserError, match="output must be one of"):
        ReferenceOracle(DEFAULT_MODEL, output="logits")


# ---------------------------------------------------------------- white-box


@pytest.mark.parametrize("name", sorted(WHITE_BOX))
def test_white_box_attack(name: str, float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    params, min_fooled = WHITE_BOX[name]
    attack = get_attack(name, seed=3, **params)
    x_adv = attack.generate(float_model, x, y)
    check_output(attack, x, x_adv)
    fooled = int(np.sum(float_model.predict(x_adv).argmax(axis=1) != y))
    assert fooled >= min_fooled, f"{name} fooled {fooled}/{len(x)}"
    again = get_attack(name, seed=3, **params).generate(float_model, x, y)
    assert np.array_equal(x_adv, again), f"{name} is not reproducible with the same seed"
    assert attack.last_queries is None or name == "autoattack"


def test_patch_is_universal_and_changes_pixels(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    attack = get_attack("patch", max_iter=5, scale=0.5, scale_min=0.4, scale_max=0.6)
    x_adv = attack.generate(float_model, x, y)
    assert attack.patch.shape == x.shape[1:]
    assert np.all(perturbation_norm(x, x_adv, "0") > 0)  # every input carries the patch
    changed = np.abs(x_adv - x).reshape(len(x), -1) > 1e-6
    assert changed.mean() < 0.5  # one disk, not the patch tiled over the image (ART 1.20's placement)


@pytest.mark.parametrize("scale", [0.3, 0.5])
def test_patch_overlay_pastes_one_disk_of_the_given_scale(scale: float) -> None:
    x = np.full((16, 32, 32, 3), 0.25, np.float32)
    patched = overlay(x, np.ones((32, 32, 3), np.float32), 0.1, 0.9, 22.5, scale).numpy()
    changed = np.any(np.abs(patched - x) > 1e-6, axis=3)
    disk = math.pi / 4 * scale**2
    assert np.all(np.abs(changed.mean(axis=(1, 2)) - disk) < 0.35 * disk)  # bilinear edges
    rows, cols = np.indices((32, 32))
    for image in changed:
        cy, cx = rows[image].mean(), cols[image].mean()
        radius = np.sqrt((rows[image] - cy) ** 2 + (cols[image] - cx) ** 2).max()
        assert radius <= scale * 16 + 1.5  # one disk around its centre
        assert cy - radius + 1.5 >= 0 and cy + radius - 1.5 <= 31  # inside the image


def test_minimal_attack_budget_replaces_far_results_by_the_input(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    params = WHITE_BOX["deepfool"][0]
    free = get_attack("deepfool", **params).generate(float_model, x, y)
    dist = perturbation_norm(x, free, "2")
    budget = float(np.median(dist))
    capped = get_attack("deepfool", eps=budget, **params).generate(float_model, x, y)
    within = dist <= budget * (1 + 1e-6)
    assert np.array_equal(capped[within], free[within]) and np.array_equal(capped[~within], x[~within])


def test_cw_linf_runs_within_range(float_model, digits) -> None:  # noqa: ANN001
    # ART's C&W-L∞ is slow and weak at the study's settings; only its contract is checked here.
    x, y = digits
    attack = get_attack("cw-linf", max_iter=2, largest_const=0.1)
    check_output(attack, x[:2], attack.generate(float_model, x[:2], y[:2]))


def test_pgd_restarts_only_add_successes(float_model, digits) -> None:  # noqa: ANN001
    x, y = digits
    one = get_attack("pgd", eps=0.06, max_iter=5, restarts=1).generate(float_model, x, y)
    many = get_attack("pgd", eps=0.06, max_iter=5, restarts=5).generate(float_model, x, y)
    fooled_one = float_model.predict(one).argmax(axis=1) != y
    fooled_many = float_model.predict(many).argmax(axis=1) != y
    assert np.all(fooled_many[fooled_one]) and np.array_equal(many[fooled_one], one[fooled_one])
    assert np.max(np.abs(many - x)) <= 0.06 + TOL


# ---------------------------------------------------------------- black-box


@pytest.mark.parametrize("name", sorted(BLACK_BOX))
def test_black_box_attack_through_the_int8_oracle(name: str, oracle, digits) -> None:  # noqa: ANN001
    x, y = digits
    params, min_fooled = BLACK_BOX[name]
    attack = get_attack(name, seed=5, **params)
    before = oracle.queries
    x_adv = attack.generate(oracle, x, y)
    assert attack.last_queries is not None and attack.last_queries > 0
    assert attack.last_queries == oracle.queries - before
    check_output(attack, x, x_adv)
    fooled = int(np.sum(ReferenceOracle(DEFAULT_MODEL).predict_labels(x_adv) != y))
    assert fooled >= min_fooled, f"{name} fooled the int8 model on {fooled}/{len(x)}"
    again = get_attack(name, seed=5, **params)
    assert np.array_equal(x_adv, again.generate(oracle, x, y)), f"{name} is not reproducible"
    assert again.last_queries == attack.last_queries


@pytest.mark.slow
@pytest.mark.parametrize("name", ["square-linf", "boundary", "hopskipjump", "geoda", "zoo"])
def test_black_box_at_study_defaults(name: str, oracle, digits) -> None:  # noqa: ANN001
    x, y = digits[0][:2], digits[1][:2]
    params = {"sub_dim": 8} if name == "geoda" else {}
    attack = get_attack(name, **params)
    x_adv = attack.generate(oracle, x, y)
    check_output(attack, x, x_adv)
    assert attack.last_queries > 0

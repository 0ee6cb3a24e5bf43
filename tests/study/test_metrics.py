"""host.study.metrics: every formula on small hand-computed cases, plus a real gradient check on the digits model."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from host.core.errors import UserError
from host.study.metrics import (
    Rate,
    attack_success_rate,
    cosine_similarity,
    finite_difference_gradient,
    float_input_gradient,
    gradient_misalignment,
    log_histogram,
    mean_boundary_distance,
    minimal_successful_perturbation,
    norm_summary,
    perturbation_norm,
    perturbation_norms,
    quantization_shift,
    quantization_shifts,
    rate,
    summarize,
    targeted_success_rate,
    transfer_chain,
    transfer_rate,
    zero_density,
)

X = np.zeros((2, 2, 2, 1))
X_ADV = np.array([[0.1, -0.2, 0.0, 0.0], [0.3, 0.4, 0.0, 1e-4]]).reshape(2, 2, 2, 1)


def test_module_does_not_import_tensorflow() -> None:
    code = "import sys, host.study.metrics; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_perturbation_norms_by_hand() -> None:
    norms = perturbation_norms(X, X_ADV)
    np.testing.assert_allclose(norms["l0"], [2, 3])
    np.testing.assert_allclose(norms["l1"], [0.3, 0.7001])
    np.testing.assert_allclose(norms["l2"], [math.sqrt(0.05), math.sqrt(0.25 + 1e-8)])
    np.testing.assert_allclose(norms["linf"], [0.2, 0.4])
    np.testing.assert_allclose(perturbation_norm(X, X_ADV, "l0", l0_tol=1e-3), [2, 2])  # 1e-4 is "unchanged"
    with pytest.raises(UserError, match="unknown norm"):
        perturbation_norm(X, X_ADV, "l3")
    with pytest.raises(UserError, match="differ in shape"):
        perturbation_norm(X, X_ADV[:1], "l2")


def test_summaries() -> None:
    assert summarize(np.array([1.0, 3.0, np.inf])) == {"mean": 2.0, "max": 3.0, "n": 2}
    assert summarize(np.array([1.0, 3.0]), among=np.array([False, True])) == {"mean": 3.0, "max": 3.0, "n": 1}
    assert summarize(np.array([])) == {"mean": None, "max": None, "n": 0}
    summary = norm_summary(X, X_ADV)
    assert summary["linf"]["max"] == pytest.approx(0.4) and summary["l0"]["mean"] == pytest.approx(2.5)


def test_log_histogram_counts_every_input_once() -> None:
    values = np.array([0.0, 0.0, 1e-3, 2e-3, 5e-3, 1e-2, np.inf])
    hist = log_histogram(values, bins=4)
    assert hist["zero"] == 2 and sum(hist["counts"]) == 4            # inf is dropped
    assert hist["edges"][0] == pytest.approx(1e-3) and hist["edges"][-1] == pytest.approx(1e-2)
    assert np.allclose(np.diff(np.log(hist["edges"])), np.log(10) / 4)  # log-spaced
    same = log_histogram(np.full(5, 0.004))                           # PGD's L∞: all at ε
    assert same["counts"] == [5] and same["edges"][0] < 0.004 < same["edges"][1]
    assert log_histogram(np.zeros(3)) == {"edges": [], "counts": [], "zero": 3}
    assert norm_summary(X, X_ADV)["l2"]["histogram"]["zero"] == 0


def test_rate_and_attack_success() -> None:
    assert rate(np.array([True, False, True]), np.array([True, True, False])) == Rate(1, 2)
    assert Rate(0, 0).rate is None and Rate(1, 4).as_dict() == {"rate": 0.25, "count": 1, "of": 4}
    y = np.array([0, 1, 2, 3])
    clean = np.array([0, 1, 2, 0])        # sample 3 wrong when clean: excluded
    adv = np.array([1, 1, 0, 3])          # fooled: 0 and 2 of the 3 correct ones
    assert attack_success_rate(y, clean, adv) == Rate(2, 3)
    with pytest.raises(UserError, match="different numbers of samples"):
        attack_success_rate(y, clean, adv[:3])


def test_targeted_success_counts_only_inputs_not_already_of_the_target() -> None:
    y = np.array([0, 1, 2, 3, 0])
    adv = np.array([0, 0, 2, 0, 1])       # inputs 1 and 3 sent to class 0; 0 and 4 are class 0: excluded
    assert targeted_success_rate(y, adv, 0) == Rate(2, 3)
    with pytest.raises(UserError, match="different numbers of samples"):
        targeted_success_rate(y, adv[:3], 0)


def test_transfer_rate_and_chain() -> None:
    y = np.array([0, 0, 0, 0, 0])
    f_clean = np.array([0, 0, 0, 0, 1])
    q_clean = np.array([0, 0, 0, 1, 0])
    f_adv = np.array([1, 1, 0, 1, 1])      # fools float on 0, 1 (3 wrong on q clean, 4 wrong clean)
    q_adv = np.array([1, 0, 1, 1, 1])
    # eligible: both correct clean (0, 1, 2) and float fooled (0, 1) -> q fooled on 0 only
    assert transfer_rate(y, f_clean, q_clean, f_adv, q_adv) == Rate(1, 2)
    e_clean, e_adv = np.zeros(5, int), np.array([1, 1, 1, 1, 0])
    chain = transfer_chain(y, {"float": f_clean, "int16x8": q_clean, "int8": e_clean},
                           {"float": f_adv, "int16x8": q_adv, "int8": e_adv})
    assert list(chain) == ["float->int16x8", "float->int8", "int16x8->int8"]
    assert chain["float->int16x8"] == Rate(1, 2)
    assert chain["float->int8"] == Rate(3, 3)       # both correct clean (0-3) & float fooled: 0, 1, 3
    assert chain["int16x8->int8"] == Rate(2, 3)     # both correct clean (0, 1, 2, 4) & q fooled: 0, 2, 4
    with pytest.raises(UserError, match="transfer chain"):
        transfer_chain(y, {"float": f_clean}, {"float": f_adv})


def test_minimal_perturbation_and_boundary_distance() -> None:
    x = np.zeros((3, 2))
    y = np.array([0, 0, 0])
    sweep = [np.array([[0.1, 0.0], [0.1, 0.05], [0.1, 0.1]]),      # ε = 0.1
             np.array([[0.15, 0.2], [0.3, 0.0], [0.2, 0.2]])]      # ε = 0.3 (sample 0 stays inside: 0.2)
    preds = [np.array([0, 1, 0]), np.array([1, 1, 0])]
    r = minimal_successful_perturbation(x, y, sweep, preds, norm="linf")
    np.testing.assert_allclose(r, [0.2, 0.1, np.inf])             # measured norm, not ε
    r_l1 = minimal_successful_perturbation(x, y, sweep, preds, norm="l1")
    np.testing.assert_allclose(r_l1, [0.35, 0.15, np.inf])
    assert mean_boundary_distance(r) == {"mean": pytest.approx(0.15), "found": 2, "unbroken": 1}
    among = np.array([False, True, True])
    assert mean_boundary_distance(r, among) == {"mean": pytest.approx(0.1), "found": 1, "unbroken": 1}
    assert mean_boundary_distance(np.array([np.inf])) == {"mean": None, "found": 0, "unbroken": 1}
    with pytest.raises(UserError, match="one prediction array"):
        minimal_successful_perturbation(x, y, sweep, preds[:1])


def test_cosine_zero_density_and_misalignment() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    b = np.array([[0.0, 3.0], [-2.0, -2.0], [0.0, 0.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [0.0, -1.0, np.nan])
    np.testing.assert_allclose(cosine_similarity(a[:1], np.array([[2.0, 0.0]])), [1.0])
    assert zero_density(b) == pytest.approx(3 / 6)
    np.testing.assert_allclose(zero_density(b, per_sample=True), [0.5, 0.0, 1.0])
    result = gradient_misalignment(a, b)
    assert result["mean"] == pytest.approx(-0.5) and result["undefined"] == 1
    assert result["zero_density"] == pytest.approx(3 / 6)


def test_finite_differences_on_known_functions() -> None:
    weights = np.array([1.0, -2.0, 3.0, 0.5])

    def quadratic(batch: np.ndarray) -> np.ndarray:          # s(x) = Σ w_j x_j², ∇ = 2 w x
        return (batch.reshape(len(batch), -1) ** 2) @ weights

    x = np.array([[0.5, 0.25, -0.5, 1.0]])
    exact = 2 * weights * x
    np.testing.assert_allclose(finite_difference_gradient(quadratic, x, h=1e-2), exact, atol=1e-5)
    rough = finite_difference_gradient(quadratic, x, h=1e-2, method="random", directions=4000, seed=1)
    assert cosine_similarity(rough, exact)[0] > 0.99
    # clipped to [0, 1] at x = 0: one-sided (s(h) − s(0)) / h = w h
    at_zero = finite_difference_gradient(quadratic, np.zeros((1, 4)), h=0.1, clip=(0.0, 1.0))
    np.testing.assert_allclose(at_zero, [0.1 * weights], atol=1e-6)


def test_finite_differences_of_a_staircase_are_mostly_zero() -> None:
    """A quantized-like score: s(x) = round(x_0 · 4) / 4. Steps below the stair width see nothing."""

    def stairs(batch: np.ndarray) -> np.ndarray:
        return np.stack([np.round(batch[:, 0] * 4) / 4, np.zeros(len(batch))], axis=1)   # (m, C=2)

    x = np.array([[0.3, 0.7]])
    tiny = finite_difference_gradient(stairs, x, labels=np.array([0]), h=0.01)
    assert zero_density(tiny) == 1.0
    wide = finite_difference_gradient(stairs, x, labels=np.array([0]), h=0.25)
    np.testing.assert_allclose(wide, [[0.5 / 0.5, 0.0]])                   # (0.5 − 0.0) / 0.5
    with pytest.raises(UserError, match="pass labels"):
        finite_difference_gradient(stairs, x)
    with pytest.raises(UserError, match="unknown finite-difference method"):
        finite_difference_gradient(stairs, x, labels=np.array([0]), method="forward")


def test_quantization_shift_by_hand() -> None:
    y = np.array([0, 0, 0, 0, 0])
    float_adv = np.array([1, 0, 1, 2, 0])
    int8_adv = np.array([0, 1, 1, 3, 0])
    # labels differ on 0 (float fooled, int8 right: attenuation), 1 (amplification), 3 (both fooled, differently)
    shift = quantization_shift(y, float_adv, int8_adv)
    assert (shift.shift, shift.attenuation, shift.amplification) == (Rate(3, 5), Rate(1, 5), Rate(1, 5))
    among = np.array([True, True, False, False, True])
    shifts = quantization_shifts(y, float_adv, {"int16x8": float_adv, "int8": int8_adv}, among)
    assert shifts["int16x8"].shift == Rate(0, 3)
    assert shifts["int8"].as_dict()["attenuation"] == {"rate": 1 / 3, "count": 1, "of": 3}


def test_float_input_gradient_of_a_linear_model() -> None:
    """s(x) = (W x)_y has gradient W[:, y] exactly."""
    from host.core.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    inputs = keras.Input(shape=(2, 2, 1))
    outputs = keras.layers.Dense(3, use_bias=False)(keras.layers.Reshape((4,))(inputs))
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([weights])
    x = np.random.default_rng(0).random((3, 2, 2, 1)).astype(np.float32)
    labels = np.array([2, 0, 1])
    grads = float_input_gradient(model, x, labels, batch_size=2)
    np.testing.assert_allclose(grads.reshape(3, 4), weights[:, labels].T, rtol=1e-6)


def test_gradient_misalignment_on_the_digits_model() -> None:
    """Float Keras gradient vs finite differences of its int8 .tflite through TFLite Micro."""
    from host.core.data import load_digits_split
    from host.core.paths import DEFAULT_FLOAT_MODEL, DEFAULT_MODEL
    from host.quantization.quantize import ReferenceOracle, load_float_keras

    _, _, x_test, y_test = load_digits_split()
    x, y = x_test[:4], y_test[:4]
    model = load_float_keras(DEFAULT_FLOAT_MODEL)
    oracle = ReferenceOracle(DEFAULT_MODEL.read_bytes())
    g_float = float_input_gradient(model, x, y)
    assert g_float.shape == x.shape and np.abs(g_float).sum() > 0
    g_fd_float = finite_difference_gradient(lambda b: model.predict(b, verbose=0), x, labels=y, h=1e-3)
    # the helper's gradient is right (float32 softmax near 1 loses digits in the differences)
    assert np.nanmedian(cosine_similarity(g_float, g_fd_float)) > 0.99
    h = 2 * oracle.io.input.scale                                         # two int8 input steps
    g_int8 = finite_difference_gradient(oracle, x, labels=y, h=h, clip=(0.0, 1.0))
    result = gradient_misalignment(g_float, g_int8)
    cos = result["cosine"][np.isfinite(result["cosine"])]
    assert cos.size >= 1 and result["undefined"] == 4 - cos.size   # all-zero estimates: cosine undefined
    assert np.all((cos >= -1 - 1e-9) & (cos <= 1 + 1e-9))
    assert 0.0 < result["zero_density"] < 1.0
    print(f"digits int8: cosine {np.round(result['cosine'], 3)}, zero density {result['zero_density']:.3f}")

"""host.defenses: the registry, the pre-processing defenses (float and integer definitions) and the
train-based defenses on the default digits model (short trainings; longer checks are slow)."""

from __future__ import annotations

import numpy as np
import pytest

from host.core.data import load_digits_split
from host.core.errors import UserError
from host.core.paths import DEFAULT_FLOAT_MODEL
from host.defenses import Defense, Preprocessor, Trainer, describe_registry, get_defense, list_defenses
from host.engine.integer import (
    dequantize,
    grid_range,
    lookup_table,
    median_filter_quantized,
    quantize,
    squeeze_bits_quantized,
)

# The int8 input grid of the digits model and of the study's CIFAR ResNet (scale float32(1/255)).
INT8 = dict(scale=0.003921568859368563, zero_point=-128)
INT16 = dict(scale=3.0518509447574615e-05, zero_point=0)  # the study's int16x8 ResNet input


# ---------------------------------------------------------------- registry


def test_registry_lists_every_defense_with_kinds() -> None:
    names = list_defenses()
    assert set(names) == {
        "feature-squeezing", "median-smoothing", "spatial-smoothing", "jpeg", "combined-squeezing", "pixel-defend",
        "pgd-at", "distillation", "ensemble-at", "sinkhorn-at", "trained-model",
    }
    assert list_defenses("preprocess") == [
        "combined-squeezing", "feature-squeezing", "jpeg", "median-smoothing", "pixel-defend", "spatial-smoothing"]
    assert list_defenses("train") == ["distillation", "ensemble-at", "pgd-at", "sinkhorn-at"]
    assert list_defenses("model") == ["trained-model"]   # files trained elsewhere: nothing to apply or train
    for name in names:
        defense = get_defense(name)
        assert isinstance(defense, Defense)
        if defense.kind != "model":
            assert isinstance(defense, Preprocessor if defense.kind == "preprocess" else Trainer)
    text = describe_registry()
    assert len(text.splitlines()) == len(names) and "bit_depth=8" in text and "temperature=20.0" in text


def test_study_defaults() -> None:
    assert get_defense("feature-squeezing").params == {"bit_depth": 8}
    assert get_defense("median-smoothing").params == {"window": 2}
    pgd = get_defense("pgd-at").params
    assert pgd["eps"] == 0.008 and pgd["max_iter"] == 10
    assert get_defense("distillation").params["temperature"] == 20.0


def test_bad_names_and_parameters_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown defense 'pixeldefend'") as err:
        get_defense("pixeldefend")
    assert "feature-squeezing" in str(err.value)
    with pytest.raises(UserError, match="bit_depth=0 is invalid"):
        get_defense("feature-squeezing", bit_depth=0)
    with pytest.raises(UserError, match="must be an integer"):
        get_defense("median-smoothing", window=2.5)
    with pytest.raises(UserError, match="no parameter"):
        get_defense("jpeg", quality=50, bits=3)
    with pytest.raises(UserError, match="must be one of median, mean"):
        get_defense("spatial-smoothing", filter="gaussian")
    with pytest.raises(UserError, match="eps=-0.1 is invalid"):
        get_defense("pgd-at", eps=-0.1)
    with pytest.raises(UserError, match="outside"):
        get_defense("feature-squeezing").apply(np.full((1, 2, 2, 1), 1.5, np.float32))
    with pytest.raises(UserError, match="NHWC"):
        get_defense("median-smoothing").apply(np.zeros((2, 2), np.float32))
    assert get_defense("Feature-Squeezing", bit_depth="4").params["bit_depth"] == 4


# ---------------------------------------------------------------- pre-processing: float


def test_feature_squeezing_hand_computed() -> None:
    x = np.array([0.0, 0.1, 0.24, 0.26, 0.5, 0.74, 0.76, 1.0], np.float32).reshape(1, 2, 4, 1)
    one_bit = get_defense("feature-squeezing", bit_depth=1).apply(x)
    # 1 bit: two levels {0, 1}; 0.5 is a tie, rounded to even (0).
    assert one_bit.ravel().tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    two_bits = get_defense("feature-squeezing", bit_depth=2).apply(x)
    np.testing.assert_allclose(two_bits.ravel(), np.array([0, 0, 1, 1, 2, 2, 2, 3]) / 3, atol=1e-7)
    # On another range the levels span that range: [-1, 1] with 1 bit -> {-1, 1}.
    y = get_defense("feature-squeezing", bit_depth=1).apply(np.array([-0.9, -0.1, 0.1, 0.8], np.float32)
                                                            .reshape(1, 2, 2, 1), input_range=(-1, 1))
    assert y.ravel().tolist() == [-1, -1, 1, 1]
    # 8 bits leave 8-bit images unchanged.
    x8 = (np.arange(256, dtype=np.float32) / 255).reshape(1, 16, 16, 1)
    np.testing.assert_array_equal(get_defense("feature-squeezing").apply(x8), x8)


def test_median_window_2_hand_computed() -> None:
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1) / 8
    out = get_defense("median-smoothing").apply(x) * 8
    # Window 2 covers the pixel and its upper, left, upper-left neighbours (reflected borders);
    # of the 4 values the upper middle one is taken: median{0,1,3,4} = 3, not 2.
    np.testing.assert_allclose(out[0, :, :, 0], [[0, 1, 2], [3, 3, 4], [6, 6, 7]], atol=1e-6)
    # Window 3 is the ordinary 3x3 median; channels are filtered separately.
    x2 = np.concatenate([x, 1 - x], axis=-1)
    out3 = get_defense("spatial-smoothing", window=3).apply(x2)
    np.testing.assert_allclose(out3[0, 1, 1], [4 / 8, 1 - 4 / 8], atol=1e-6)
    np.testing.assert_allclose(out3[0, 0, 0, 0] * 8, 1.0, atol=1e-6)  # median{0,0,1,0,0,1,3,3,4} = 1


def test_mean_filter_hand_computed() -> None:
    x = np.zeros((1, 3, 3, 1), np.float32)
    x[0, 1, 1, 0] = 0.9
    out = get_defense("spatial-smoothing", window=3, filter="mean").apply(x)
    np.testing.assert_allclose(out[0, :, :, 0], np.full((3, 3), 0.1), atol=1e-6)


def test_jpeg_rounds_and_stays_in_range() -> None:
    # 51.9/255 rounds to level 52 (ART would truncate to 51); a flat block of 52 survives JPEG at
    # quality 50 exactly (DC (52 - 128)·8 = -608 is a multiple of the DC step 16).
    flat = np.full((2, 8, 8, 1), 51.9 / 255, np.float32)
    out = get_defense("jpeg", quality=50).apply(flat)
    np.testing.assert_allclose(out * 255, 52.0, atol=1e-4)
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16, 3), dtype=np.float32)
    for quality in (10, 90):
        y = get_defense("jpeg", quality=quality).apply(x)
        assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
    err10 = np.abs(get_defense("jpeg", quality=10).apply(x) - x).mean()
    err90 = np.abs(get_defense("jpeg", quality=90).apply(x) - x).mean()
    assert err90 < err10
    np.testing.assert_array_equal(get_defense("jpeg").apply(x), get_defense("jpeg").apply(x))
    z = get_defense("jpeg").apply(x * 255, input_range=(0, 255))
    assert z.min() >= 0 and z.max() <= 255 and np.abs(z / 255 - get_defense("jpeg").apply(x)).max() < 1e-5


@pytest.mark.parametrize(("name", "params"), [
    ("feature-squeezing", {"bit_depth": 3}), ("median-smoothing", {}), ("spatial-smoothing", {}),
    ("spatial-smoothing", {"filter": "mean"}), ("jpeg", {"quality": 30}), ("combined-squeezing", {}),
])
def test_preprocessors_keep_shape_range_and_are_reproducible(name: str, params: dict) -> None:
    _, _, x_test, _ = load_digits_split()
    x = x_test[:50]
    defense = get_defense(name, **params)
    y = defense.apply(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0 and y.max() <= 1
    assert not np.array_equal(y, x)
    np.testing.assert_array_equal(y, get_defense(name, **params).apply(x))
    assert defense.apply(x[:0]).shape == (0, 8, 8, 1)


# ---------------------------------------------------------------- pre-processing: integer


@pytest.mark.parametrize("bits", range(1, 9))
def test_integer_squeezing_equals_quantize_squeeze_dequantize_int8(bits: int) -> None:
    q = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
    defense = get_defense("feature-squeezing", bit_depth=bits)
    via_float = quantize(defense.apply(dequantize(q, **INT8).astype(np.float32)), **INT8)
    np.testing.assert_array_equal(defense.apply_quantized(q, **INT8), via_float)
    np.testing.assert_array_equal(squeeze_bits_quantized(q, bits, **INT8), via_float)
    # ... and the 256-entry table a firmware stage would store.
    table = lookup_table(lambda v: defense.apply(v.reshape(1, 16, 16, 1).astype(np.float32)).ravel(), **INT8)
    np.testing.assert_array_equal(table, via_float.ravel())
    if bits == 8:
        np.testing.assert_array_equal(via_float, q)  # 8 bits on the int8 grid: the identity


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_integer_squeezing_int16_grid(bits: int) -> None:
    q = np.arange(0, 32768, dtype=np.int16).reshape(1, 128, 256, 1)
    x = dequantize(q, **INT16)
    levels = (1 << bits) - 1
    squeezed = np.rint(x * levels) / levels  # float64 definition
    np.testing.assert_array_equal(squeeze_bits_quantized(q, bits, **INT16), quantize(squeezed, **INT16, dtype="int16"))


def test_grid_alignment_is_checked() -> None:
    assert grid_range(**INT8, input_range=(0, 1), dtype="int8") == (-128, 127)
    with pytest.raises(UserError, match="not on the int8 grid"):
        squeeze_bits_quantized(np.zeros(3, np.int8), 4, scale=1 / 200.5, zero_point=-128, input_range=(0, 1))


@pytest.mark.parametrize("bits", range(1, 9))
def test_squeeze_then_quantize_vs_quantize_then_squeeze(bits: int) -> None:
    """Equal for bit depths with (2**b - 1) | 255 (1, 2, 4, 8 bits), not for 3, 5, 6, 7 (double rounding)."""
    rng = np.random.default_rng(1)
    x = rng.random((1, 100, 200, 1)).astype(np.float32)
    defense = get_defense("feature-squeezing", bit_depth=bits)
    float_first = quantize(defense.apply(x), **INT8)
    int_first = defense.apply_quantized(quantize(x, **INT8), **INT8)
    differ = int(np.sum(float_first != int_first))
    if 255 % ((1 << bits) - 1) == 0:
        assert differ == 0
    else:
        assert differ > 0
        assert np.abs(float_first.astype(int) - int_first.astype(int)).max() <= 255 // ((1 << bits) - 1) + 1
    if bits == 3:  # the smallest counterexample by hand: 255·x = 18.3 is above 255/14 = 18.21 ...
        one = np.full((1, 1, 1, 1), 18.3 / 255, np.float32)
        assert quantize(defense.apply(one), **INT8).item() == -128 + 36  # level 1/7 -> 36.4 -> 36
        assert defense.apply_quantized(quantize(one, **INT8), **INT8).item() == -128  # 18 -> level 0


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_integer_median_is_exact_and_commutes_with_quantization(window: int) -> None:
    rng = np.random.default_rng(window)
    x = rng.random((4, 9, 7, 3)).astype(np.float32)
    defense = get_defense("spatial-smoothing", window=window)
    q = quantize(x, **INT8)
    integer = defense.apply_quantized(q, **INT8)
    # The written-out integer filter equals ART/SciPy's on the integers ...
    from scipy.ndimage import median_filter

    np.testing.assert_array_equal(integer, median_filter(q, size=(1, window, window, 1), mode="reflect"))
    # ... equals quantize ∘ median ∘ dequantize ...
    np.testing.assert_array_equal(integer, quantize(defense.apply(dequantize(q, **INT8).astype(np.float32)), **INT8))
    # ... and filtering in float then quantizing is the same as filtering the int8 input.
    np.testing.assert_array_equal(integer, quantize(defense.apply(x), **INT8))
    if window == 2:
        np.testing.assert_array_equal(get_defense("median-smoothing").apply_quantized(q, **INT8), integer)


def test_integer_median_int16_and_no_mean_reference() -> None:
    q = np.array([[5, -7], [300, 2]], np.int16).reshape(1, 2, 2, 1)
    assert median_filter_quantized(q, 2)[0, 1, 1, 0] == 5  # sorted {-7, 2, 5, 300}: rank 2
    with pytest.raises(UserError, match="no exact integer"):
        get_defense("spatial-smoothing", filter="mean").apply_quantized(q, **INT16)
    with pytest.raises(UserError, match="no integer definition"):
        get_defense("jpeg").apply_quantized(q, **INT16)
    assert get_defense("spatial-smoothing").has_integer_reference
    assert not get_defense("spatial-smoothing", filter="mean").has_integer_reference


# ---------------------------------------------------------------- train-based defenses

TRAIN_N = 400
TEST_N = 200


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    x_train, y_train, x_test, y_test = load_digits_split()
    return {"x": x_train[:TRAIN_N], "y": y_train[:TRAIN_N], "xt": x_test[:TEST_N], "yt": y_test[:TEST_N]}


@pytest.fixture(scope="module")
def float_model():  # noqa: ANN201
    from host.attacks import load_float_model

    return load_float_model(DEFAULT_FLOAT_MODEL).keras_model


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:  # noqa: ANN001
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def check_deployable(model, representative: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:  # noqa: ANN001
    from host.compiler.compile import compile_bytes
    from host.quantization.quantize import quantize as quantize_model
    from host.quantization.quantize import tflite_accuracy

    for precision in ("int8", "int16x8"):
        data = quantize_model(model, representative, precision)
        compiled = compile_bytes(data)
        assert compiled.name
        assert tflite_accuracy(data, x, y) >= 0.85


TRAINERS = {
    "pgd-at": {"eps": 0.1, "learning_rate": 1e-3},
    "distillation": {},
    "ensemble-at": {"eps": 0.1, "learning_rate": 1e-3},
    "sinkhorn-at": {"eps": 0.1, "learning_rate": 1e-3, "sinkhorn_iters": 10},
}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_trainer_keeps_accuracy_architecture_and_deploys(name: str, float_model, digits) -> None:  # noqa: ANN001
    before = [w.copy() for w in float_model.get_weights()]
    model = get_defense(name, epochs=2, **TRAINERS[name]).train(float_model, digits["x"], digits["y"])
    assert model is not float_model
    for w0, w1 in zip(before, float_model.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)  # the input model is untouched
    assert [type(layer).__name__ for layer in model.layers] == [type(layer).__name__ for layer in float_model.layers]
    assert type(model.layers[-1]).__name__ == "Softmax"
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    clean = accuracy(model, digits["xt"], digits["yt"])
    print(f"{name}: clean accuracy {clean:.3f} (undefended {accuracy(float_model, digits['xt'], digits['yt']):.3f})")
    assert clean >= 0.85
    check_deployable(model, digits["x"][:100], digits["xt"], digits["yt"])


@pytest.mark.parametrize(("name", "params"), [
    ("distillation", {"alpha": 0.1, "student_from": "teacher"}),
    ("pgd-at", {"eps": 0.1, "rel_step": 0.1, "optimizer": "sgd", "learning_rate": 0.01, "train_bn": True}),
])
def test_the_studys_training_settings(name: str, params: dict, float_model, digits) -> None:  # noqa: ANN001
    """What configs/david-goliath-own-defenses.toml sets to follow the study's scripts: plain SGD, batch-norm
    training, the distiller's hard-label weight and a student started from the teacher."""
    model = get_defense(name, epochs=2, **params).train(float_model, digits["x"], digits["y"])
    assert accuracy(model, digits["xt"], digits["yt"]) >= 0.85
    with pytest.raises(UserError, match="optimizer"):
        get_defense(name, optimizer="rmsprop")


def test_training_is_reproducible(float_model, digits) -> None:  # noqa: ANN001
    defense = get_defense("ensemble-at", epochs=1, eps=0.05, seed=3)
    a = defense.train(float_model, digits["x"][:200], digits["y"][:200])
    b = defense.train(float_model, digits["x"][:200], digits["y"][:200])
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    c = defense.train(float_model, digits["x"][:200], digits["y"][:200], seed=4)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True))


def test_training_data_is_checked(float_model, digits) -> None:  # noqa: ANN001
    defense = get_defense("pgd-at", epochs=1)
    with pytest.raises(UserError, match="labels"):
        defense.train(float_model, digits["x"], digits["y"][:10])
    with pytest.raises(UserError, match="shape"):
        defense.train(float_model, np.zeros((4, 4, 4, 1), np.float32), np.zeros(4, np.int64))
    with pytest.raises(UserError, match="outside"):
        defense.train(float_model, digits["x"] * 2, digits["y"])
    with pytest.raises(UserError, match="epochs=0 is invalid"):
        defense.train(float_model, digits["x"], digits["y"], epochs=0)


def test_pgd_adversarial_training_improves_pgd_accuracy(float_model, digits) -> None:  # noqa: ANN001
    from host.attacks import get_attack

    attack = get_attack("pgd", eps=0.1, restarts=1, seed=0)
    defended = get_defense("pgd-at", eps=0.1, epochs=3, learning_rate=1e-3).train(
        float_model, digits["x"], digits["y"])
    xt, yt = digits["xt"], digits["yt"]
    before = accuracy(float_model, attack.generate(float_model, xt, yt), yt)
    after = accuracy(defended, attack.generate(defended, xt, yt), yt)
    print(f"PGD(eps=0.1, 20 it) accuracy on {len(yt)} digits: undefended {before:.3f}, pgd-at {after:.3f}; "
          f"clean {accuracy(float_model, xt, yt):.3f} -> {accuracy(defended, xt, yt):.3f}")
    assert after >= before + 0.05


@pytest.mark.slow
def test_longer_training_on_full_digits(float_model) -> None:  # noqa: ANN001
    from host.attacks import get_attack

    x_train, y_train, x_test, y_test = load_digits_split()
    attack = get_attack("pgd", eps=0.1, restarts=1, seed=0)
    before = accuracy(float_model, attack.generate(float_model, x_test, y_test), y_test)
    for name in ("pgd-at", "ensemble-at", "sinkhorn-at", "distillation"):
        model = get_defense(name, eps=0.1, epochs=10, learning_rate=1e-3).train(float_model, x_train, y_train) \
            if name != "distillation" else get_defense(name, epochs=10).train(float_model, x_train, y_train)
        clean = accuracy(model, x_test, y_test)
        robust = accuracy(model, attack.generate(model, x_test, y_test), y_test)
        print(f"{name}: clean {clean:.3f}, PGD(0.1) {robust:.3f} (undefended {before:.3f})")
        assert clean >= 0.9
        if name in ("pgd-at", "sinkhorn-at"):
            assert robust > before + 0.1


# ---------------------------------------------------------------- the study's combined squeezer


def test_combined_squeezer_keeps_per_input_whichever_squeeze_changes_it_more() -> None:
    rng = np.random.default_rng(3)
    smooth = np.tile(np.linspace(0, 1, 8, dtype=np.float32).reshape(1, 1, 8, 1), (1, 8, 1, 3))
    noisy = rng.random((1, 8, 8, 3)).astype(np.float32)
    x = np.concatenate([smooth, noisy, smooth * 0 + 0.5])
    squeezed = get_defense("feature-squeezing", bit_depth=4).apply(x)
    smoothed = get_defense("median-smoothing", window=2).apply(x)
    out = get_defense("combined-squeezing").apply(x)

    def l1(y: np.ndarray, i: int) -> float:
        return float(np.abs(y[i].astype(np.float64) - x[i]).sum())

    # a ramp: the 2x2 median moves it less than 16 levels do; noise: the median moves it more;
    # a flat image the median leaves alone and the squeeze moves (0.5 is between two 4-bit levels)
    assert l1(squeezed, 0) > l1(smoothed, 0) and l1(smoothed, 1) > l1(squeezed, 1)
    for i in range(3):
        expected = squeezed[i] if l1(squeezed, i) >= l1(smoothed, i) else smoothed[i]
        np.testing.assert_array_equal(out[i], expected)
    assert get_defense("combined-squeezing").params == {"bit_depth": 4, "window": 2}


@pytest.mark.parametrize("grid", [INT8, INT16])
def test_combined_squeezer_on_quantized_inputs_is_the_median(grid: dict) -> None:
    """The study squeezes quantized inputs to their own width (identity), so the median always wins."""
    rng = np.random.default_rng(4)
    x = rng.random((3, 6, 5, 3)).astype(np.float32)
    q = quantize(x, **grid, dtype=np.int8 if grid is INT8 else np.int16)
    defense = get_defense("combined-squeezing")
    assert defense.acts_on_quantized_input and not get_defense("median-smoothing").acts_on_quantized_input
    np.testing.assert_array_equal(defense.apply_quantized(q, **grid), median_filter_quantized(q, 2))
    assert defense.chip_stage() == get_defense("median-smoothing").chip_stage()
    np.testing.assert_array_equal(squeeze_bits_quantized(q, 8 if grid is INT8 else 16, **grid), q)


def test_studies_feed_quantized_models_the_squeezers_integer_definition() -> None:
    """host_run: quantize(apply(x)) for ordinary defenses, apply_quantized(quantize(x)) for this one."""
    from host.compiler.types import TensorInfo
    from host.study.units import _quantized_input

    tensor = TensorInfo("input", "int8", (1, 8, 8, 3), INT8["scale"], INT8["zero_point"])
    x = np.tile(np.linspace(0, 1, 8, dtype=np.float32).reshape(1, 1, 8, 1), (2, 8, 1, 3))
    combined, median = get_defense("combined-squeezing"), get_defense("median-smoothing")
    x_combined = combined.apply(x)
    assert not np.array_equal(tensor.quantize(x_combined), median_filter_quantized(tensor.quantize(x), 2))
    np.testing.assert_array_equal(_quantized_input(tensor, x, x_combined, combined, (0.0, 1.0)),
                                  median_filter_quantized(tensor.quantize(x), 2))
    x_median = median.apply(x)
    np.testing.assert_array_equal(_quantized_input(tensor, x, x_median, median, (0.0, 1.0)), tensor.quantize(x_median))

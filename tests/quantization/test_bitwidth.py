"""Host-simulated bit-width sweep: weight quantizer, simulated models, config errors."""

from __future__ import annotations

import numpy as np
import pytest

from host.core.errors import UserError
from host.core.paths import DEFAULT_FLOAT_MODEL
from host.quantization.bitwidth import (
    BitWidth,
    edge_layers,
    low_bit_points,
    lsq_range,
    parse_bitwidths,
    point_bits,
    quantization_points,
    quantize_weights,
    simulate,
)


def _small_residual_network():  # noqa: ANN202
    import keras

    x = keras.Input((6, 6, 1))
    c0 = keras.layers.Conv2D(2, 3, padding="same", name="c0")(x)
    bn = keras.layers.BatchNormalization(name="bn")(c0)
    r0 = keras.layers.Activation("relu", name="r0")(bn)
    c1 = keras.layers.Conv2D(2, 3, padding="same", name="c1")(r0)
    add = keras.layers.Add(name="add")([r0, c1])
    r1 = keras.layers.ReLU(name="r1")(add)
    c2 = keras.layers.Conv2D(2, 1, name="c2")(r1)
    t = keras.layers.Activation("tanh", name="t")(c2)
    out = keras.layers.Dense(3, activation="softmax", name="out")(keras.layers.Flatten(name="f")(t))
    return keras.Model(x, out)


def test_activations_are_rounded_where_a_deployed_network_holds_them() -> None:
    """The outputs of the fused operators, as the TFLite converter fuses them: not a convolution's output
    that feeds only its batch normalization, nor an output that feeds only a ReLU; a tanh is not fused."""
    assert quantization_points(_small_residual_network()) == {"r0", "c1", "r1", "c2", "t", "f", "out"}


def test_the_8_bit_edges_mode_keeps_what_no_low_bit_layer_reads_at_8_bits() -> None:
    """First and last kernel layers at 8 bits; b bits only where a b-bit kernel layer reads the tensor (r0 and
    r1 feed c1 and c2), 8 bits for the residual branch before its addition (c1), the tanh and the classifier's
    input; the width without edges rounds every point to b bits."""
    model = _small_residual_network()
    assert edge_layers(model) == {"c0", "out"}
    assert low_bit_points(model) == {"r0", "r1"}
    edged = BitWidth(2, True, edges8=True)
    assert point_bits(model, edged) == {"r0": 2, "r1": 2, "c1": 8, "c2": 8, "t": 8, "f": 8, "out": 8}
    assert set(point_bits(model, BitWidth(2, True)).values()) == {2}
    assert [edged.kernel_bits(n, edge_layers(model)) for n in ("c0", "c1", "c2", "out")] == [8, 2, 2, 8]
    assert edged.key == "sim:w2a2e8"


def test_layers_of_other_graphs_built_on_the_model_do_not_count_as_its_consumers() -> None:
    """An attack's head on the model's features (a new Dense on its flatten, as a logits model is built) reads
    the same tensors; the model's own rounding points and bits stay what they were."""
    import keras

    model = _small_residual_network()
    points, bits = quantization_points(model), point_bits(model, BitWidth(2, True, edges8=True))
    keras.layers.Dense(3, name="head")(model.get_layer("f").output)
    keras.layers.ReLU(name="extra")(model.get_layer("c1").output)
    assert quantization_points(model) == points and point_bits(model, BitWidth(2, True, edges8=True)) == bits


def test_lsq_range_clips_where_lsq_starts_its_step() -> None:
    """Non-negative values: [0, 2 mean|v| sqrt(2^b - 1)], never beyond the maximum; signed ones split the
    levels around 0 (LSQ: Q_N = 2^(b-1), Q_P = 2^(b-1) - 1)."""
    relu = np.array([0.0, 0.0, 0.0, 1.0, 9.0], np.float32)          # mean 2
    assert lsq_range(relu, 2) == pytest.approx((0.0, min(2 * 2 * 3 ** 0.5, 9.0)))
    assert lsq_range(relu, 8) == (0.0, 9.0)
    signed = np.array([-4.0, 4.0], np.float32)                       # mean|v| 4, Q_P 1 at 2 bits: step 8
    assert lsq_range(signed, 2) == (-4.0, 4.0)
    tails = np.array([-0.5] * 9 + [-100.0, 100.0], np.float32)      # mean|v| 204.5 / 11, Q_P 1: step 2 mean
    step = 2 * 204.5 / 11
    assert lsq_range(tails, 2) == pytest.approx((-2 * step, step))


def test_weight_quantizer_is_symmetric_per_channel_with_2b_minus_1_levels() -> None:
    w = np.array([[0.6, -2.0], [-1.0, 1.2], [0.25, 0.1]], np.float32)  # 2 output channels (last axis)
    q = quantize_weights(w, 2)                                           # levels -1, 0, 1 per channel
    assert np.allclose(q[:, 0], [1.0, -1.0, 0.0]) and np.allclose(q[:, 1], [-2.0, 2.0, 0.0])
    for bits in (3, 4, 8):
        q = quantize_weights(w, bits)
        step = np.abs(w).max(axis=0) / (2 ** (bits - 1) - 1)
        assert np.all(np.abs(q - w) <= step / 2 + 1e-7)
        assert len(np.unique(q[:, 0])) <= 2 ** bits - 1


def test_parse_bitwidths_and_errors() -> None:
    widths = parse_bitwidths([8, 2, 4], ["weights", "weights+activations"])
    assert [w.key for w in widths] == ["sim:w2", "sim:w4", "sim:w8", "sim:w2a2", "sim:w4a4", "sim:w8a8"]
    widths = parse_bitwidths([2], ["weights+activations+8-bit-edges"], qat=True)
    assert [w.key for w in widths] == ["sim:w2a2e8", "sim:w2a2e8-qat"]
    with pytest.raises(UserError, match="2..8 bits"):
        parse_bitwidths([1, 4], ["weights"])
    with pytest.raises(UserError, match="modes"):
        parse_bitwidths([4], ["activations"])


def test_simulated_models_lose_accuracy_only_at_low_width() -> None:
    from host.core.data import load_digits_split
    from host.quantization.quantize import load_float_keras

    x_train, _, x_test, y_test = load_digits_split()
    model = load_float_keras(DEFAULT_FLOAT_MODEL)
    x_test, y_test = x_test[:200], y_test[:200]

    def accuracy(m) -> float:  # noqa: ANN001
        return float(np.mean(m.predict(x_test, verbose=0).argmax(axis=1) == y_test))

    base = accuracy(model)
    assert accuracy(simulate(model, BitWidth(8, True), x_train[:200])) >= base - 0.01
    assert accuracy(simulate(model, BitWidth(2, True), x_train[:200])) < base - 0.2
    assert accuracy(model) == base  # the original model is untouched


# ---------------------------------------------------------------- quantization-aware training


def test_qat_widths_follow_the_post_training_ones() -> None:
    widths = parse_bitwidths([4, 2], ["weights", "weights+activations"], qat=True)
    assert [w.key for w in widths] == ["sim:w2", "sim:w4", "sim:w2a2", "sim:w4a4",
                                       "sim:w2-qat", "sim:w4-qat", "sim:w2a2-qat", "sim:w4a4-qat"]


def test_qat_recovers_what_post_training_quantization_loses_at_2_bits() -> None:
    """2-bit weights and activations on the digits CNN: post-training rounding loses most of its
    accuracy; three epochs of training through the rounding (STE) win it back, and the trained
    network survives to_bytes/from_bytes."""
    from host.core.data import load_digits_split
    from host.quantization.qat import from_bytes, train_qat
    from host.quantization.quantize import load_float_keras

    x_train, y_train, x_test, y_test = load_digits_split()
    model = load_float_keras(DEFAULT_FLOAT_MODEL)

    def accuracy(m) -> float:  # noqa: ANN001
        return float(np.mean(m.predict(x_test, verbose=0).argmax(axis=1) == y_test))

    width = BitWidth(2, True, qat=True)
    post = accuracy(simulate(model, BitWidth(2, True), x_train[:200]))
    net, blob = train_qat(model, width, x_train, y_train, x_train[:200], epochs=3, batch_size=32,
                          learning_rate=1e-3, seed=0)
    trained = accuracy(net)
    assert trained > post + 0.2 and trained > 0.6, (post, trained)
    again = from_bytes(model, width, blob)
    np.testing.assert_array_equal(again.predict(x_test, verbose=0), net.predict(x_test, verbose=0))
    assert accuracy(model) > trained - 0.5 and accuracy(simulate(model, BitWidth(2, True), x_train[:200])) == post

"""Quantization-aware training (QAT) for the bit-width sweep: b-bit models that still work at 2-4 bits.

Post-training quantization (bitwidth.simulate) rounds a float model's weights and activations; below
4 bits the CIFAR ResNet falls to chance.  QAT fine-tunes the float weights THROUGH the rounding
(Jacob et al. 2018; Bengio et al.'s straight-through estimator, STE), so they settle where the
b-bit network works:

* weights: every kernel of a Conv/Dense/DepthwiseConv layer is fake-quantized in the forward pass
  exactly as bitwidth.quantize_weights does (symmetric, per output channel, b bits), and the
  gradient passes straight through the rounding: `w_q = w + stop_gradient(quantize(w) - w)`;
* activations (mode weights+activations): every tensor a deployed network holds
  (bitwidth.quantization_points) is fake-quantized to b bits over the range it takes on the
  calibration set (tf.quantization.fake_quant_with_min_max_args, whose gradient is the STE's: 1
  inside the range, 0 outside), ranges fixed during training;
* the model's output (the logits layer and a final softmax) is not activation-quantized: with 2-bit
  activations, 10 class scores on 4 levels would tie and argmax would pick by index.
  Batch normalization is frozen (its statistics and scale stay the float model's).
* the 8-bit-edges mode (bitwidth's ``w<b>a<b>e8``): the first and last kernel layers' weights and the
  tensors no b-bit layer reads at 8 bits, the b-bit activations clipped at LSQ's initial range.

Training: Keras `fit` (Adam, cross-entropy) on a training pool, from the float model's weights.
The trained network is a float Keras model computing the b-bit network; the study evaluates it on
the host beside the post-training ones (key "sim:w4a4-qat").  It travels between processes as
`to_bytes` (its weights and activation ranges; `from_bytes` rebuilds it from the float model).

Imports: host.core, host.quantization.bitwidth; TensorFlow inside functions only.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.quiet import import_tensorflow_quietly
from host.quantization.bitwidth import (
    KERNEL_LAYERS,
    BitWidth,
    activation_ranges_for,
    edge_layers,
    fake_quant_class,
    point_bits,
    wrapper_class,
)

_STE_KERNEL: list[Any] = []     # the Keras layer class, made on first use (keeps TF out of imports)


def qat_network(float_model: Any, width: BitWidth, ranges: dict[str, tuple[float, float]]) -> Any:
    """The float model with b-bit fake-quantized kernels (STE) and, given ranges, activations; weights copied."""
    import_tensorflow_quietly()
    import keras

    output_layers = _output_layers(float_model)
    edges = edge_layers(float_model)
    bits = point_bits(float_model, width) if ranges else {}

    def clone(layer: Any) -> Any:
        copy = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return copy
        if type(layer).__name__ in KERNEL_LAYERS:
            _check_kernel_layer(layer)
            copy = ste_kernel_class()(copy, width.kernel_bits(layer.name, edges), name=f"{layer.name}_ste{width.bits}")
        if layer.name in ranges and layer.name not in output_layers:
            lo, hi = ranges[layer.name]
            copy = fake_quant_class()(copy, bits[layer.name], lo, hi, name=f"{layer.name}_fq{width.bits}")
        return copy

    net = keras.models.clone_model(float_model, clone_function=clone)
    _copy_float_weights(float_model, net)
    for layer in _inner_layers(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return net


def train_qat(float_model: Any, width: BitWidth, x: np.ndarray, y: np.ndarray, calibration: np.ndarray | None, *,
              epochs: int, batch_size: int, learning_rate: float, seed: int,
              decay: str = "none") -> tuple[Any, bytes]:
    """The QAT network fine-tuned on (x, y), and its to_bytes form; decay "cosine" lowers the learning rate
    to 0 along a cosine over the training's steps (at 2 bits a constant rate leaves the last epoch's
    accuracy anywhere in a 20-point band: 25-50 % from one epoch to the next for w2a2e8)."""
    import_tensorflow_quietly()
    import keras

    if width.activations and calibration is None:
        raise UserError("QAT of weights and activations needs calibration inputs (the representative set)")
    keras.utils.set_random_seed(seed)
    ranges = activation_ranges_for(float_model, width, calibration) if width.activations else {}
    net = qat_network(float_model, width, ranges)
    rate: Any = learning_rate
    if decay == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * -(-len(x) // batch_size))
    net.compile(optimizer=keras.optimizers.Adam(rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(float_model)))
    net.fit(np.asarray(x, np.float32), np.asarray(y, np.int64), epochs=epochs, batch_size=batch_size,
            shuffle=True, verbose=0)
    return net, to_bytes(net, ranges)


def to_bytes(net: Any, ranges: dict[str, tuple[float, float]]) -> bytes:
    buf = io.BytesIO()
    weights = net.get_weights()
    np.savez(buf, ranges=np.array(json.dumps(ranges)), **{f"w{i:04d}": w for i, w in enumerate(weights)})
    return buf.getvalue()


def from_bytes(float_model: Any, width: BitWidth, blob: bytes) -> Any:
    """The trained QAT network again, from the float model's architecture and `to_bytes`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in json.loads(str(npz["ranges"])).items()}
        weights = [npz[k] for k in sorted(k for k in npz.files if k.startswith("w"))]
    net = qat_network(float_model, width, ranges)
    net.set_weights(weights)
    return net


# ---------------------------------------------------------------- the STE kernel layer


def ste_kernel_class() -> Any:
    """The Keras layer wrapping a Conv/Dense/DepthwiseConv layer so that it computes with b-bit kernels."""
    if _STE_KERNEL:
        return _STE_KERNEL[0]
    from keras import ops

    class SteKernel(wrapper_class()):  # type: ignore[misc]
        """`inner` with its kernel fake-quantized (bitwidth.quantize_weights) and a straight-through gradient."""

        def call(self, inputs: Any) -> Any:
            inner = self.inner
            kernel = _ste_quantize(inner.kernel, self.bits, 2 if type(inner).__name__ == "DepthwiseConv2D" else -1)
            if type(inner).__name__ == "Dense":
                out = ops.matmul(inputs, kernel)
            elif type(inner).__name__ == "DepthwiseConv2D":
                out = ops.depthwise_conv(inputs, kernel, strides=inner.strides, padding=inner.padding,
                                         data_format=inner.data_format, dilation_rate=inner.dilation_rate)
            else:
                out = inner.convolution_op(inputs, kernel)
            if inner.use_bias:
                out = out + inner.bias
            return inner.activation(out) if inner.activation is not None else out

    def _ste_quantize(w: Any, bits: int, channel_axis: int) -> Any:
        levels = float(2 ** (bits - 1) - 1)
        axes = tuple(i for i in range(len(w.shape)) if i != channel_axis % len(w.shape))
        scale = ops.stop_gradient(ops.max(ops.abs(w), axis=axes, keepdims=True) / levels)
        scale = ops.where(scale > 0, scale, ops.ones_like(scale))
        quantized = ops.clip(ops.round(w / scale), -levels, levels) * scale
        return w + ops.stop_gradient(quantized - w)

    _STE_KERNEL.append(SteKernel)
    return SteKernel


def _check_kernel_layer(layer: Any) -> None:
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last" or config.get("groups", 1) != 1:
        raise UserError(f"QAT: layer {layer.name} ({type(layer).__name__}) is channels_first or grouped",
                        hint="QAT handles channels_last, ungrouped Conv/Dense/DepthwiseConv layers")
    if type(layer).__name__ == "DepthwiseConv2D" and config.get("depth_multiplier", 1) != 1:
        raise UserError(f"QAT: depthwise layer {layer.name} has depth_multiplier {config['depth_multiplier']}",
                        hint="QAT handles depth_multiplier 1")


def _inner_layers(net: Any) -> list[Any]:
    out = []
    for layer in net.layers:
        while hasattr(layer, "inner"):
            layer = layer.inner
        out.append(layer)
    return out


def _copy_float_weights(source: Any, target: Any) -> None:
    """The float model's weights into the clone, layer by layer (wrappers hold their layer as `inner`)."""
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        inner = layer
        while hasattr(inner, "inner"):
            inner = inner.inner
        original = by_name.get(inner.name)
        if original is not None and original.get_weights():
            inner.set_weights(original.get_weights())


def _ends_in_softmax(model: Any) -> bool:
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"


def _output_layers(model: Any) -> set[str]:
    """The model's last layer and, when that is a bare softmax, the layer computing its logits."""
    last = model.layers[-1]
    names = {last.name}
    if type(last).__name__ in ("Softmax", "Activation") and len(model.layers) > 1:
        names.add(model.layers[-2].name)
    return names

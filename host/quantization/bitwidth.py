"""Host-simulated uniform quantization at 2..8 bits, beyond what TFLite deploys.

Two modes (Gorsline et al. 2021; Guesmi et al. 2024):

* ``w<b>``: weights only. Every kernel of a Conv/Dense/DepthwiseConv layer is quantized
  symmetrically per output channel to b bits: ``w_q = clip(round(w / s), -(2^(b-1)-1), 2^(b-1)-1) · s``
  with ``s = max|w| / (2^(b-1)-1)``. Biases stay float.
* ``w<b>a<b>``: weights as above and every tensor a deployed integer network holds fake-quantized
  asymmetrically to b bits over the range [min, max] it takes on a calibration set
  (``tf.quantization.fake_quant_with_min_max_vars``, which nudges the range so 0 is exact).
  Those tensors are the outputs of the fused operators, as the TFLite converter fuses them: a
  convolution's output is not rounded when its only consumer is the batch normalization folded into
  it, nor a convolution's, batch normalization's or addition's when its only consumer is the ReLU
  fused into it (``quantization_points``).  Rounding there too, as this module did until 2026-12-06,
  adds rounding steps no deployed model has: at 4 bits it cost the CIFAR ResNet 35 points.

* ``w<b>a<b>e8``: what published low-bit networks deploy (PACT, Choi et al. 2018; LSQ, Esser et al.
  2020; DoReFa): b-bit weights and b-bit activations where they enter a b-bit multiplication, with the
  network's edges at 8 bits: the first and the last kernel layer's weights (``edge_layers``), and the
  tensors no b-bit layer reads (the residual branches before their addition, the pooled features
  entering the classifier; ``low_bit_points``). The b-bit activations are clipped where LSQ starts its
  step size, at ``2 * mean|v| * sqrt(2^b - 1)`` of the calibration set's values (``lsq_range``), not at
  their maximum: at 2 bits, 4 levels up to the largest of 500 images' activations leave almost every
  activation at 0 (w2a2 QAT near chance, 18.6 %; w2a2e8 QAT 49.4 %, docs/reproduction.md).

The result is a float Keras model that computes what a b-bit network would: it runs on the host
(not the chip) next to the deployed int16x8/int8 models, so accuracy-vs-ε per bit-width comes
out of the same study. Names: "sim:w4", "sim:w4a4", "sim:w4a4e8"; quantization-aware trained
ones (qat.py) "sim:w4-qat", "sim:w4a4-qat", "sim:w4a4e8-qat".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host.core.errors import UserError

MIN_BITS, MAX_BITS = 2, 8
MODES = ("weights", "weights+activations", "weights+activations+8-bit-edges")
EDGE_BITS = 8
KERNEL_LAYERS = ("Conv2D", "Dense", "DepthwiseConv2D", "Conv1D")


@dataclass(frozen=True)
class BitWidth:
    bits: int
    activations: bool
    # quantization-aware trained (host.quantization.qat), else post-training; out of repr (a study's
    # fingerprint has its QAT settings instead), so studies without QAT keep their fingerprint
    qat: bool = field(default=False, repr=False)
    # the network's edges at 8 bits (mode weights+activations+8-bit-edges); out of repr like qat
    # (journal.experiment_fingerprint adds the keys of such widths)
    edges8: bool = field(default=False, repr=False)

    @property
    def key(self) -> str:
        return (f"sim:w{self.bits}" + (f"a{self.bits}" if self.activations else "") + ("e8" if self.edges8 else "")
                + ("-qat" if self.qat else ""))

    def kernel_bits(self, layer_name: str, edges: set[str]) -> int:
        """Bits of a kernel layer's weights: EDGE_BITS for the network's first and last (edge_layers) here."""
        return EDGE_BITS if self.edges8 and layer_name in edges else self.bits


def parse_bitwidths(bits: Any, modes: Any, qat: bool = False) -> tuple[BitWidth, ...]:
    """[bitwidth] bits = [2, 4, 8], modes = ["weights", "weights+activations"] from a study config; with
    qat, every width also quantization-aware trained (after the post-training ones)."""
    if not isinstance(bits, list) or not bits or not all(isinstance(b, int) and not isinstance(b, bool)
                                                         for b in bits):
        raise UserError(f"bitwidth.bits must be a list of integers, e.g. [2, 4, 8], got {bits!r}")
    bad = [b for b in bits if not MIN_BITS <= b <= MAX_BITS]
    if bad:
        raise UserError(f"bitwidth.bits {bad}: simulated widths are {MIN_BITS}..{MAX_BITS} bits")
    if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes):
        raise UserError(f"bitwidth.modes must be a list drawn from {list(MODES)}, got {modes!r}")
    post = tuple(BitWidth(b, m != MODES[0], edges8=m == MODES[2]) for m in modes for b in sorted(set(bits)))
    return post + (tuple(BitWidth(w.bits, w.activations, qat=True, edges8=w.edges8) for w in post) if qat else ())


def quantize_weights(w: np.ndarray, bits: int, channel_axis: int = -1) -> np.ndarray:
    """Symmetric per-channel b-bit quantization of a kernel (returned dequantized, float32)."""
    w = np.asarray(w, dtype=np.float32)
    levels = 2 ** (bits - 1) - 1
    axes = tuple(i for i in range(w.ndim) if i != channel_axis % w.ndim)
    scale = np.max(np.abs(w), axis=axes, keepdims=True) / levels
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return (np.clip(np.round(w / scale), -levels, levels) * scale).astype(np.float32)


def _kernel_channel_axis(layer: Any) -> int:
    # DepthwiseConv2D kernels are (kh, kw, in, multiplier): channels are axes 2 and 3; per
    # input channel is what TFLite uses for depthwise (its output channel = in × multiplier).
    return 2 if type(layer).__name__ == "DepthwiseConv2D" else -1


def simulate(model: Any, width: BitWidth, calibration: np.ndarray | None = None) -> Any:
    """A new Keras model computing the b-bit version of `model` (the input is not changed)."""
    import keras

    if width.activations and calibration is None:
        raise UserError("weights+activations simulation needs calibration inputs (the representative set)")
    ranges = activation_ranges_for(model, width, calibration) if width.activations else {}
    bits = point_bits(model, width)

    def clone(layer: Any) -> Any:
        copy = layer.__class__.from_config(layer.get_config())
        if not ranges or layer.name not in ranges or isinstance(layer, keras.layers.InputLayer):
            return copy
        lo, hi = ranges[layer.name]
        return fake_quant_class()(copy, bits[layer.name], lo, hi, name=f"{layer.name}_fq{width.bits}")

    sim = keras.models.clone_model(model, clone_function=clone)
    _copy_weights(model, sim, width)
    return sim


def _copy_weights(source: Any, target: Any, width: BitWidth) -> None:
    by_name = {layer.name: layer for layer in source.layers}
    edges = edge_layers(source)
    for layer in target.layers:
        inner = layer.inner if _is_fake_quant(layer) else layer
        original = by_name.get(re.sub(r"_fq\d+$", "", layer.name))
        if original is None or not original.get_weights():
            continue
        weights = original.get_weights()
        if type(original).__name__ in KERNEL_LAYERS:
            weights[0] = quantize_weights(weights[0], width.kernel_bits(original.name, edges),
                                          _kernel_channel_axis(original))
        inner.set_weights(weights)


def edge_layers(model: Any) -> set[str]:
    """The network's first and last kernel layers (in the model's layer order): the layers published low-bit
    networks keep at 8 bits (the first reads the image, the last gives the class scores)."""
    kernels = [layer.name for layer in model.layers if type(layer).__name__ in KERNEL_LAYERS]
    return {kernels[0], kernels[-1]} if kernels else set()


def _consumers(model: Any, layer: Any) -> list[Any]:
    """The layers of `model` that read `layer`'s output. Only the model's own: Keras also lists the layers of
    every other graph built on this model's tensors (an attack's logits head on the features, say), and a
    worker that crafted attacks before building a b-bit model saw those (w2a2e8-qat at 25 % instead of 49 %)."""
    own = {id(other) for other in model.layers}
    return [node.operation for node in getattr(layer, "_outbound_nodes", []) if id(node.operation) in own]


def low_bit_points(model: Any) -> set[str]:
    """Of the quantization points, those a b-bit kernel layer reads (in the 8-bit-edges mode the others, such
    as a residual branch before its addition or the features entering the last layer, are held at 8 bits)."""
    edges = edge_layers(model)
    return {name for name in quantization_points(model)
            if any(type(c).__name__ in KERNEL_LAYERS and c.name not in edges
                   for c in _consumers(model, model.get_layer(name)))}


def point_bits(model: Any, width: BitWidth) -> dict[str, int]:
    """Bits of every quantization point's fake quantization for this width."""
    points = quantization_points(model)
    if not width.edges8:
        return dict.fromkeys(points, width.bits)
    low = low_bit_points(model)
    return {name: width.bits if name in low else EDGE_BITS for name in points}


def lsq_range(values: np.ndarray, bits: int) -> tuple[float, float]:
    """The clipping range where LSQ (Esser et al. 2020) starts its step size s = 2 mean|v| / sqrt(Q_P), Q_P
    the number of positive levels: [0, Q_P s] for a non-negative tensor, else [-(Q_N) s, Q_P s] with the
    2^b levels split around 0 (Q_N = 2^(b-1), Q_P = 2^(b-1) - 1)."""
    values = np.asarray(values, np.float32)
    mean = float(np.mean(np.abs(values)))
    if float(np.min(values)) >= 0.0:
        positive = 2 ** bits - 1
        return 0.0, min(2 * mean * positive ** 0.5, float(np.max(values)))
    negative, positive = 2 ** (bits - 1), max(2 ** (bits - 1) - 1, 1)
    step = 2 * mean / positive ** 0.5
    return max(-negative * step, float(np.min(values))), min(positive * step, float(np.max(values)))


def activation_ranges_for(model: Any, width: BitWidth, x: np.ndarray | None) -> dict[str, tuple[float, float]]:
    """The fake quantization ranges of this width: min/max over the calibration inputs, except the b-bit
    points of the 8-bit-edges mode, clipped at lsq_range."""
    if not width.edges8:
        return activation_ranges(model, x)
    values = _point_values(model, x)
    low = low_bit_points(model)
    return {name: lsq_range(v, width.bits) if name in low else _min_max(v) for name, v in values.items()}


_FUSED_INTO_PREVIOUS = ("BatchNormalization",)                 # folded into a convolution's weights
_TAKES_FUSED_ACTIVATION = ("Conv2D", "Conv1D", "DepthwiseConv2D", "Dense", "BatchNormalization", "Add")


def _is_relu(layer: Any) -> bool:
    """A ReLU layer the converter fuses (ReLU, ReLU6; not softmax or tanh)."""
    if type(layer).__name__ == "ReLU":
        return True
    return type(layer).__name__ == "Activation" and layer.get_config().get("activation") in ("relu", "relu6")


def quantization_points(model: Any) -> set[str]:
    """Names of the layers whose outputs a deployed integer network holds (and so rounds): all but those
    whose only consumer is fused into them (a batch normalization after a convolution; a ReLU after a
    convolution, batch normalization or addition)."""
    import keras

    points = set()
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        consumers = _consumers(model, layer)
        fused = len(consumers) == 1 and (
            (type(consumers[0]).__name__ in _FUSED_INTO_PREVIOUS and type(layer).__name__ in KERNEL_LAYERS)
            or (_is_relu(consumers[0]) and type(layer).__name__ in _TAKES_FUSED_ACTIVATION))
        if not fused:
            points.add(layer.name)
    return points


def activation_ranges(model: Any, x: np.ndarray | None) -> dict[str, tuple[float, float]]:
    """[min, max] on the calibration inputs (one pass) of every tensor a deployed network holds
    (quantization_points)."""
    return {name: _min_max(v) for name, v in _point_values(model, x).items()}


def _min_max(values: np.ndarray) -> tuple[float, float]:
    return min(float(np.min(values)), 0.0), max(float(np.max(values)), 0.0)


def _point_values(model: Any, x: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every quantization point's values on the calibration inputs (one pass)."""
    import keras

    if x is None:
        return {}
    points = quantization_points(model)
    layers = [layer for layer in model.layers if layer.name in points]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = probe.predict(np.asarray(x, np.float32), verbose=0, batch_size=256)
    if len(layers) == 1:
        outputs = [outputs]
    return {layer.name: out for layer, out in zip(layers, outputs, strict=True)}


_FAKE_QUANT: list[Any] = []   # the Keras layer classes, made on first use (keeps TF out of imports)
_WRAPPER: list[Any] = []


def wrapper_class() -> Any:
    """The base of the sweep's wrapper layers: a layer holding `inner` (built with it) and a bit width."""
    if _WRAPPER:
        return _WRAPPER[0]
    import keras

    class BitWidthWrapper(keras.layers.Layer):
        def __init__(self, inner: Any, bits: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.inner, self.bits = inner, bits

        def build(self, input_shape: Any) -> None:
            if not self.inner.built:
                self.inner.build(input_shape)
            self.built = True

        def compute_output_shape(self, input_shape: Any) -> Any:
            return self.inner.compute_output_shape(input_shape)

    _WRAPPER.append(BitWidthWrapper)
    return BitWidthWrapper


def fake_quant_class() -> Any:
    if _FAKE_QUANT:
        return _FAKE_QUANT[0]
    import tensorflow as tf

    class FakeQuant(wrapper_class()):  # type: ignore[misc]
        """A layer followed by b-bit fake quantization of its output over a fixed range."""

        def __init__(self, inner: Any, bits: int, lo: float, hi: float, **kwargs: Any) -> None:
            super().__init__(inner, bits, **kwargs)
            self.lo, self.hi = lo, hi

        def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            y = self.inner(inputs, *args, **kwargs)
            return tf.quantization.fake_quant_with_min_max_args(y, min=self.lo, max=self.hi, num_bits=self.bits)

    _FAKE_QUANT.append(FakeQuant)
    return FakeQuant


def _is_fake_quant(layer: Any) -> bool:
    return bool(_FAKE_QUANT) and isinstance(layer, _FAKE_QUANT[0])

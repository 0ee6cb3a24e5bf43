"""The PixelCNN behind PixelDefend: the model, its training on an image pool, and its checkpoint.

A PixelCNN (van den Oord et al. 2016) gives, for every sub-pixel of an image, a distribution over
its 256 levels conditioned on the sub-pixels before it (raster order; within a pixel R, then G,
then B).  The architecture is the study's (artifact QNN-Defenses/pixel_cnn/model.py, read, not
copied): a 7x7 mask-A convolution to 2·colours·hidden channels, `residual_blocks` blocks of
1x1 → 3x3 → 1x1 mask-B convolutions (ReLU before each, halving then restoring the width) and two
1x1 mask-B convolutions to colours·256 logits.  Ours takes the image in [0, 1] (the study
trained on 0..255 values and ART hands PixelDefend's model [0, 1]); the loss is bits per
sub-pixel, the cross-entropy of the true level in base 2 (8 = uniform; good CIFAR-10 models reach
about 3).

Trained by the command `python -m host.defenses.train_pixelcnn` (train_pixelcnn.py), which writes
the checkpoint pixel-defend's `pixelcnn` parameter names.

Imports: host.core, host.defenses.training; TensorFlow/Keras inside functions only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.quiet import import_tensorflow_quietly
from host.core.registry import seed_everything
from host.defenses.training import fine_tune

LEVELS = 256
_MASKED_CONV: list[Any] = []     # the Keras layer class, defined (and registered) on first use


def masked_conv2d() -> Any:
    """The MaskedConv2D Keras layer class (defined here on first use: no TensorFlow at import time).

    A convolution that sees only the sub-pixels before each output (mask A) or up to it (mask B).
    Channels are split into `colours` contiguous groups (group g = colour g). Kernel taps above the
    centre row, or left of the centre on its row, are kept; taps after the centre are zeroed; at
    the centre an output of colour j sees input colours i < j (mask A) or i <= j (mask B).
    """
    if _MASKED_CONV:
        return _MASKED_CONV[0]
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="slingshot")
    class MaskedConv2D(keras.layers.Layer):
        def __init__(self, mask: str, colours: int, filters: int, kernel_size: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if mask not in ("A", "B"):
                raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
            self.mask_type, self.colours, self.filters, self.kernel_size = mask, colours, filters, kernel_size

        def build(self, input_shape: Any) -> None:
            channels = int(input_shape[-1])
            k = self.kernel_size
            self.kernel = self.add_weight(name="kernel", shape=(k, k, channels, self.filters),
                                          initializer="glorot_uniform")
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            self.mask = tf.constant(causal_mask(k, channels, self.filters, self.colours, self.mask_type))

        def call(self, x: Any) -> Any:
            return tf.nn.conv2d(x, self.kernel * self.mask, strides=1, padding="SAME") + self.bias

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "mask": self.mask_type, "colours": self.colours,
                    "filters": self.filters, "kernel_size": self.kernel_size}

    _MASKED_CONV.append(MaskedConv2D)
    return MaskedConv2D


def causal_mask(k: int, channels_in: int, channels_out: int, colours: int, mask: str) -> np.ndarray:
    """The (k, k, in, out) 0/1 mask of MaskedConv2D."""
    if channels_in % colours or channels_out % colours:
        raise ValueError(f"{channels_in} -> {channels_out} channels do not split into {colours} colours")
    out = np.zeros((k, k, channels_in, channels_out), np.float32)
    centre = k // 2
    out[:centre] = 1.0
    out[centre, :centre] = 1.0
    colour_in = np.arange(channels_in) // (channels_in // colours)
    colour_out = np.arange(channels_out) // (channels_out // colours)
    sees = colour_in[:, None] < colour_out[None, :] if mask == "A" else colour_in[:, None] <= colour_out[None, :]
    out[centre, centre] = sees.astype(np.float32)
    return out


def build_pixelcnn(input_shape: tuple[int, int, int], hidden: int = 64, residual_blocks: int = 4) -> Any:
    """The PixelCNN: image in [0, 1] (H, W, colours) -> logits (H, W, colours, 256)."""
    import keras

    MaskedConv2D = masked_conv2d()  # noqa: N806  (a class)
    height, width, colours = (int(v) for v in input_shape)
    x_in = keras.Input(shape=(height, width, colours), name="image")
    h = keras.layers.Rescaling(2.0, offset=-1.0)(x_in)
    h = MaskedConv2D("A", colours, 2 * colours * hidden, 7, name="conv_a")(h)
    width_h = 2 * colours * hidden
    for i in range(residual_blocks):
        r = MaskedConv2D("B", colours, width_h // 2, 1, name=f"res{i}_in")(keras.layers.ReLU()(h))
        r = MaskedConv2D("B", colours, width_h // 2, 3, name=f"res{i}_3x3")(keras.layers.ReLU()(r))
        r = MaskedConv2D("B", colours, width_h, 1, name=f"res{i}_out")(keras.layers.ReLU()(r))
        h = keras.layers.Add()([h, r])
    h = MaskedConv2D("B", colours, colours * LEVELS, 1, name="conv_b1")(keras.layers.ReLU()(h))
    h = MaskedConv2D("B", colours, colours * LEVELS, 1, name="conv_b2")(keras.layers.ReLU()(h))
    logits = keras.layers.Reshape((height, width, colours, LEVELS), name="logits")(h)
    return keras.Model(x_in, logits, name=f"pixelcnn_h{hidden}_r{residual_blocks}")


def softmax_model(pixelcnn: Any) -> Any:
    """The same network ending in the softmax over the 256 levels (what PixelDefend compares)."""
    import keras

    return keras.Model(pixelcnn.inputs[0], keras.layers.Softmax(axis=-1)(pixelcnn.outputs[0]))


def levels(x: np.ndarray) -> np.ndarray:
    """The 0..255 level of each sub-pixel of an image in [0, 1] (rounded to nearest)."""
    return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.int32)


def bits_per_subpixel(model: Any, x: np.ndarray, batch_size: int = 64) -> float:
    """Mean negative log2-likelihood of x's levels under the model (8.0 = uniform)."""
    import tensorflow as tf

    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float32)
        total += float(tf.reduce_sum(_nll_nats(levels(xb), model(xb, training=False))))
    return total / (math.log(2.0) * x[:1].size * len(x)) if len(x) else float("nan")


def _nll_nats(targets: Any, logits: Any) -> Any:
    import tensorflow as tf

    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def train_pixelcnn(x: np.ndarray, *, epochs: int, batch_size: int = 32, learning_rate: float = 1e-3,
                   hidden: int = 64, residual_blocks: int = 4, seed: int = 0, held_out: np.ndarray | None = None,
                   progress: Any = None, init: Any = None) -> tuple[Any, list[dict[str, float]]]:
    """A PixelCNN trained (Adam, bits-per-sub-pixel loss) on images x in [0, 1]; and per epoch the
    training loss and, given held_out images, their bits per sub-pixel. `init`, a PixelCNN, is trained
    further instead of a new one (hidden and residual_blocks are then its own); `progress(row, model)`
    runs after each epoch."""
    import tensorflow as tf

    seed_everything(seed)
    model = init if init is not None else build_pixelcnn(tuple(x.shape[1:]), hidden, residual_blocks)
    x = np.asarray(x, np.float32)
    history: list[dict[str, float]] = []
    started = time.monotonic()

    def loss(xb: Any, yb: Any) -> Any:
        return tf.reduce_mean(_nll_nats(yb, model(xb, training=True))) / math.log(2.0)

    def after_epoch(epoch: int) -> None:
        row = {"epoch": epoch + 1, "seconds": round(time.monotonic() - started, 1),
               "train_bits": bits_per_subpixel(model, x[:512])}
        if held_out is not None and len(held_out):
            row["held_out_bits"] = bits_per_subpixel(model, held_out)
        history.append(row)
        if progress is not None:
            progress(row, model)

    fine_tune(model, x, levels(x), loss, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
              seed=seed, on_epoch=after_epoch)
    return model, history


def load_pixelcnn(path: Path | str, input_shape: tuple[int, ...] | None = None) -> Any:
    """A saved PixelCNN; UserError if missing, unreadable, not a PixelCNN, or for other images."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"PixelCNN checkpoint not found: {path}",
                        hint="train one: python -m host.defenses.train_pixelcnn --data IMAGES.npz --out FILE.keras")
    masked_conv2d()            # registered before Keras reads the file
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        raise UserError(f"could not load the PixelCNN {path}: {str(err).splitlines()[0] if str(err) else err}",
                        hint="give a .keras file written by python -m host.defenses.train_pixelcnn") from None
    shape_in, shape_out = tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:])
    if len(shape_in) != 3 or shape_out != (*shape_in, LEVELS):
        raise UserError(f"{path} is not a PixelCNN: it maps {shape_in} to {shape_out}, not (H, W, C) to "
                        f"(H, W, C, {LEVELS})")
    if input_shape is not None and tuple(input_shape) != shape_in:
        raise UserError(f"the PixelCNN {path} models {shape_in} images, but the model's inputs are "
                        f"{tuple(input_shape)}", hint="train a PixelCNN on this dataset's images")
    return model

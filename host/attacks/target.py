"""The float model an attack is crafted on, with what attacks need to know about it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.quiet import import_tensorflow_quietly


@dataclass
class FloatModel:
    """A Keras classifier plus its input range; hands out an ART wrapper on demand.

    Gradients are taken through the logits when the model ends in a Softmax layer:
    cross-entropy on saturated probabilities has vanishing gradients, which would make
    white-box attacks look weaker than they are.
    """

    keras_model: Any
    input_range: tuple[float, float] = (0.0, 1.0)
    _art: Any = field(default=None, init=False, repr=False)
    _logits: Any = field(default=None, init=False, repr=False)
    _forward: Any = field(default=None, init=False, repr=False)

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return tuple(self.keras_model.inputs[0].shape)

    @property
    def num_classes(self) -> int:
        return int(self.keras_model.outputs[0].shape[-1])

    def logits_model(self) -> Any:
        if self._logits is None:
            self._logits = _strip_softmax(self.keras_model)
        return self._logits

    def outputs_logits(self) -> bool:
        """False only for a model whose softmax could not be split off (e.g. Dense(activation=softmax))."""
        return not _ends_in_softmax(self.logits_model())

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class scores (whatever the model outputs) for a float batch.

        Through one traced graph, not `keras_model.predict`: that sets up a data pipeline per call
        (about 50 ms), and attacks call this after every stage, target and query on small batches."""
        if self._forward is None:
            self._forward = CompiledNet(self.keras_model)
        x = np.asarray(x, np.float32)
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate([self._forward(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)])

    def art_classifier(self) -> Any:
        """ART's TensorFlowV2Classifier around the logits model (built once)."""
        if self._art is None:
            from tensorflow import keras

            TensorFlowV2Classifier = import_art("art.estimators.classification").TensorFlowV2Classifier  # noqa: N806

            self._art = TensorFlowV2Classifier(
                model=CompiledNet(self.logits_model()),
                nb_classes=self.num_classes,
                input_shape=tuple(self.input_shape[1:]),
                loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=self.outputs_logits()),
                clip_values=self.input_range,
            )
        return self._art


class CompiledNet:
    """A Keras network called through one traced graph (any batch size) instead of layer by layer.

    Keras 3 runs an eager call one layer at a time (batch norm unfused): on the CIFAR ResNet a
    gradient of 6 inputs costs about 130 ms eagerly against a few ms of arithmetic, and ART's
    attacks take one per iteration.  Gradients flow through the graph as through the network.
    Inference only: `training` must be False.
    """

    def __init__(self, net: Any) -> None:
        import tensorflow as tf

        self.net = net
        spec = tf.TensorSpec((None, *net.inputs[0].shape[1:]), tf.float32)
        self._call = tf.function(lambda x: net(x, training=False), input_signature=[spec], reduce_retracing=True)

    def __call__(self, x: Any, training: bool = False) -> Any:
        import tensorflow as tf

        if training:
            raise ValueError("CompiledNet is for inference; train the Keras network itself")
        return self._call(tf.cast(x, tf.float32))

    def __getattr__(self, name: str) -> Any:   # layers, trainable_variables, inputs, ... of the network
        return getattr(self.net, name)


def import_art(module: str) -> Any:
    """An ART module, imported without its warning about optional PyTorch extras."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return importlib.import_module(module)


def _ends_in_softmax(model: Any) -> bool:
    from tensorflow import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def _strip_softmax(model: Any) -> Any:
    """The same network without its final Softmax layer (shares weights), else the model itself."""
    from tensorflow import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _ends_in_softmax(model)):
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    if isinstance(last, keras.layers.Dense) and _ends_in_softmax(model):
        # Dense(activation="softmax"): the same affine map without the softmax (weights copied).
        linear = keras.layers.Dense(last.units, use_bias=last.use_bias, name=f"{last.name}_logits")
        logits = keras.Model(model.inputs, linear(last.input), name=f"{model.name}_logits")
        linear.set_weights(last.get_weights())
        return logits
    return model


def load_float_model(path: Path | str, input_range: tuple[float, float] = (0.0, 1.0)) -> FloatModel:
    """Load a .keras/.h5 model; a clear UserError if the path or file is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"float model not found: {path}",
            hint="pass --float-model PATH.keras (the float model the .tflite was converted from)",
        )
    if path.suffix not in (".keras", ".h5"):
        raise UserError(f"float model must be a .keras or .h5 file, got {path.name}")

    import_tensorflow_quietly()
    from tensorflow import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        raise UserError(f"could not load float model {path}: {err}") from None
    return FloatModel(model, input_range)

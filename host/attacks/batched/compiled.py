"""What the batched kernels share: one compiled function per (model, kernel), batching, losses."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from host.attacks.target import FloatModel

# keras logits model -> {kernel key: tf.function}.  The kernels call the model through a weak
# reference, so a model nobody else holds is freed together with its entry and graphs.
_COMPILED: weakref.WeakKeyDictionary[Any, dict[tuple, Any]] = weakref.WeakKeyDictionary()


def compiled(model: FloatModel, key: tuple, build: Callable[[Any, FloatModel], Any]) -> Any:
    """The tf.function `build(net, model)` for this model's logits network, built (and traced) once."""
    net = model.logits_model()
    per_model = _COMPILED.setdefault(net, {})
    full_key = (*key, tuple(model.input_range), model.outputs_logits())
    if full_key not in per_model:
        per_model[full_key] = build(_weak_call(net), model)
    return per_model[full_key]


def _weak_call(net: Any) -> Callable[..., Any]:
    ref = weakref.ref(net)

    def call(x: Any, training: bool = False) -> Any:
        return ref()(x, training=training)

    return call


def input_spec(model: FloatModel) -> Any:
    """A float32 TensorSpec of the model's inputs with an unknown batch size (traced once for all)."""
    import tensorflow as tf

    return tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)


def scalar_spec(dtype: Any = None) -> Any:
    import tensorflow as tf

    return tf.TensorSpec((), dtype or tf.float32)


def per_input_broadcaster(model: FloatModel) -> Callable[[Any], Any]:
    """A function that reshapes one value per input, shape (batch,), to (batch, 1, …, 1), so
    it broadcasts over that input's elements (a step size, a mask of which inputs to update)."""
    import tensorflow as tf

    ones = [1] * (len(model.input_shape) - 1)

    def per_input(values: Any) -> Any:
        return tf.reshape(values, [-1, *ones])

    return per_input


def in_batches(run: Callable[..., Any], batch_size: int, *arrays: np.ndarray) -> Any:
    """run(*chunks) on consecutive chunks of at most batch_size rows, results concatenated
    (a tuple of arrays when run returns a tuple)."""
    n = len(arrays[0])
    parts = [run(*(a[i:i + batch_size] for a in arrays)) for i in range(0, n, batch_size)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0])))
    return np.concatenate([np.asarray(p) for p in parts]).astype(np.float32, copy=False)


def per_example_sum(values: Any) -> Any:
    """Sum over every axis but the batch axis."""
    import tensorflow as tf

    return tf.reduce_sum(tf.reshape(values, (tf.shape(values)[0], -1)), axis=1)


def true_class_margin(logits: Any, y: Any) -> Any:
    """z_y - max_{j≠y} z_j per example: below 0 once the label is no longer the top class."""
    import tensorflow as tf

    onehot = tf.one_hot(y, tf.shape(logits)[1], dtype=logits.dtype)
    z_true = tf.reduce_sum(logits * onehot, axis=1)
    z_other = tf.reduce_max(logits - onehot * 1e9, axis=1)  # the label's own score pushed out of the max
    return z_true - z_other


def cross_entropy(y: Any, scores: Any, from_logits: bool) -> Any:
    """Per-example cross-entropy of the labels y under logits (or probabilities)."""
    import tensorflow as tf

    if from_logits:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=scores)
    picked = tf.gather(scores, y, axis=1, batch_dims=1)
    return -tf.math.log(tf.clip_by_value(picked, 1e-12, 1.0))


def predicted_labels(model: FloatModel, x: np.ndarray, batch_size: int) -> np.ndarray:
    """argmax of the model's scores, through one compiled forward pass (no Keras predict set-up per call)."""
    forward = compiled(model, ("forward",), _build_forward)
    return in_batches(lambda xb: forward(xb), batch_size, x.astype(np.float32)).argmax(axis=1)


def _build_forward(net: Any, model: FloatModel) -> Any:
    import tensorflow as tf

    @tf.function(input_signature=[input_spec(model)], reduce_retracing=True)
    def forward(x: Any) -> Any:
        return net(x, training=False)

    return forward

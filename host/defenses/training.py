"""Shared machinery of the train-based defenses: clone, logits, in-graph attacks, fine-tuning loop.

Every train-based defense clones the input model (same layers, same config, copied weights;
the input model is never modified), fine-tunes the clone with Adam in a custom TensorFlow loop
and returns it.  The architecture, the final softmax included, is unchanged, so the result
quantizes to the same ops as the input model.

Reproducible: batches are drawn with numpy.random.default_rng(seed), random starts with
TensorFlow's stateless generators keyed by (seed, step), weights start from the input model's,
and TensorFlow's global seed is set; the same inputs and seed give the same weights.

Losses are computed on logits: for a model ending in a Softmax layer (or an Activation /
Dense with activation softmax) the softmax is split off, sharing the weights, so cross-entropy
and attack gradients do not saturate.  A model without a final softmax is taken to output logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.quiet import import_tensorflow_quietly
from host.defenses.base import SEED, Param, at_least_one, one_of, positive
from host.defenses.checkpoints import next_phase, restore_epoch, save_epoch

LogitsFn = Callable[[Any, bool], Any]

EPOCHS_HELP = "passes over the training set"


def keras_module(model: Any) -> Any:
    """keras (Keras 3) or tf_keras (legacy Keras-2 models), whichever built the model."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def clone_float_model(model: Any) -> Any:
    """A new model with the same architecture and a copy of the weights."""
    import_tensorflow_quietly()
    keras = keras_module(model)
    try:
        clone = keras.models.clone_model(model)
    except Exception as err:  # subclassed models and custom layers without get_config
        raise UserError(
            f"could not clone the float model ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
            hint="train-based defenses need a functional or sequential Keras model",
        ) from None
    clone.set_weights(model.get_weights())
    return clone


def _is_softmax(activation: Any) -> bool:
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def logits_function(model: Any) -> LogitsFn:
    """f(x, training) -> the model's pre-softmax scores, sharing the model's variables."""
    keras = keras_module(model)
    last = model.layers[-1]
    body = None
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _is_softmax(getattr(last, "activation", None))):
        body = keras.Model(model.inputs, last.input)
        return lambda x, training: body(x, training=training)
    if isinstance(last, keras.layers.Dense) and _is_softmax(last.activation):
        import tensorflow as tf

        body = keras.Model(model.inputs, last.input)

        def dense_logits(x: Any, training: bool) -> Any:
            h = tf.matmul(body(x, training=training), last.kernel)
            return h + last.bias if last.use_bias else h

        return dense_logits
    if _is_softmax(getattr(last, "activation", None)):
        raise UserError(
            f"the model's last layer {type(last).__name__} applies a softmax that cannot be split off",
            hint="end the model in Dense (linear) + Softmax, or Dense(activation='softmax')",
        )
    return lambda x, training: model(x, training=training)


def stateless_seed(seed: int, step: int, salt: int = 0) -> np.ndarray:
    return np.array([seed, step * 16 + salt], dtype=np.int64)


def pgd_linf(
    logits_fn: LogitsFn, x: Any, y: Any, *, eps: float, step: float, iters: int,
    input_range: tuple[float, float], seed: Any, random_init: bool = True,
    loss: Callable[[Any, Any], Any] | None = None,
) -> Any:
    """L∞ PGD in the graph (Madry et al.): maximise `loss(y, logits)` (default cross-entropy).

    Uniform random start in the ε-ball (stateless, from `seed`), `iters` signed-gradient steps
    of size `step`, projection on the ball and the input range after every step.  The BN
    layers run in inference mode.  Returns a tensor without gradient history.
    """
    import tensorflow as tf

    lo, hi = input_range
    if loss is None:
        def loss(yy: Any, logits: Any) -> Any:
            return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yy, logits=logits))
    x = tf.convert_to_tensor(x)
    noise = tf.random.stateless_uniform(tf.shape(x), seed=seed, minval=-eps, maxval=eps) if random_init else 0.0
    x_adv = x + noise
    x_adv = tf.clip_by_value(x_adv, lo, hi)
    for _ in range(iters):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            value = loss(y, logits_fn(x_adv, False))
        grad = tape.gradient(value, x_adv)
        x_adv = x_adv + step * tf.sign(grad)
        x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), lo, hi)
    return tf.stop_gradient(x_adv)


def fgsm_linf(logits_fn: LogitsFn, x: Any, y: Any, *, eps: float, input_range: tuple[float, float]) -> Any:
    """One signed-gradient step of size eps on the cross-entropy (Goodfellow et al.)."""
    return pgd_linf(logits_fn, x, y, eps=eps, step=eps, iters=1, input_range=input_range, seed=None,
                    random_init=False)


def cross_entropy(y: Any, logits: Any) -> Any:
    import tensorflow as tf

    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def fine_tune(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_loss: Callable[..., Any],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    aux: Sequence[np.ndarray] = (),
    prepare: Callable[..., Sequence[Any]] | None = None,
    salt: int = 0,
    on_epoch: Callable[[int], None] | None = None,
    optimizer: str = "adam",
) -> Any:
    """Adam (or plain SGD) on `batch_loss(xb, yb, *aux_b, *prepared)` over shuffled batches; returns the model.

    `prepare(xb, yb, seed, *aux_b)` computes tensors outside the gradient tape (adversarial
    examples); `aux` are per-sample arrays batched with x (soft labels, precomputed inputs);
    `on_epoch(epoch)` runs after each epoch (progress, held-out scores).  Inside
    `checkpoints.checkpointed(directory)` each call keeps epoch checkpoints and resumes from them.
    """
    import tensorflow as tf

    keras = keras_module(model)
    opt = (keras.optimizers.SGD(learning_rate=learning_rate) if optimizer == "sgd"
           else keras.optimizers.Adam(learning_rate=learning_rate))
    variables = list(model.trainable_variables)
    if hasattr(opt, "build"):
        opt.build(variables)

    @tf.function(reduce_retracing=True)
    def train_step(xb: Any, yb: Any, step_seed: Any, *aux_b: Any) -> Any:
        prepared = tuple(prepare(xb, yb, step_seed, *aux_b)) if prepare is not None else ()
        with tf.GradientTape() as tape:
            value = batch_loss(xb, yb, *aux_b, *prepared)
        grads = tape.gradient(value, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        return value

    rng = np.random.default_rng(seed)
    phase = next_phase()
    done = restore_epoch(phase, model, opt) if phase is not None else 0
    for _ in range(min(done, epochs)):          # the batches of the done epochs, drawn and not trained
        rng.permutation(len(x))
    step = min(done, epochs) * -(-len(x) // batch_size)
    for epoch in range(min(done, epochs), epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            train_step(
                tf.constant(x[idx]), tf.constant(y[idx]),
                tf.constant(stateless_seed(seed, step, salt)),
                *(tf.constant(a[idx]) for a in aux),
            )
            step += 1
        if phase is not None:
            save_epoch(phase, epoch + 1, model, opt)
        if on_epoch is not None:
            on_epoch(epoch)
    return model


def predict_logits(logits_fn: LogitsFn, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    import tensorflow as tf

    fn = tf.function(lambda xb: logits_fn(xb, False), reduce_retracing=True)
    parts = [np.asarray(fn(tf.constant(x[i:i + batch_size]))) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0)


# ---------------------------------------------------------------- parameters every trainer has

def _params() -> tuple[Any, ...]:
    return (
        Param("epochs", int, 5, EPOCHS_HELP, at_least_one),
        Param("batch_size", int, 64, "training inputs per step", at_least_one),
        Param("learning_rate", float, 5e-4, "learning rate (fine-tuning from the input model)", positive),
        Param("optimizer", str, "adam", "adam, or sgd (plain SGD, no momentum: the study's train_step)",
              one_of("adam", "sgd")),
        Param("train_bn", bool, False,
              "batch-norm layers use batch statistics and update their moving averages while training "
              "(false: inference mode, only their scale/offset are trained)"),
        SEED,
    )


TRAIN_PARAMS = _params()

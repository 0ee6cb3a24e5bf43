"""Ensemble adversarial training (Tramèr et al. 2018): adversarial examples from static models too.

Ours.  Each training input is replaced (with probability adv_ratio, drawn per sample and step)
by an FGSM example of radius eps crafted on one source chosen uniformly at random among the
current model and the K static pre-trained models.  Static models never change, so their FGSM
examples are computed once over the training set.  Static models are given as model files
(`static_models`, paths to .keras/.h5; Keras model objects are accepted from Python); when none
are given, `num_static` are made: the undefended input model itself (frozen) and num_static - 1
clones of its architecture re-initialised with seeds seed+1, … and trained on the clean training
set for static_epochs — the same architecture, so transfer is optimistic compared with
Tramèr's different architectures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.core.errors import UserError
from host.defenses.base import Param, Trainer, at_least_one, in_range, non_negative, positive, register
from host.defenses.training import (
    TRAIN_PARAMS,
    clone_float_model,
    cross_entropy,
    fgsm_linf,
    fine_tune,
    keras_module,
    logits_function,
)
from host.quantization.quantize import load_float_keras


@register
class EnsembleAdversarialTraining(Trainer):
    name = "ensemble-at"
    description = "ensemble adversarial training: FGSM examples from the current model and static models"
    implementation = "ours: in-graph FGSM + Adam"
    params_spec = (
        Param("eps", float, 0.008, "L∞ radius of the FGSM examples, in input units", positive),
        Param("adv_ratio", float, 0.5, "fraction of inputs replaced by adversarial ones (Tramèr: 0.5)",
              in_range(0.0, 1.0)),
        Param("static_models", tuple, (), "static pre-trained models (paths); empty: make num_static"),
        Param("num_static", int, 2, "static models to make when none are given", at_least_one),
        Param("static_epochs", int, 0, "training epochs of each made static model (0: the same as epochs)",
              non_negative),
        *TRAIN_PARAMS,
    )

    def _train(self, float_model: Any, x: np.ndarray, y: np.ndarray, input_range: tuple[float, float],
               params: dict[str, Any]) -> Any:
        import tensorflow as tf

        statics = self._static_models(float_model, x, y, params)
        eps, ratio, train_bn = params["eps"], params["adv_ratio"], params["train_bn"]
        static_adv = np.stack([_fgsm_numpy(m, x, y, eps, input_range) for m in statics], axis=1)
        k = len(statics)

        model = clone_float_model(float_model)
        logits = logits_function(model)

        def prepare(xb: Any, yb: Any, seed: Any, static_b: Any) -> tuple[Any]:
            own = fgsm_linf(logits, xb, yb, eps=eps, input_range=input_range)
            n = tf.shape(xb)[0]
            source = tf.random.stateless_uniform([n], seed=seed, minval=0, maxval=k + 1, dtype=tf.int32)
            use_adv = tf.random.stateless_uniform([n], seed=seed + 1) < ratio
            picked = tf.gather(static_b, tf.minimum(source, k - 1), axis=1, batch_dims=1)
            mask_shape = tf.concat([[n], tf.ones(tf.rank(xb) - 1, tf.int32)], axis=0)
            adv = tf.where(tf.reshape(source == k, mask_shape), own, picked)
            return (tf.where(tf.reshape(use_adv, mask_shape), adv, xb),)

        def loss(xb: Any, yb: Any, static_b: Any, x_mixed: Any) -> Any:
            return cross_entropy(yb, logits(x_mixed, train_bn))

        return fine_tune(model, x, y, loss, prepare=prepare, aux=(static_adv,), epochs=params["epochs"],
                         batch_size=params["batch_size"], learning_rate=params["learning_rate"],
                         optimizer=params["optimizer"],
                         seed=params["seed"])

    def _static_models(self, float_model: Any, x: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> list[Any]:
        given = list(params["static_models"])
        if given:
            models = [load_float_keras(m) if isinstance(m, str) else m for m in given]
            for m in models:
                shape_in = tuple(m.inputs[0].shape[1:])
                shape_out = tuple(m.outputs[0].shape[1:])
                if shape_in != tuple(float_model.inputs[0].shape[1:]) or shape_out != tuple(
                        float_model.outputs[0].shape[1:]):
                    raise UserError(
                        f"defense '{self.name}': static model {getattr(m, 'name', m)} has input {shape_in} / "
                        f"output {shape_out}, the defended model {tuple(float_model.inputs[0].shape[1:])} / "
                        f"{tuple(float_model.outputs[0].shape[1:])}",
                    )
            return models
        keras = keras_module(float_model)
        models = [float_model]
        for i in range(1, params["num_static"]):
            keras.utils.set_random_seed(params["seed"] + i)
            fresh = keras.models.clone_model(float_model)  # new layers: freshly initialised weights
            fresh_logits = logits_function(fresh)
            fine_tune(fresh, x, y, lambda xb, yb, f=fresh_logits: cross_entropy(yb, f(xb, True)),
                      epochs=params["static_epochs"] or params["epochs"], batch_size=params["batch_size"],
                      learning_rate=max(params["learning_rate"], 1e-3), seed=params["seed"] + i, salt=3)
            models.append(fresh)
        return models


def _fgsm_numpy(model: Any, x: np.ndarray, y: np.ndarray, eps: float, input_range: tuple[float, float],
                batch_size: int = 256) -> np.ndarray:
    import tensorflow as tf

    logits = logits_function(model)
    fn = tf.function(lambda xb, yb: fgsm_linf(logits, xb, yb, eps=eps, input_range=input_range),
                     reduce_retracing=True)
    parts = [np.asarray(fn(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size])))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0).astype(np.float32)

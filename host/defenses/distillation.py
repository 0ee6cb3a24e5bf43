"""Defensive distillation (Papernot et al. 2016) at temperature T (study: T = 20).

Ours: ART's art.defences.transformer.evasion.DefensiveDistillation only does step 3 (fit a given
student classifier on a given classifier's probabilities); the temperature has to be built into
both models by the caller and the fit goes through ART's classifier wrappers, so the three steps
are written out here.
1. teacher: a clone of the input model fine-tuned at temperature T, i.e. on softmax(logits / T)
   with the hard labels, for teacher_epochs;
2. soft labels: softmax(teacher logits / T) on the training set;
3. student: a fresh clone of the input model (or of the teacher: student_from = "teacher", the
   study's) fine-tuned at temperature T on the soft labels (cross-entropy scaled by T², Hinton et
   al., so gradients keep their size), plus `alpha` × the hard labels' cross-entropy at T (the
   study's Distiller: alpha 0.1, the soft term weighted 1 − alpha), for epochs.
The returned student is the input architecture unchanged: it ends in the plain softmax (T = 1),
which is what Papernot deploys (its logits are about T times larger than at training time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from host.defenses.base import Param, Trainer, in_range, non_negative, one_of, positive, register
from host.defenses.training import (
    TRAIN_PARAMS,
    clone_float_model,
    cross_entropy,
    fine_tune,
    logits_function,
    predict_logits,
)


@register
class DefensiveDistillation(Trainer):
    name = "distillation"
    description = "defensive distillation: teacher and student trained at temperature T; student deployed at T=1"
    implementation = "ours: teacher and student fine-tuning at temperature T"
    params_spec = (
        Param("temperature", float, 20.0, "softmax temperature of teacher and student training (study: 20)",
              positive),
        Param("teacher_epochs", int, 0, "epochs of the teacher (0: the same as epochs)", non_negative),
        Param("alpha", float, 0.0, "weight of the hard-label loss beside the soft labels' (study: 0.1)",
              in_range(0.0, 1.0)),
        Param("student_from", str, "input", "the student starts from the input model's weights, or the "
              "teacher's (the study's)", one_of("input", "teacher")),
        *TRAIN_PARAMS,
    )

    def _train(self, float_model: Any, x: np.ndarray, y: np.ndarray, input_range: tuple[float, float],
               params: dict[str, Any]) -> Any:
        import tensorflow as tf

        t = params["temperature"]
        train_bn = params["train_bn"]
        common = dict(batch_size=params["batch_size"], learning_rate=params["learning_rate"], seed=params["seed"],
                      optimizer=params["optimizer"])

        teacher = clone_float_model(float_model)
        teacher_logits = logits_function(teacher)
        fine_tune(teacher, x, y, lambda xb, yb: cross_entropy(yb, teacher_logits(xb, train_bn) / t),
                  epochs=params["teacher_epochs"] or params["epochs"], salt=1, **common)
        soft = tf.nn.softmax(predict_logits(teacher_logits, x) / t).numpy().astype(np.float32)

        student = clone_float_model(teacher if params["student_from"] == "teacher" else float_model)
        student_logits = logits_function(student)
        alpha = params["alpha"]

        def loss(xb: Any, yb: Any, soft_b: Any) -> Any:
            z = student_logits(xb, train_bn) / t
            soft_loss = t * t * tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=soft_b, logits=z))
            return soft_loss if alpha == 0.0 else alpha * cross_entropy(yb, z) + (1.0 - alpha) * soft_loss

        return fine_tune(student, x, y, loss, aux=(soft,), epochs=params["epochs"], salt=2, **common)

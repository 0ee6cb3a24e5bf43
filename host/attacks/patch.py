"""Adversarial patch (Brown et al. 2017): one universal patch trained on the float model, via ART.

generate(model, x, y) trains a targeted patch on x (expectation over random placement, scale and
rotation) and returns x with the patch pasted in (a seeded random placement per input).  Not
ε-bounded: the patch replaces pixels outright (norm "patch"; there is no eps parameter).  The
trained patch is kept in `attack.patch` (and its mask in `attack.patch_mask`).
"""

from __future__ import annotations

import numpy as np

from host.attacks.base import SEED, Attack, Param, at_least_one, in_range, non_negative, positive, register
from host.attacks.common import art_evasion
from host.attacks.target import FloatModel
from host.errors import UserError


@register
class Patch(Attack):
    name = "patch"
    threat_model = "white-box"
    norm = "patch"
    bounded = False
    description = "universal adversarial patch toward a target class, trained on the inputs (ART AdversarialPatch)"
    art_class = "AdversarialPatch (TensorFlowV2)"
    params_spec = (
        Param("target", int, 0, "class the patch pushes every input to", non_negative),
        Param("scale", float, 0.4, "patch size as a fraction of the image side, when applied", in_range(0, 1, True)),
        Param("scale_min", float, 0.3, "smallest training scale", in_range(0, 1, True)),
        Param("scale_max", float, 0.5, "largest training scale", in_range(0, 1, True)),
        Param("rotation_max", float, 22.5, "largest training rotation, degrees", in_range(0, 180)),
        Param("max_iter", int, 500, "training steps", at_least_one),
        Param("learning_rate", float, 5.0, "training step size", positive),
        SEED,
        Param("batch_size", int, 16, "training batch size", at_least_one),
    )

    @property
    def target_class(self) -> int:
        return int(self.params["target"])

    def _check_params(self) -> None:
        if self.params["scale_min"] > self.params["scale_max"]:
            raise UserError("attack 'patch': scale_min must be <= scale_max")

    def _check_inputs(self, target: FloatModel, x: np.ndarray) -> None:
        if self.params["target"] >= target.num_classes:
            raise UserError(f"attack 'patch': target={self.params['target']} but the model has "
                            f"{target.num_classes} classes")
        if x.ndim != 4:
            raise UserError(f"attack 'patch' needs NHWC images, got inputs of shape {x.shape[1:]}")

    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        attack = art_evasion("AdversarialPatch")(
            model.art_classifier(), rotation_max=p["rotation_max"], scale_min=p["scale_min"],
            scale_max=p["scale_max"], learning_rate=p["learning_rate"], max_iter=p["max_iter"],
            batch_size=p["batch_size"], patch_shape=tuple(x.shape[1:]), targeted=True, verbose=False,
        )
        self.patch, self.patch_mask = attack.generate(x, y=np.full(len(x), p["target"]))
        self._seed_rngs()  # placement is random: the same seed gives the same placements
        return attack.apply_patch(x, scale=p["scale"])

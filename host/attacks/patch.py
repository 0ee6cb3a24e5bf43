"""Adversarial patch (Brown et al. 2017): one universal patch trained on the float model, via ART.

generate(model, x, y) trains a targeted patch on x (expectation over random placement, scale and
rotation) and returns x with the patch pasted in (a seeded random placement per input).  Not
ε-bounded: the patch replaces pixels outright (norm "patch"; there is no eps parameter).  The
trained patch is kept in `attack.patch` (and its mask in `attack.patch_mask`).

ART 1.20's TensorFlow placement (`_random_overlay`) shrinks the patch and its circular mask with
`fill_mode="REFLECT"`, so the reflections tile them over the whole image: every "patched" image
was all patch.  Training and pasting here use our placement, `overlay`: the same random scale,
rotation and shift, with nothing outside the one disk.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from host.attacks.base import SEED, Attack, Param, at_least_one, in_range, non_negative, positive, register
from host.attacks.common import art_evasion
from host.attacks.target import FloatModel
from host.core.errors import UserError


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
        base = art_evasion("AdversarialPatchTensorFlowV2")

        class DiskPatch(base):  # type: ignore[misc, valid-type]
            def _random_overlay(self, images: Any, patch: Any, scale: float | None = None,
                                mask: Any = None) -> Any:
                return overlay(images, patch, self.scale_min, self.scale_max, self.rotation_max, scale)

        attack = DiskPatch(
            model.art_classifier(), rotation_max=p["rotation_max"], scale_min=p["scale_min"],
            scale_max=p["scale_max"], learning_rate=p["learning_rate"], max_iter=p["max_iter"],
            batch_size=p["batch_size"], patch_shape=tuple(x.shape[1:]), targeted=True, verbose=False,
        )
        self.patch, self.patch_mask = attack.generate(x, y=np.full(len(x), p["target"]))
        self._seed_rngs()  # placement is random: the same seed gives the same placements
        return attack.apply_patch(x, scale=p["scale"])


def disk_mask(side: int) -> np.ndarray:
    """(side, side, 1): 1 inside the disk inscribed in the square, 0 outside (ART's circular mask, sharpened)."""
    centres = (np.arange(side) + 0.5) / side * 2.0 - 1.0
    return (centres[None, :] ** 2 + centres[:, None] ** 2 <= 1.0).astype(np.float32)[:, :, None]


def placement(height: int, width: int, scale: float, angle: float, shift_x: float, shift_y: float) -> list[float]:
    """ImageProjectiveTransformV3's 8 numbers (output pixel -> patch pixel) that shrink a patch the
    size of the image by `scale`, turn it by `angle` (radians) about the centre and move it by the shift."""
    cx, cy = width / 2.0, height / 2.0
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    ox, oy = cx + shift_x, cy + shift_y  # where the patch centre lands
    return [cos, sin, cx - cos * ox - sin * oy, -sin, cos, cy + sin * ox - cos * oy, 0.0, 0.0]


def overlay(images: Any, patch: Any, scale_min: float, scale_max: float, rotation_max: float,
            scale: float | None = None) -> Any:
    """Images with the patch's disk pasted at a random scale (`scale`, else uniform in
    [scale_min, scale_max]), rotation (±rotation_max degrees) and shift that keeps the disk inside;
    differentiable in `patch`. Draws from NumPy's global generator, as ART does."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    n, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    patch = tf.image.resize(tf.cast(patch, images.dtype)[None], (height, width))
    mask = tf.image.resize(disk_mask(min(height, width))[None], (height, width))
    transforms = []
    for _ in range(n):
        s = float(np.random.uniform(scale_min, scale_max)) if scale is None else scale
        angle = math.radians(float(np.random.uniform(-rotation_max, rotation_max)))
        room_x, room_y = width * (1.0 - s) / 2.0, height * (1.0 - s) / 2.0
        transforms.append(placement(height, width, s, angle, float(np.random.uniform(-room_x, room_x)),
                                    float(np.random.uniform(-room_y, room_y))))
    transforms = tf.constant(transforms, tf.float32)

    def place(image: Any) -> Any:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.repeat(image, n, axis=0), transforms=transforms, output_shape=[height, width],
            interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.0)

    placed_mask = tf.cast(place(mask), images.dtype)
    return images * (1.0 - placed_mask) + tf.cast(place(patch), images.dtype) * placed_mask

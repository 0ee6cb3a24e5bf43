"""PixelDefend (Song et al. 2018): move each sub-pixel, within ±eps levels, to its most likely level.

The study's sixth defense (artifact QNN-Defenses/run_pixel_defend_cifar.sh: PD_EPS=38, l. 7; ART's
PixelDefend with clip_values (0, 1), pixel_defend_float.py l. 67).  This is ART 1.20's
`PixelDefend.__call__`, vectorised: ART computes the PixelCNN's distribution once per input, from
the input as given; turns the input into levels by truncation, `uint8(x·255)`; and for every
sub-pixel picks the level of highest probability in [level − eps, level + eps] ∩ [0, 255] (the
first on ties), then divides by 255.  Ours does the same with NumPy over whole images instead of
ART's Python loops (3072 sub-pixels × up to 77 levels per CIFAR image), and is tested equal to
ART's on a real PixelCNN (tests/defenses/test_pixel_defend.py).

The PixelCNN is a checkpoint trained by `python -m host.defenses.train_pixelcnn` (host/defenses/pixelcnn.py);
`pixelcnn` names it, relative to the config.  Inputs in another range [lo, hi] are mapped onto
[0, 1] and back.  Quantized models see quantize(purified x); there is no firmware stage (a
PixelCNN pass is billions of operations per image).

Imports: host.core, host.defenses.base, host.defenses.pixelcnn; TensorFlow inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from host.defenses.base import Param, Preprocessor, UserError, at_least_one, in_range, register
from host.defenses.pixelcnn import load_pixelcnn, softmax_model

LEVELS = 256


def _checkpoint(value: str) -> str | None:
    """Empty is allowed here (the registry lists defaults); a study or apply() requires it."""
    return None if not value or value.endswith(".keras") else f"{value!r} is not a .keras file"


NO_CHECKPOINT_HINT = ('give pixelcnn = "FILE.keras"; python -m host.defenses.train_pixelcnn --data IMAGES.npz '
                      '--out FILE.keras trains one')


@register
class PixelDefend(Preprocessor):
    name = "pixel-defend"
    description = "each sub-pixel moved within ±eps levels to its most likely level under a PixelCNN"
    implementation = "ART PixelDefend's algorithm, vectorised (ours; tested equal to ART)"
    file_params = ("pixelcnn",)
    params_spec = (
        Param("pixelcnn", str, "", "the PixelCNN checkpoint (.keras; required), relative to the config; "
              "python -m host.defenses.train_pixelcnn --data IMAGES.npz --out FILE.keras trains one", _checkpoint),
        Param("eps", int, 38, "how far each sub-pixel may move, in levels of 255 (study: 38)", in_range(0, 255)),
        Param("batch_size", int, 16, "images per PixelCNN pass", at_least_one),
    )

    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        unit = x if (lo, hi) == (0.0, 1.0) else ((x - lo) / (hi - lo)).astype(np.float32)
        probabilities = self.probabilities_function(tuple(x.shape[1:]))
        parts = []
        for start in range(0, len(unit), self.params["batch_size"]):
            batch = unit[start:start + self.params["batch_size"]]
            parts.append(purify(batch, probabilities(batch), self.params["eps"]))
        out = np.concatenate(parts) if parts else unit.copy()
        return out if (lo, hi) == (0.0, 1.0) else lo + out * (hi - lo)

    def probabilities_function(self, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """x in [0, 1] -> the PixelCNN's softmax over the 256 levels of every sub-pixel (float32)."""
        if getattr(self, "_probabilities", None) is None:
            model = softmax_model(self._load(input_shape))
            self._probabilities = lambda batch: model(batch, training=False).numpy().astype(np.float32)
        return self._probabilities

    def check_inputs(self, input_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """Before long work: the checkpoint loads and models these images (UserError otherwise)."""
        self._load(input_shape)

    def _load(self, input_shape: tuple[int, ...]) -> Any:
        if not self.params["pixelcnn"]:
            raise UserError("defense 'pixel-defend' needs its PixelCNN checkpoint", hint=NO_CHECKPOINT_HINT)
        return load_pixelcnn(Path(self.params["pixelcnn"]), input_shape)


def purify(x: np.ndarray, probabilities: np.ndarray, eps: int) -> np.ndarray:
    """ART PixelDefend on a batch x in [0, 1], given its PixelCNN probabilities (..., 256)."""
    x = np.asarray(x)
    level = (x * 255).astype("uint8").reshape(len(x), -1).astype(np.int32)      # ART: truncation
    probs = np.asarray(probabilities).reshape(len(x), -1, LEVELS)
    candidates = np.arange(LEVELS, dtype=np.int32)
    inside = ((candidates >= level[..., None] - eps) & (candidates <= level[..., None] + eps))
    best = np.argmax(np.where(inside, probs, -np.inf), axis=-1)                  # first of equal maxima
    out = best.astype("uint8") / 255.0
    return np.clip(out.astype(np.float32).reshape(x.shape), 0.0, 1.0)


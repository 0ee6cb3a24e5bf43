"""JPEG compression (Dziugaite et al. 2016; Das et al. 2017): encode and decode every image.

Ours, not ART's JpegCompression, because ART's (1.20) converts to 8 bits by truncation —
(x * 255).astype(uint8) — so every value between two 8-bit levels (any adversarial example)
goes to the lower one (51.9/255 -> 51, a bias of -0.5 level on average), and it accepts only
the ranges [0, 1] and [0, 255].
Here pixels are mapped from the input range onto 0..255 with rounding, encoded with Pillow
(libjpeg, baseline, 4:2:0 chroma subsampling for RGB) at `quality`, decoded and mapped back.
3-channel images are compressed as RGB, any other channel count channel by channel as
grayscale ("L") — the same convention as ART.  Deterministic (libjpeg is).
"""

from __future__ import annotations

from io import BytesIO

import numpy as np

from host.defenses.base import Param, Preprocessor, in_range, register


@register
class JpegCompression(Preprocessor):
    name = "jpeg"
    description = "JPEG encode/decode at a quality level (8-bit pixels over the input range)"
    implementation = "ours: Pillow JPEG (ART's JpegCompression truncates to 8 bits, ranges [0,1]/[0,255] only)"
    params_spec = (
        Param("quality", int, 50, "JPEG quality 1..95 (ART's default 50)", in_range(1, 95)),
    )

    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        from PIL import Image

        pixels = np.clip(np.rint((x.astype(np.float64) - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
        out = np.empty_like(pixels)
        quality = self.params["quality"]

        def roundtrip(image: np.ndarray, mode: str) -> np.ndarray:
            buffer = BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                return np.asarray(decoded.convert(mode))

        for n in range(len(pixels)):
            if pixels.shape[-1] == 3:
                out[n] = roundtrip(pixels[n], "RGB")
            else:
                for c in range(pixels.shape[-1]):
                    out[n, :, :, c] = roundtrip(np.ascontiguousarray(pixels[n, :, :, c]), "L")
        return lo + out.astype(np.float64) / 255.0 * (hi - lo)

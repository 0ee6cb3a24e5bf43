"""Feature squeezing by bit depth (Xu et al. 2018), via ART's FeatureSqueezing.

Every value is mapped onto 2**bit_depth evenly spaced levels across the input range:
x' = lo + rint((x - lo) / (hi - lo) · M) / M · (hi - lo), M = 2**bit_depth - 1 (rint: half to
even).  The study squeezes int8 models' inputs to 8 bits; lower depths remove more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from host.attacks.target import import_art
from host.defenses.base import Param, Preprocessor, check_input_range, in_range, register
from host.engine.integer import squeeze_bits_quantized
from host.engine.preprocess import PARAM_RANGES, ChipStage


@register
class FeatureSqueezing(Preprocessor):
    name = "feature-squeezing"
    description = "bit-depth reduction to 2**bit_depth levels over the input range"
    implementation = "ART FeatureSqueezing"
    has_integer_reference = True
    params_spec = (
        Param("bit_depth", int, 8, "bits per value after squeezing (study: 8 for int8 models)", in_range(1, 30)),
    )

    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        squeezer = import_art("art.defences.preprocessor").FeatureSqueezing(
            clip_values=(lo, hi), bit_depth=self.params["bit_depth"], apply_fit=False, apply_predict=True,
        )
        return squeezer(x)[0]

    def apply_quantized(
        self, q: np.ndarray, scale: float, zero_point: int, input_range: Sequence[float] = (0.0, 1.0),
    ) -> np.ndarray:
        """squeeze_bits_quantized: the integer definition (docs/defenses.md)."""
        check_input_range(input_range, self.name)
        return squeeze_bits_quantized(q, self.params["bit_depth"], scale, zero_point, input_range)

    def chip_stage(self) -> ChipStage | None:
        """squeeze:bits (the firmware takes 1..16 bits)."""
        bits = self.params["bit_depth"]
        return ChipStage("squeeze", bits) if bits <= PARAM_RANGES["squeeze"][1] else None

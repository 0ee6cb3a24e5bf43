"""The study's feature squeezer: bit depth or a 2x2 median, whichever changes the input more.

Costa & Pinto's feature-squeezing runs (artifact QNN-Defenses/run_feature_squeezing_cifar.sh) give
each input ONE squeezed version: both squeezers run, and the input keeps the one farther from it
(here: the larger L1 change, per input).  Their bit depth is 4 for the float model
(FT_COLOR_BIT_FLOAT) and the input tensor's own width for the quantized ones (8 for int8, 16 for
int16x8): on a quantized input the bit-depth step is then the identity (it changes nothing), so
there the squeezer is always the median.

So this defense has two definitions, like the study:
* float inputs (the float model): `apply`, per input the farther of feature-squeezing(bit_depth)
  and median-smoothing(window) (ART FeatureSqueezing and SpatialSmoothing; ties keep the squeeze);
* quantized inputs (int8, int16x8 models, host and chip): `apply_quantized`, the median filter on
  the integers (median-smoothing's integer definition), and its firmware stage median:window.
The study's host runs feed the quantized models `apply_quantized(quantize(x))`, not
`quantize(apply(x))` (`acts_on_quantized_input`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from host.defenses.base import Param, Preprocessor, at_least_one, check_input_range, in_range, register
from host.defenses.feature_squeezing import FeatureSqueezing
from host.defenses.median_smoothing import MedianSmoothing
from host.engine.preprocess import ChipStage


@register
class CombinedSqueezing(Preprocessor):
    name = "combined-squeezing"
    description = ("the study's feature squeezer: per input, the bit-depth squeeze or the median, whichever "
                   "changes it more (float); the median on quantized inputs")
    implementation = "ART FeatureSqueezing + SpatialSmoothing, chosen per input (ours)"
    has_integer_reference = True
    acts_on_quantized_input: ClassVar[bool] = True
    params_spec = (
        Param("bit_depth", int, 4, "bits per value of the float model's squeeze (study: 4)", in_range(1, 30)),
        Param("window", int, 2, "median window in pixels (study: 2)", at_least_one),
    )

    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        squeezed = FeatureSqueezing(bit_depth=self.params["bit_depth"]).apply(x, (lo, hi))
        smoothed = MedianSmoothing(window=self.params["window"]).apply(x, (lo, hi))
        return farther_per_input(x, squeezed, smoothed)

    def apply_quantized(
        self, q: np.ndarray, scale: float, zero_point: int, input_range: Sequence[float] = (0.0, 1.0),
    ) -> np.ndarray:
        """The median on the integers: the bit-depth step at the tensor's own width changes nothing."""
        check_input_range(input_range, self.name)
        return MedianSmoothing(window=self.params["window"]).apply_quantized(q, scale, zero_point, input_range)

    def chip_stage(self) -> ChipStage | None:
        return MedianSmoothing(window=self.params["window"]).chip_stage()


def farther_per_input(x: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per input (axis 0), `first` or `second`, whichever has the larger L1 distance to x (ties: first)."""
    def change(y: np.ndarray) -> np.ndarray:
        return np.abs(y.astype(np.float64) - x).reshape(len(x), -1).sum(axis=1)

    pick_second = change(second) > change(first)
    return np.where(pick_second.reshape((-1,) + (1,) * (x.ndim - 1)), second, first)

"""Median smoothing (the study's feature-squeezing median filter, window 2) and spatial smoothing.

Both use ART's SpatialSmoothing = scipy.ndimage.median_filter per image and channel with a
window × window footprint and mode "reflect".  Window 2 (the study's "median 2", as in Xu et
al.'s 2x2 median) is an even window: it covers the pixel and its upper, left and upper-left
neighbours (offsets {-1, 0} on each axis) and returns the UPPER of the two middle values of
the 4 (rank 2, 0-based), not their mean — so the output is always one of the input values.

spatial-smoothing is the general filter: window 3 by default (ART's default) and either the
median (ART) or the mean over the same footprint (ours, scipy.ndimage.uniform_filter, same
border handling; ART has no mean filter).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from host.attacks.target import import_art
from host.defenses.base import Param, Preprocessor, UserError, at_least_one, check_input_range, one_of, register
from host.engine.integer import median_filter_quantized
from host.engine.preprocess import PARAM_RANGES, ChipStage


def _median_stage(window: int) -> ChipStage | None:
    """median:window (the firmware takes windows 1..5)."""
    return ChipStage("median", window) if window <= PARAM_RANGES["median"][1] else None


def _art_median(x: np.ndarray, window: int, lo: float, hi: float) -> np.ndarray:
    smoother = import_art("art.defences.preprocessor").SpatialSmoothing(
        window_size=window, channels_first=False, clip_values=(lo, hi), apply_fit=False, apply_predict=True,
    )
    return smoother(x)[0]


@register
class MedianSmoothing(Preprocessor):
    name = "median-smoothing"
    description = "median filter per channel over a window x window footprint (study: window 2)"
    implementation = "ART SpatialSmoothing"
    has_integer_reference = True
    params_spec = (
        Param("window", int, 2, "window size in pixels (2: the study's 2x2 median)", at_least_one),
    )

    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return _art_median(x, self.params["window"], lo, hi)

    def apply_quantized(
        self, q: np.ndarray, scale: float, zero_point: int, input_range: Sequence[float] = (0.0, 1.0),
    ) -> np.ndarray:
        """The same rank filter on the integers (exact: the median commutes with quantization)."""
        check_input_range(input_range, self.name)
        return median_filter_quantized(q, self.params["window"])

    def chip_stage(self) -> ChipStage | None:
        return _median_stage(self.params["window"])


@register
class SpatialSmoothing(Preprocessor):
    name = "spatial-smoothing"
    description = "local median (ART) or mean (ours) filter per channel, window x window, reflected borders"
    implementation = "ART SpatialSmoothing (median); ours: scipy uniform_filter (mean)"
    params_spec = (
        Param("window", int, 3, "window size in pixels", at_least_one),
        Param("filter", str, "median", "median or mean", one_of("median", "mean")),
    )

    @property
    def has_integer_reference(self) -> bool:  # type: ignore[override]
        return self.params["filter"] == "median"

    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        window = self.params["window"]
        if self.params["filter"] == "median":
            return _art_median(x, window, lo, hi)
        from scipy.ndimage import uniform_filter

        return uniform_filter(x.astype(np.float64), size=(1, window, window, 1), mode="reflect")

    def apply_quantized(
        self, q: np.ndarray, scale: float, zero_point: int, input_range: Sequence[float] = (0.0, 1.0),
    ) -> np.ndarray:
        if self.params["filter"] != "median":
            raise UserError(
                "defense 'spatial-smoothing': the mean filter has no exact integer definition here "
                "(its rounding would be a firmware choice)",
                hint="use filter=median, or median-smoothing",
            )
        check_input_range(input_range, self.name)
        return median_filter_quantized(q, self.params["window"])

    def chip_stage(self) -> ChipStage | None:
        return _median_stage(self.params["window"]) if self.params["filter"] == "median" else None

"""The firmware pre-processing stage (firmware/runtime/preprocess.c): which one, its build defines,
and the host-side integer reference it must match bit for bit.

    stage = parse_stage("squeeze:4")                      # or "median:2"; make flash PREPROCESS=...
    defines = stage.defines(compiled.inputs[0], (0.0, 1.0))   # -D flags for host.engine.build
    q_ref = stage.reference(q, compiled.inputs[0], (0.0, 1.0))  # what the chip feeds the engine

The stage runs on the model's first input tensor (int8 or int16), in place, before the engine; the
device reports its ticks separately from the inference's (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from host.compiler.types import TensorInfo
from host.core.errors import UserError
from host.engine.integer import grid_range, median_filter_quantized, squeeze_bits_quantized

KIND_CODES = {"squeeze": 1, "median": 2}        # TM_PRE_* in preprocess.h, the INFO field
PARAM_RANGES = {"squeeze": (1, 16), "median": (1, 5)}
STAGE_DTYPES = ("int8", "int16")
FORMAT_HINT = "write squeeze:BITS (1..16) or median:WINDOW (1..5), e.g. squeeze:4 or median:2"


@dataclass(frozen=True)
class ChipStage:
    kind: str        # "squeeze" | "median"
    param: int       # bits | window

    def __post_init__(self) -> None:
        if self.kind not in KIND_CODES:
            raise UserError(f"unknown pre-processing stage '{self.kind}'", hint=FORMAT_HINT)
        lo, hi = PARAM_RANGES[self.kind]
        if not lo <= self.param <= hi:
            raise UserError(f"pre-processing stage {self.kind}: parameter {self.param} outside {lo}..{hi}",
                            hint=FORMAT_HINT)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.param}"

    @property
    def code(self) -> int:
        return KIND_CODES[self.kind]

    def check_input(self, tensor: TensorInfo) -> None:
        if tensor.dtype not in STAGE_DTYPES:
            raise UserError(f"pre-processing stage {self.label}: the model's input is {tensor.dtype}, "
                            "the stage works on int8 or int16 inputs")
        if self.kind == "median" and len(tensor.shape) != 4:
            raise UserError(f"pre-processing stage {self.label}: the model's input has shape {tensor.shape}, "
                            "the median filter needs NHWC images")

    def defines(self, tensor: TensorInfo, input_range: Sequence[float] = (0.0, 1.0)) -> dict[str, str]:
        """The -D flags of preprocess.c for this model input."""
        self.check_input(tensor)
        defines = {"TM_PREPROCESS": str(self.code), "TM_PREPROCESS_PARAM": str(self.param)}
        if self.kind == "squeeze":
            q_lo, q_hi = grid_range(tensor.scale, tensor.zero_point, input_range, tensor.dtype)
            defines.update(TM_PREPROCESS_Q_LO=f"({q_lo})", TM_PREPROCESS_Q_HI=f"({q_hi})")
        else:
            _, _, width, channels = tensor.shape
            rows = self.param // 2 + 1
            defines["TM_PREPROCESS_RING_BYTES"] = f"{rows * width * channels * np.dtype(tensor.dtype).itemsize}u"
        return defines

    def ram_bytes(self, tensor: TensorInfo) -> int:
        """Static RAM the stage adds (the median's row ring)."""
        if self.kind != "median" or len(tensor.shape) != 4:
            return 0
        return (self.param // 2 + 1) * tensor.shape[2] * tensor.shape[3] * np.dtype(tensor.dtype).itemsize

    def reference(self, q: np.ndarray, tensor: TensorInfo, input_range: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
        """host/engine/integer.py on a batch (or one sample) of this input: the bytes the engine sees."""
        q = np.asarray(q, dtype=tensor.dtype)
        batch = q.reshape((-1, *tensor.shape[1:])) if q.shape != tuple(tensor.shape) else q
        if self.kind == "squeeze":
            out = squeeze_bits_quantized(batch, self.param, tensor.scale, tensor.zero_point, input_range)
        else:
            out = median_filter_quantized(batch, self.param)
        return out.reshape(q.shape)


def parse_stage(text: str | ChipStage | None) -> ChipStage | None:
    """'squeeze:4' / 'median:2' (also 'none' or '' for no stage)."""
    if text is None or isinstance(text, ChipStage):
        return text
    text = text.strip().lower()
    if text in ("", "none"):
        return None
    kind, sep, value = text.partition(":")
    if not sep or not value.strip().isdigit():
        raise UserError(f"pre-processing stage {text!r}: expected KIND:N", hint=FORMAT_HINT)
    return ChipStage(kind.strip(), int(value))


def kind_name(code: int) -> str | None:
    """The stage kind of an INFO code (None for 0, no stage)."""
    return next((k for k, c in KIND_CODES.items() if c == code), None if code == 0 else f"stage{code}")

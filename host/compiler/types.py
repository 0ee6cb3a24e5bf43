"""What the model compiler produces: C sources plus the facts the host needs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from host.compiler.planner import plan_scratch

if TYPE_CHECKING:
    from host.compiler.scratch import OpScratch

# Wire/engine dtype codes (firmware/engine/tm_engine.h, docs/protocol.md).
DTYPE_CODES: dict[str, int] = {
    "int8": 0, "int16": 1, "int32": 2, "float32": 3, "int64": 4, "uint8": 5,
}
DTYPE_NAMES: dict[int, str] = {code: name for name, code in DTYPE_CODES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as the device sees it."""

    name: str
    dtype: str                 # numpy dtype name: "int8", "int16", "float32", ...
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float values -> this tensor's integer type (TFLite's rounding: half away from 0)."""
        if self.dtype == "float32":
            return np.asarray(x, dtype=np.float32)
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return np.asarray(q, dtype=np.float32)
        return (np.asarray(q, dtype=np.float64) - self.zero_point) * self.scale


@dataclass
class CompiledModel:
    """A .tflite model lowered to C for the engine in firmware/engine."""

    name: str
    sha256: bytes                      # of the .tflite file
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: list[str]                     # TFLite op names, in execution order
    arena_bytes: int                   # planned activation arena
    weights_bytes: int                 # constant data placed in flash
    c_source: str                      # model.c
    files: dict[str, str] = field(default_factory=dict)  # extra generated files
    op_scratch: list[OpScratch] = field(default_factory=list)  # per op: its kernels' scratch (stack) bytes
    # flash bytes model.c holds only in builds where a macro of tm_kernel_table.h is set (macro -> bytes)
    guarded_bytes: dict[str, int] = field(default_factory=dict)
    cut_channels: int = 0              # dead channels the compiler removed (host/compiler/prune.py)

    def scratch_bytes(self, features: tuple[str, ...] | list[str]) -> int:
        """The most scratch any op's kernel holds on a core with `features` (host.engine.build.cpu_features:
        "mve", "dsp", "fpu"; () for the portable kernels): stack the kernels need besides their frames."""
        return plan_scratch(self.op_scratch, features)[0]

    def write(self, out_dir: Path) -> Path:
        """Write model.c into out_dir; returns its path."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.c"
        path.write_text(self.c_source)
        for name, text in self.files.items():
            (out_dir / name).write_text(text)
        return path

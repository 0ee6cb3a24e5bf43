"""Inputs for a model check: random tensors of the model's input types, or samples of an .npz.

Imports: host.core, host.compiler.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from host.compiler import CompiledModel, TensorInfo
from host.core.errors import UserError


def random_inputs(infos: list[TensorInfo], count: int, seed: int) -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield [_random_tensor(rng, info) for info in infos]


def _random_tensor(rng: np.random.Generator, info: TensorInfo) -> np.ndarray:
    if info.dtype == "float32":
        return rng.standard_normal(info.shape).astype(np.float32)
    limits = np.iinfo(info.dtype)
    return rng.integers(limits.min, int(limits.max) + 1, size=info.shape).astype(info.dtype)


def npz_inputs(path: Path, infos: list[TensorInfo],
               input_range: tuple[float, float] = (0.0, 1.0)) -> Iterator[list[np.ndarray]]:
    """Inputs from an .npz: arrays named like the model inputs, or x / the first array.

    Float data is quantized with the input's scale and zero point; uint8 images
    (e.g. CIFAR-10) are first mapped from 0..255 onto `input_range`."""
    if not path.exists():
        raise UserError(f"inputs file not found: {path}", hint="use --inputs random:N or an existing .npz")
    with np.load(path) as data:
        arrays = [data[info.name] if info.name in data else data["x" if "x" in data else data.files[0]]
                  for info in infos]
    arrays = [_scale_uint8(a, input_range) if a.dtype == np.uint8 and info.dtype != "uint8" else a
              for a, info in zip(arrays, infos, strict=True)]
    samples = len(arrays[0])
    for array, info in zip(arrays, infos, strict=True):
        if tuple(array.shape[1:]) != info.shape[1:] and tuple(array.shape[1:]) != info.shape:
            raise UserError(f"{path}: array shape {array.shape} does not fit input {info.name} {info.shape}")
    for k in range(samples):
        yield [_as_input(array[k], info) for array, info in zip(arrays, infos, strict=True)]


def _scale_uint8(images: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    lo, hi = input_range
    return (images.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32)


def _as_input(sample: np.ndarray, info: TensorInfo) -> np.ndarray:
    if np.issubdtype(sample.dtype, np.floating) and info.dtype != "float32":
        sample = info.quantize(sample)  # float data for a quantized input
    return np.asarray(sample, dtype=info.dtype).reshape(info.shape)


def parse_inputs(spec: str, model: CompiledModel, seed: int, input_range: tuple[float, float] = (0.0, 1.0),
                 limit: int | None = None) -> tuple[Iterator[list[np.ndarray]], int]:
    if spec.startswith("random:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            count = 0
        if count <= 0:
            raise UserError(f"bad --inputs {spec!r}", hint="random:N with N >= 1, or a .npz file")
        return random_inputs(model.inputs, count, seed), count
    path = Path(spec)
    with np.load(path) if path.exists() else _missing(path) as data:
        count = len(data[data.files[0]])
    if limit is not None:
        count = min(count, limit)
    return itertools.islice(npz_inputs(path, model.inputs, input_range), count), count


def _missing(path: Path):  # noqa: ANN202
    raise UserError(f"inputs file not found: {path}", hint="use --inputs random:N or an existing .npz")


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--input-range {text!r}: expected LO,HI such as 0,1 or 0,255") from None
    if not lo < hi:
        raise UserError(f"--input-range {text!r}: LO must be below HI")
    return lo, hi

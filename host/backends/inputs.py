"""Inputs for a model check: random tensors of the model's input types, or samples of an .npz.

Imports: host.core, host.compiler.
"""

from __future__ import annotations

import zipfile
import zlib
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


NPZ_HINT = "save numeric samples with np.savez(path, x=samples), or use --inputs random:N"


def npz_inputs(path: Path, infos: list[TensorInfo], input_range: tuple[float, float] = (0.0, 1.0),
               limit: int | None = None) -> tuple[Iterator[list[np.ndarray]], int]:
    """Inputs from an .npz: arrays named like the model inputs, or x / the first array; and how many
    (at most `limit`). The file is read and checked here, before anything is built or booted.

    Float data is quantized with the input's scale and zero point; uint8 images
    (e.g. CIFAR-10) are first mapped from 0..255 onto `input_range`."""
    named = _read_npz(path, infos)
    for (name, array), info in zip(named, infos, strict=True):
        _check_array(path, name, array, info)
    count = _sample_count(path, named)
    count = count if limit is None else min(count, limit)
    arrays = [_prepared(a[:count], info, input_range) for (_, a), info in zip(named, infos, strict=True)]
    return _samples(arrays, infos, count), count


def _read_npz(path: Path, infos: list[TensorInfo]) -> list[tuple[str, np.ndarray]]:
    """(name, array) for each model input."""
    if not path.exists():
        raise UserError(f"inputs file not found: {path}", hint="use --inputs random:N or an existing .npz")
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it
        raise UserError(f"{path}: not an .npz file (np.savez writes a zip of arrays)", hint=NPZ_HINT)
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [_array_name(path, data.files, info) for info in infos]
            return [(name, data[name]) for name in names]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise UserError(f"{path}: not a readable .npz file ({err})", hint=NPZ_HINT) from None


def _array_name(path: Path, files: list[str], info: TensorInfo) -> str:
    for name in (info.name, "x"):
        if name in files:
            return name
    if not files:
        raise UserError(f"{path}: the .npz holds no arrays", hint=NPZ_HINT)
    return files[0]


def _check_array(path: Path, name: str, array: np.ndarray, info: TensorInfo) -> None:
    if array.dtype.kind not in "biuf":  # strings, dates, records: nothing to quantize
        raise UserError(f"{path}: array {name!r} holds {array.dtype} values, not numbers",
                        hint=f"inputs are floats (quantized with the model's scale) or {info.dtype}")
    if array.ndim == 0 or (tuple(array.shape[1:]) != info.shape[1:] and tuple(array.shape[1:]) != info.shape):
        raise UserError(f"{path}: array shape {array.shape} does not fit input {info.name} {info.shape}")
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        raise UserError(f"{path}: array {name!r} holds NaN or infinite values", hint=NPZ_HINT)
    scaled = array.dtype == np.uint8 and info.dtype != "uint8"   # images 0..255, mapped onto the input range
    if array.dtype.kind in "iu" and not scaled and np.issubdtype(np.dtype(info.dtype), np.integer) and array.size:
        limits = np.iinfo(np.dtype(info.dtype))
        if array.min() < limits.min or array.max() > limits.max:   # they would wrap around silently
            raise UserError(f"{path}: array {name!r} holds {array.min()}..{array.max()}, outside {info.dtype}'s "
                            f"{limits.min}..{limits.max}", hint="give the model's own integers, or floats")


def _sample_count(path: Path, named: list[tuple[str, np.ndarray]]) -> int:
    """The samples of the input arrays themselves (not of a label array saved first)."""
    counts = {name: len(array) for name, array in named}
    if len(set(counts.values())) > 1:
        raise UserError(f"{path}: the input arrays hold different numbers of samples {counts}",
                        hint="give every input the same number of samples")
    name, count = next(iter(counts.items()))
    if count == 0:
        raise UserError(f"bad --inputs {str(path)!r}: array {name!r} holds no samples",
                        hint="a .npz with at least one sample, or random:N with N >= 1")
    return count


def _samples(arrays: list[np.ndarray], infos: list[TensorInfo], count: int) -> Iterator[list[np.ndarray]]:
    for k in range(count):
        yield [_as_input(array[k], info) for array, info in zip(arrays, infos, strict=True)]


def _prepared(array: np.ndarray, info: TensorInfo, input_range: tuple[float, float]) -> np.ndarray:
    return _scale_uint8(array, input_range) if array.dtype == np.uint8 and info.dtype != "uint8" else array


def _scale_uint8(images: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    lo, hi = input_range
    return (images.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32)


def _as_input(sample: np.ndarray, info: TensorInfo) -> np.ndarray:
    if np.issubdtype(sample.dtype, np.floating) and info.dtype != "float32":
        sample = info.quantize(sample)  # float data for a quantized input
    return np.asarray(sample, dtype=info.dtype).reshape(info.shape)


def spec_count(spec: str, hint: str) -> int:
    """N of an --inputs KIND:N (random:N, digits:N), refused unless a whole number >= 1."""
    try:
        count = int(spec.split(":", 1)[1])
    except ValueError:
        count = 0
    if count <= 0:
        raise UserError(f"bad --inputs {spec!r}", hint=hint)
    return count


def check_num(num: int | None) -> None:
    """--num N: None (all samples) or N >= 1, as random:N."""
    if num is not None and num < 1:
        raise UserError(f"bad --num {num}", hint="--num N with N >= 1: the first N samples of the .npz")


def parse_inputs(spec: str, model: CompiledModel, seed: int, input_range: tuple[float, float] = (0.0, 1.0),
                 limit: int | None = None) -> tuple[Iterator[list[np.ndarray]], int]:
    """The inputs of an --inputs spec (random:N or an .npz, its first `limit` samples) and their count."""
    check_num(limit)
    if spec.startswith("random:"):
        count = spec_count(spec, hint="random:N with N >= 1, or a .npz file")
        return random_inputs(model.inputs, count, seed), count
    return npz_inputs(Path(spec), model.inputs, input_range, limit)


def parse_range(text: str, option: str = "--input-range") -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{option} {text!r}: expected LO,HI such as 0,1 or 0,255") from None
    if not lo < hi:
        raise UserError(f"{option} {text!r}: LO must be below HI")
    return lo, hi

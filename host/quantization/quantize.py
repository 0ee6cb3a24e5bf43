"""Every precision of one float model: float (Keras, host), int16x8 and int8 (.tflite).

`quantize` converts with the TFLite converter on a batch-1 trace (every shape static),
`quantize_cached` keeps the result under build/quantized/ keyed by the model, the
representative set, the precision and the TensorFlow version, `experiment_models` gathers every
precision of a study. The command is `python -m host.quantize` (host/quantize.py, whose help
says what the conversion does); docs/quantize.md.

Imports: host.core, host.tflite, host.compiler, host.engine, host.backends; TensorFlow inside
functions only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.backends.backend import ModelIO
from host.compiler.ops import supported_ops
from host.core.errors import UserError
from host.core.files import write_bytes_whole, write_text_whole
from host.core.paths import BUILD_DIR
from host.core.quiet import import_tensorflow_quietly
from host.engine.reference import ReferenceInterpreter
from host.tflite.reader import ModelFormatError, parse_model, read_model_file

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PRECISIONS: tuple[str, ...] = ("int16x8", "int8")
IO_DTYPES: dict[str, str] = {"int8": "int8", "int16x8": "int16"}
_ALIASES: dict[str, str] = {"int8": "int8", "int16x8": "int16x8", "int16": "int16x8", "16x8": "int16x8"}
CACHE_DIR = BUILD_DIR / "quantized"
CACHE_FORMAT = 1  # bump when the conversion recipe changes: old cache entries stop matching
FLOAT_SUFFIXES = (".keras", ".h5", ".hdf5")


# ---------------------------------------------------------------- names and hashes


def normalize_precision(name: str) -> str:
    """'int8' | 'int16x8' (also accepted: 'int16', '16x8'); UserError otherwise."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise UserError(f"unknown precision '{name}'", hint="choose int8 or int16x8 (alias int16)")
    return _ALIASES[key]


def file_sha256(path: Path | str) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def array_sha256(x: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order bytes (the representative-set key)."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    h.update(x.tobytes())
    return h.hexdigest()


def _tensorflow_version() -> str:
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


# ---------------------------------------------------------------- loading the float model


def load_float_keras(path: Path | str) -> Any:
    """A float model from .keras, .h5 (Keras 3, or tf_keras for legacy Keras-2 files) or a SavedModel dir."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"float model not found: {path}", hint="pass a .keras, .h5 or SavedModel directory")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"{path} is a directory but not a SavedModel (no saved_model.pb)",
                            hint="pass a .keras or .h5 file, or a SavedModel directory")
        return _load_saved_model(path)
    if path.suffix.lower() not in FLOAT_SUFFIXES:
        raise UserError(
            f"unsupported float model file {path.name}",
            hint="give a Keras .keras or .h5 file or a SavedModel directory (a .tflite is already quantized)",
        )
    return _load_keras_file(path)


def _load_keras_file(path: Path) -> Any:
    import_tensorflow_quietly()
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad or legacy file
        if path.suffix.lower() == ".keras":
            raise UserError(f"could not load float model {path}: {_first_line(err)}") from None
        keras3_error = err
    return _load_legacy(path, keras3_error)


def _load_legacy(path: Path, keras3_error: Exception) -> Any:
    """Keras-2 files (.h5, SavedModel with keras_metadata.pb) through the tf_keras package."""
    try:
        import tf_keras
    except ImportError:
        raise UserError(
            f"could not load float model {path}: {_first_line(keras3_error)}",
            hint="legacy Keras-2 files need the tf_keras package: pip install 'tf-keras~=2.21'",
        ) from None
    try:
        return tf_keras.models.load_model(path, compile=False)
    except Exception as err:
        raise UserError(f"could not load float model {path}: {_first_line(err)}") from None


def _load_saved_model(path: Path) -> Any:
    """A SavedModel: Keras-2 ones through tf_keras; others wrapped as a Keras model (serving_default)."""
    if (path / "keras_metadata.pb").is_file():
        return _load_legacy(path, UserError("Keras 3 cannot load Keras-2 SavedModels"))

    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    except Exception as err:
        raise UserError(f"could not load SavedModel {path}: {_first_line(err)}",
                        hint="it needs a 'serving_default' signature") from None
    specs = list(signature.structured_input_signature[1].values())
    if len(specs) != 1:
        raise UserError(f"SavedModel {path} has {len(specs)} inputs; a single-input classifier is needed")
    inputs = keras.Input(shape=tuple(specs[0].shape[1:]), name=specs[0].name)
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise UserError(f"SavedModel {path} has {len(outputs)} outputs; a single-output classifier is needed")
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=path.name)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ---------------------------------------------------------------- conversion


def model_input_shape(model: Any) -> tuple[int | None, ...]:
    """The single input's shape (batch first); UserError for multi-input models."""
    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        raise UserError(f"the float model has {len(inputs)} inputs; quantization needs exactly one")
    return tuple(None if d is None else int(d) for d in inputs[0].shape)


def model_num_classes(model: Any) -> int | None:
    """The number of class scores of a single-output model (None when unknown)."""
    outputs = list(getattr(model, "outputs", None) or [])
    last = outputs[0].shape[-1] if len(outputs) == 1 else None
    return None if last is None else int(last)


def _fits_input(x: np.ndarray, shape: tuple[int | None, ...]) -> bool:
    """True when x is a batch of the model's input (a None dimension takes any size)."""
    return x.ndim == len(shape) and all(d is None or d == s for d, s in zip(shape[1:], x.shape[1:], strict=True))


def check_labelled_data(x: np.ndarray, y: np.ndarray, input_shape: tuple[int | None, ...], classes: int | None,
                        what: str, model: str = "the float model") -> None:
    """UserError unless `model` can score (x, y): inputs of its shape (batch first; None takes any size), labels
    among its classes. Called before any conversion or long work, so bad data fails fast. (Finite values: the
    .npz loader's check, host.core.data.)"""
    if not _fits_input(x, input_shape):
        raise UserError(f"{what}: inputs of shape {tuple(x.shape[1:])}, but {model} takes {tuple(input_shape[1:])}",
                        hint="pass inputs of the model's shape (NHWC), or the model they were made for")
    if classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise UserError(f"{what}: labels {int(y.min())}..{int(y.max())}, but {model} has {classes} classes",
                        hint="the labels must be class indices 0..classes-1")


def check_representative(model: Any, representative: np.ndarray) -> np.ndarray:
    """The representative set as float32 NHWC matching the model's input; UserError otherwise."""
    x = np.asarray(representative)
    shape = model_input_shape(model)
    if not _fits_input(x, shape):
        raise UserError(
            f"representative set has shape {x.shape} but the model expects input {shape}",
            hint="a batch of inputs scaled exactly like the evaluation inputs (e.g. N x 32 x 32 x 3 in [0, 1])",
        )
    if len(x) == 0:
        raise UserError("the representative set is empty", hint="give a few hundred typical inputs")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise UserError("the representative set must be finite numbers")
    return x.astype(np.float32)


def quantize(model: Any, representative: np.ndarray, precision: str) -> bytes:
    """Full-integer post-training quantization of a Keras model -> .tflite bytes.

    int8: TFLITE_BUILTINS_INT8 with int8 input/output; int16x8:
    EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 with int16 input/output.
    The model is traced at batch 1 and its variables frozen, so all shapes are static.
    Deterministic: the same model and representative set give the same bytes.
    """
    precision = normalize_precision(precision)
    x = check_representative(model, representative)

    import_tensorflow_quietly()
    import tensorflow as tf

    with _captured_output() as log:
        try:
            return bytes(_converter(tf, model, x, precision).convert())
        except Exception as err:  # ConverterError, RuntimeError from calibration, ...
            raise UserError(
                f"the TFLite converter could not quantize the model to {precision}: {_first_line(err)}",
                hint=f"converter log tail: {log.tail()}" if log.tail() else None,
            ) from None


def _converter(tf: Any, model: Any, x: np.ndarray, precision: str) -> Any:
    """A TFLiteConverter set up for full-integer quantization at `precision`."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen_batch1(model)])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[np.newaxis]] for sample in x)
    io_type = tf.int8 if precision == "int8" else tf.int16
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision == "int8"
        else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    return converter


def _frozen_batch1(model: Any) -> Any:
    """The model's inference function at batch 1 with its variables turned into constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    shape = model_input_shape(model)
    spec = tf.TensorSpec((1, *shape[1:]), tf.float32, name="input")
    function = tf.function(lambda x: model(x, training=False))
    return convert_variables_to_constants_v2(function.get_concrete_function(spec))


class _Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return ""
        keep = [ln for ln in text.splitlines() if ln.strip() and "WARNING" not in ln]
        return " | ".join(keep[-lines:])


@contextmanager
def _captured_output() -> Iterator[_Log]:
    """Send fd 1 and 2 (the converter's C++ chatter and absl warnings) to a temporary log."""
    import logging
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryDirectory() as tmp:
        log = _Log(Path(tmp) / "convert.log")
        fd = os.open(log.path, os.O_WRONLY | os.O_CREAT)
        saved = [os.dup(1), os.dup(2)]
        absl = logging.getLogger("absl")
        level = absl.level
        try:
            absl.setLevel(logging.ERROR)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for f in (*saved, fd):
                os.close(f)
            absl.setLevel(level)


def tflite_ops(data: bytes) -> list[str]:
    """The op names of a .tflite model, in execution order."""
    return [op.opcode for op in parse_model(data).subgraphs[0].operators]


def unsupported_ops(data: bytes) -> list[str]:
    """Ops of the model that our engine (host.compiler) has no lowering for, sorted."""
    return sorted(set(tflite_ops(data)) - set(supported_ops()))


# ---------------------------------------------------------------- cache and experiment


@dataclass(frozen=True)
class QuantizedModel:
    """One integer precision of the experiment's model."""

    precision: str          # "int8" | "int16x8"
    data: bytes             # the .tflite flatbuffer
    origin: str             # "given" | "cache" | "converted"
    path: Path | None       # the given file, or the cache file

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class ExperimentModels:
    """Float (host Keras) + each integer precision of one model, in PRECISIONS order."""

    float_path: Path
    float_model: Any
    quantized: dict[str, QuantizedModel] = field(default_factory=dict)

    def __getitem__(self, precision: str) -> QuantizedModel:
        return self.quantized[normalize_precision(precision)]


def check_cache_dir(cache_dir: Path | str) -> None:
    """UserError unless cache_dir is a directory or can be made one (checked before a conversion is wasted)."""
    cache_dir = Path(cache_dir)
    for path in (cache_dir, *cache_dir.parents):
        if path.is_dir():
            return
        if path.exists():
            raise UserError(f"quantization cache {cache_dir}: {path} is a file, not a directory",
                            hint="give a directory for the cache (it is created if missing), or remove that file")


def cache_key(model_sha256: str, representative_sha256: str, precision: str) -> str:
    """The cache file stem for one conversion (TF version and recipe version included)."""
    text = f"{model_sha256}|{representative_sha256}|{normalize_precision(precision)}|tf{_tensorflow_version()}|" \
           f"v{CACHE_FORMAT}"
    return f"{hashlib.sha256(text.encode()).hexdigest()[:32]}-{normalize_precision(precision)}"


def quantize_cached(
    float_path: Path | str,
    representative: np.ndarray,
    precision: str,
    cache_dir: Path | str = CACHE_DIR,
    model: Any = None,
) -> QuantizedModel:
    """quantize() of the model file, reusing build/quantized/<key>.tflite when present.

    `model` (the loaded float model) is optional: without it the file is loaded only on a cache miss.
    """
    precision = normalize_precision(precision)
    float_path, cache_dir = Path(float_path), Path(cache_dir)
    if not float_path.exists():
        raise UserError(f"float model not found: {float_path}")
    check_cache_dir(cache_dir)
    rep_sha = array_sha256(np.asarray(representative, dtype=np.float32))
    target = cache_dir / f"{cache_key(file_sha256(float_path), rep_sha, precision)}.tflite"
    cached = _read_cached(target)
    if cached is not None:
        return QuantizedModel(precision, cached, "cache", target)
    data = quantize(model if model is not None else load_float_keras(float_path), representative, precision)
    meta = {"float_model": str(float_path), "float_sha256": file_sha256(float_path), "precision": precision,
            "representative_sha256": rep_sha, "representative_shape": list(np.shape(representative)),
            "tensorflow": _tensorflow_version()}
    _write_cached(target, data, meta)
    return QuantizedModel(precision, data, "converted", target)


def _read_cached(path: Path) -> bytes | None:
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        parse_model(data)
    except ModelFormatError:
        return None  # a damaged entry is converted again
    return data


def _write_cached(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    write_bytes_whole(path, data)
    write_text_whole(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")


def load_quantized(path: Path | str, precision: str) -> QuantizedModel:
    """An existing .tflite as one precision; UserError unless its input/output dtype fits."""
    precision = normalize_precision(precision)
    path = Path(path)
    if path.exists() and not path.is_dir() and path.suffix != ".tflite":
        raise UserError(f"{precision} model must be a .tflite file, got {path.name}")
    model, data = read_model_file(path)
    graph = model.subgraphs[0]
    want = IO_DTYPES[precision]
    for role, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        dtype = graph.tensors[index].dtype
        if dtype != want:
            raise UserError(
                f"{path}: {role} is {dtype}, but a {precision} model has {want} input and output",
                hint="pass the int8 model as int8 and the 16x8 model as int16x8",
            )
    return QuantizedModel(precision, data, "given", path)


def experiment_models(
    float_path: Path | str,
    representative: np.ndarray | None = None,
    given: Mapping[str, Path | str] | None = None,
    precisions: Sequence[str] = PRECISIONS,
    cache_dir: Path | str = CACHE_DIR,
    float_model: Any = None,
) -> ExperimentModels:
    """The float model plus each precision: a given .tflite, or quantized (cached) from the float model.

    `float_model` (the file already loaded) is optional: without it the file is loaded here."""
    float_path = Path(float_path)
    # Load first: a missing or unreadable model is the real problem, not a missing representative set.
    float_model = float_model if float_model is not None else load_float_keras(float_path)
    given_by = {normalize_precision(k): Path(v) for k, v in (given or {}).items()}
    wanted = list(dict.fromkeys([normalize_precision(p) for p in precisions] + list(given_by)))
    missing = [p for p in wanted if p not in given_by]
    if missing and representative is None:
        raise UserError(
            f"no representative set to quantize {', '.join(missing)} and no such .tflite given",
            hint="pass representative inputs (not the evaluation images), or the existing .tflite files",
        )
    if missing:
        check_cache_dir(cache_dir)
    models = ExperimentModels(float_path, float_model)
    for precision in sorted(wanted, key=_precision_order):
        if precision in given_by:
            models.quantized[precision] = load_quantized(given_by[precision], precision)
        else:
            models.quantized[precision] = quantize_cached(float_path, representative, precision, cache_dir,
                                                          model=float_model)
    return models


def _precision_order(precision: str) -> int:
    return PRECISIONS.index(precision)


# ---------------------------------------------------------------- running and accuracy


class ReferenceOracle:
    """A quantized model as a float function: x (float batch) -> dequantized scores, via TFLite Micro."""

    def __init__(self, data: bytes) -> None:
        self.io = ModelIO.from_bytes(data)
        self._interp = ReferenceInterpreter(data)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Integer outputs (n, classes) for a float batch, quantized with the input scale/zero point."""
        x_q = self.io.input.quantize(np.asarray(x))
        return self._interp.run_batch(x_q).reshape(len(x_q), -1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.io.output.dequantize(self.raw(x))

    def predict_labels(self, x: np.ndarray) -> np.ndarray:
        return self.raw(x).argmax(axis=1)


def tflite_accuracy(data: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Clean accuracy of a quantized model through TFLite Micro (bit-exact with the chip)."""
    return float(np.mean(ReferenceOracle(data).predict_labels(x) == np.asarray(y).reshape(-1)))


def float_accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Clean accuracy of the float Keras model on the host."""
    scores = model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    return float(np.mean(np.asarray(scores).argmax(axis=1) == np.asarray(y).reshape(-1)))

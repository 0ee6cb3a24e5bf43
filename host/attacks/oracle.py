"""Query oracles: black-box access to a classifier, counting every query.

A QueryOracle is a callable on a float batch in the model's input range that
returns one row of class scores per input (or one-hot labels, for decision-only
access) and counts one query per input.  Black-box attacks run ART's query
attacks on `oracle.art_classifier()` (an ART BlackBoxClassifier over the oracle).

Implementations:

- QuantizedOracle(run, input_info, output_info): any `run(x_q) -> output` over a
  quantized model: x is quantized with the input tensor's scale/zero point (the
  evaluator's rounding), `run` gets one array of the model's exact dtype and shape
  and returns raw output bytes, an array, or an object with `.output` bytes
  (host.backends.backend' Inference); the output is dequantized.  `from_backend` plugs in a
  host.backends.backend Backend (the chip, the native engine, TFLite Micro).
- ReferenceOracle(path): a QuantizedOracle over TFLite Micro's reference interpreter.
- FloatOracle(float_model): the float Keras model's outputs, for black-box attacks
  on the float model (AutoAttack's Square stage).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from host.attacks.target import import_art
from host.backends.backend import ModelIO
from host.core.errors import UserError
from host.engine.reference import ReferenceInterpreter

OUTPUTS = ("scores", "labels")


class QueryOracle(ABC):
    """Float batch in, class scores (or one-hot labels) out; `queries` counts inputs seen."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        nb_classes: int,
        input_range: tuple[float, float] = (0.0, 1.0),
        output: str = "scores",
    ) -> None:
        if output not in OUTPUTS:
            raise UserError(f"query oracle output must be one of {', '.join(OUTPUTS)}, got '{output}'")
        lo, hi = input_range
        if not lo < hi:
            raise UserError(f"query oracle: empty input range [{lo}, {hi}]")
        if nb_classes < 2:
            raise UserError(f"query oracle: a classifier needs >= 2 classes, got {nb_classes}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.nb_classes = int(nb_classes)
        self.input_range = (float(lo), float(hi))
        self.output = output
        self.queries = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scores (n, nb_classes) float32 for a batch (n, *input_shape); counts n queries."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise UserError(f"query oracle: inputs of shape {x.shape[1:]}, expected {self.input_shape}")
        if not np.all(np.isfinite(x)):
            raise UserError("query oracle: non-finite (NaN/inf) inputs; the attack produced invalid queries")
        x = np.clip(x, *self.input_range)
        scores = self._scores(x).astype(np.float32).reshape(len(x), self.nb_classes)
        self.queries += len(x)
        if self.output == "labels":
            return np.eye(self.nb_classes, dtype=np.float32)[scores.argmax(axis=1)]
        return scores

    def predict_labels(self, x: np.ndarray) -> np.ndarray:
        """Predicted class per input (counts queries like any call)."""
        return self(x).argmax(axis=1)

    def reset_queries(self) -> None:
        self.queries = 0

    def art_classifier(self) -> Any:
        """An ART black-box classifier whose every prediction goes through this oracle.

        BlackBoxClassifierNeuralNetwork (channels last), not BlackBoxClassifier: ART's
        SquareAttack and GeoDA insist on the NeuralNetworkMixin / channels_first attribute.
        """
        black_box = import_art("art.estimators.classification").BlackBoxClassifierNeuralNetwork
        return black_box(self, self.input_shape, self.nb_classes, channels_first=False, clip_values=self.input_range)

    @abstractmethod
    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores for a float batch already checked and clipped to the input range."""


class QuantizedOracle(QueryOracle):
    """A quantized model behind any `run(x_q) -> output bytes | array | Inference` callable."""

    def __init__(
        self,
        run: Callable[[np.ndarray], Any],
        input_info: Any,
        output_info: Any,
        input_range: tuple[float, float] = (0.0, 1.0),
        output: str = "scores",
    ) -> None:
        """input_info/output_info: host.compiler.types.TensorInfo (dtype, shape, scale, zero_point)."""
        shape = tuple(input_info.shape)
        if not shape or shape[0] != 1:
            raise UserError(f"query oracle: model input shape {shape} must have batch dimension 1")
        super().__init__(shape[1:], int(np.prod(output_info.shape)), input_range, output)
        self._run = run
        self.input_info = input_info
        self.output_info = output_info

    @classmethod
    def from_backend(
        cls, backend: Any, model_io: Any, input_range: tuple[float, float] = (0.0, 1.0), output: str = "scores"
    ) -> QuantizedOracle:
        """Over a host.backends.backend Backend (device, native, reference) for a host.backends.backend.ModelIO."""
        return cls(backend.run, model_io.input, model_io.output, input_range, output)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        x_q = self.input_info.quantize(x)
        shape = tuple(self.input_info.shape)
        rows = [self._decode(self._run(np.ascontiguousarray(sample).reshape(shape))) for sample in x_q]
        return np.stack(rows)

    def _decode(self, out: Any) -> np.ndarray:
        out = getattr(out, "output", out)  # host.backends.backend.Inference
        if isinstance(out, list | tuple):
            out = out[0]
        if isinstance(out, bytes | bytearray | memoryview):
            out = np.frombuffer(bytes(out), dtype=self.output_info.dtype)
        raw = np.asarray(out).reshape(-1)
        if raw.size != self.nb_classes:
            raise UserError(f"query oracle: model returned {raw.size} values, expected {self.nb_classes}")
        return self.output_info.dequantize(raw.astype(self.output_info.dtype))


class ReferenceOracle(QuantizedOracle):
    """A .tflite model on TFLite Micro's reference interpreter (what the chip must match)."""

    def __init__(
        self, model: Path | str | bytes, input_range: tuple[float, float] = (0.0, 1.0), output: str = "scores"
    ) -> None:

        if isinstance(model, bytes):
            data, source = model, "model"
        else:
            path = Path(model)
            if not path.is_file():
                raise UserError(f"model not found: {path}")
            data, source = path.read_bytes(), str(path)
        model_io = ModelIO.from_bytes(data, source)
        interp = ReferenceInterpreter(data)
        super().__init__(lambda x_q: interp.run(x_q)[0], model_io.input, model_io.output, input_range, output)
        self.model_io = model_io


class FloatOracle(QueryOracle):
    """The float model's own outputs (its softmax scores), counted like any oracle."""

    def __init__(self, float_model: Any, output: str = "scores", batch_size: int = 256) -> None:
        super().__init__(tuple(float_model.input_shape[1:]), float_model.num_classes, float_model.input_range, output)
        self.float_model = float_model
        self._batch_size = batch_size

    def _scores(self, x: np.ndarray) -> np.ndarray:
        return self.float_model.predict(x, self._batch_size)

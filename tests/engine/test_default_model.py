"""The committed default model: accuracy, int8 fidelity via TFLite Micro, allowed ops, metadata."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from host.attacks import load_float_model
from host.backends.backend import ModelIO
from host.core.data import load_digits_split
from host.core.paths import DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, MODELS_DIR
from host.engine.reference import ReferenceInterpreter
from host.tflite.reader import parse_model

REQUIRED_OPS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX",
}
METADATA = MODELS_DIR / "digits_cnn.json"


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    _, _, x_test, y_test = load_digits_split()
    return x_test, y_test


@pytest.fixture(scope="module")
def float_accuracy(test_split) -> float:  # noqa: ANN001
    x, y = test_split
    return float(np.mean(load_float_model(DEFAULT_FLOAT_MODEL).predict(x).argmax(axis=1) == y))


@pytest.fixture(scope="module")
def int8_accuracy(test_split) -> float:  # noqa: ANN001
    x, y = test_split
    model = ModelIO.from_bytes(DEFAULT_MODEL.read_bytes())
    outputs = ReferenceInterpreter(model.data).run_batch(model.input.quantize(x))
    return float(np.mean(outputs.reshape(len(y), -1).argmax(axis=1) == y))


def test_float_accuracy_at_least_95(float_accuracy: float) -> None:
    assert float_accuracy >= 0.95


def test_int8_within_one_point_of_float(float_accuracy: float, int8_accuracy: float) -> None:
    assert abs(float_accuracy - int8_accuracy) <= 0.01


def test_ops_exactly_the_required_set() -> None:
    graph = parse_model(DEFAULT_MODEL.read_bytes()).subgraphs[0]
    assert {op.opcode for op in graph.operators} == REQUIRED_OPS


def test_int8_io_covers_input_range() -> None:
    model = ModelIO.from_bytes(DEFAULT_MODEL.read_bytes())
    assert model.input.dtype == "int8" and model.output.dtype == "int8"
    assert model.input.shape == (1, 8, 8, 1) and model.output.shape == (1, 10)
    assert model.input.quantize(np.array([0.0, 1.0])).tolist() == [-128, 127]


def test_metadata_matches_committed_files(float_accuracy: float, int8_accuracy: float) -> None:
    meta = json.loads(METADATA.read_text())
    data = DEFAULT_MODEL.read_bytes()
    assert meta["tflite_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["ops"] == [op.opcode for op in parse_model(data).subgraphs[0].operators]
    assert meta["input_range"] == [0.0, 1.0] and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["split"]["seed"] == 0
    assert meta["float_test_accuracy"] == pytest.approx(float_accuracy, abs=1e-6)
    assert meta["int8_test_accuracy"] == pytest.approx(int8_accuracy, abs=1e-6)

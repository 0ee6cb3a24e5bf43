"""host.quantization.quantize: real TFLite conversions of the digits model, checked through TFLite Micro
and our engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.compiler.compile import compile_bytes
from host.core.data import load_digits_split, load_npz_dataset
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, SHARED_DIR
from host.engine.native import NativeModel
from host.quantization.quantize import (
    ReferenceOracle,
    array_sha256,
    experiment_models,
    float_accuracy,
    load_float_keras,
    load_quantized,
    normalize_precision,
    quantize,
    quantize_cached,
    tflite_accuracy,
    tflite_ops,
    unsupported_ops,
)
from host.quantize import main

DG = SHARED_DIR / "models" / "david-goliath"
CIFAR = SHARED_DIR / "data" / "cifar10"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return load_digits_split()


@pytest.fixture(scope="module")
def float_model():  # noqa: ANN201
    return load_float_keras(DEFAULT_FLOAT_MODEL)


@pytest.fixture(scope="module")
def converted(float_model, digits) -> dict[str, bytes]:  # noqa: ANN001
    x_train = digits[0]
    return {p: quantize(float_model, x_train[:300], p) for p in ("int8", "int16x8")}


@pytest.mark.parametrize("precision,dtype", [("int8", "int8"), ("int16x8", "int16")])
def test_quantized_accuracy_within_one_point_of_float(float_model, digits, converted, precision, dtype) -> None:  # noqa: ANN001
    _, _, x_test, y_test = digits
    data = converted[precision]
    oracle = ReferenceOracle(data)
    assert oracle.io.input.dtype == dtype and oracle.io.output.dtype == dtype
    float_acc = float_accuracy(float_model, x_test, y_test)
    quant_acc = tflite_accuracy(data, x_test, y_test)
    assert float_acc > 0.9
    assert abs(quant_acc - float_acc) <= 0.01, (precision, float_acc, quant_acc)


def test_conversion_is_deterministic(digits, converted) -> None:  # noqa: ANN001
    again = load_float_keras(DEFAULT_FLOAT_MODEL)  # a fresh load: layer/graph name counters differ
    for precision in ("int8", "int16x8"):
        assert quantize(again, digits[0][:300], precision) == converted[precision]


def test_int8_matches_the_committed_model_arithmetic(float_model, digits) -> None:  # noqa: ANN001
    """Same recipe as models/train_digits.py (500 training images): bit-identical outputs."""
    ours = quantize(float_model, digits[0][:500], "int8")
    committed = DEFAULT_MODEL.read_bytes()
    x_test = digits[2][:100]
    assert np.array_equal(ReferenceOracle(ours).raw(x_test), ReferenceOracle(committed).raw(x_test))


@pytest.mark.parametrize("precision", ["int8", "int16x8"])
def test_compiles_and_runs_bit_exact_natively(digits, converted, precision) -> None:  # noqa: ANN001
    data = converted[precision]
    assert "SHAPE" not in tflite_ops(data) and unsupported_ops(data) == []
    native = NativeModel(compile_bytes(data))
    oracle = ReferenceOracle(data)
    for sample in digits[2][:8]:
        x_q = oracle.io.input.quantize(sample[np.newaxis])
        expected = oracle.raw(sample[np.newaxis]).astype(oracle.io.output.dtype).tobytes()
        assert native.run_bytes(x_q.tobytes()) == expected


def test_cache_reuses_conversions(tmp_path, digits, converted) -> None:  # noqa: ANN001
    rep = digits[0][:300]
    first = quantize_cached(DEFAULT_FLOAT_MODEL, rep, "int8", tmp_path)
    assert first.origin == "converted" and first.data == converted["int8"]
    second = quantize_cached(DEFAULT_FLOAT_MODEL, rep, "int8", tmp_path)
    assert second.origin == "cache" and second.data == first.data and second.path == first.path
    other = quantize_cached(DEFAULT_FLOAT_MODEL, rep[:200], "int8", tmp_path)
    assert other.path != first.path and other.origin == "converted"
    first.path.write_bytes(b"damaged")  # a broken entry is converted again
    assert quantize_cached(DEFAULT_FLOAT_MODEL, rep, "int8", tmp_path).origin == "converted"


def test_experiment_models_mixes_given_and_converted(tmp_path, digits) -> None:  # noqa: ANN001
    models = experiment_models(DEFAULT_FLOAT_MODEL, digits[0][:300], given={"int8": DEFAULT_MODEL},
                               cache_dir=tmp_path)
    assert list(models.quantized) == ["int16x8", "int8"]
    assert models["int8"].origin == "given" and models["int8"].data == DEFAULT_MODEL.read_bytes()
    assert models["int16"].origin == "converted" and models["int16x8"].path.parent == tmp_path
    assert float_accuracy(models.float_model, digits[2], digits[3]) > 0.9


def test_saved_model_directory(tmp_path, float_model, digits) -> None:  # noqa: ANN001
    export = tmp_path / "digits_saved"
    float_model.export(str(export), verbose=False)
    loaded = load_float_keras(export)
    x_test, y_test = digits[2], digits[3]
    np.testing.assert_allclose(loaded.predict(x_test[:20], verbose=0), float_model.predict(x_test[:20], verbose=0),
                               atol=1e-5)
    data = quantize(loaded, digits[0][:300], "int8")
    assert unsupported_ops(data) == []
    assert abs(tflite_accuracy(data, x_test, y_test) - float_accuracy(float_model, x_test, y_test)) <= 0.01


# ---------------------------------------------------------------- clear errors


def _message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


def test_bad_float_model_files(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match="not found"):
        load_float_keras(tmp_path / "missing.keras")
    with pytest.raises(UserError, match="unsupported float model file") as err:
        load_float_keras(DEFAULT_MODEL)
    assert "already quantized" in _message(err)
    with pytest.raises(UserError, match="not a SavedModel"):
        load_float_keras(tmp_path)
    for name in ("junk.keras", "junk.h5"):
        (tmp_path / name).write_bytes(b"not a model at all")
        with pytest.raises(UserError, match="could not load float model"):
            load_float_keras(tmp_path / name)


def test_bad_quantized_files_and_arguments(tmp_path, float_model, digits) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match="int16x8 model has int16 input"):
        load_quantized(DEFAULT_MODEL, "int16")
    with pytest.raises(UserError, match="not found"):
        load_quantized(tmp_path / "nope.tflite", "int8")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="must be a .tflite"):
        load_quantized(tmp_path / "m.bin", "int8")
    with pytest.raises(UserError, match="unknown precision"):
        normalize_precision("int4")
    with pytest.raises(UserError, match="representative set has shape"):
        quantize(float_model, np.zeros((4, 28, 28, 1), np.float32), "int8")
    with pytest.raises(UserError, match="empty"):
        quantize(float_model, digits[0][:0], "int8")
    with pytest.raises(UserError, match="no representative set"):
        experiment_models(DEFAULT_FLOAT_MODEL, None, cache_dir=tmp_path)


def test_cli_reports_errors_without_traceback(tmp_path, capsys) -> None:  # noqa: ANN001
    assert run_cli(main, ["--float-model", str(tmp_path / "none.h5"), "--int8", str(DEFAULT_MODEL)]) == 2
    assert capsys.readouterr().err.startswith("error: float model not found")


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory, digits) -> dict[str, Path]:  # noqa: ANN001
    """A representative set and evaluation sets that the digits model cannot score."""
    folder = tmp_path_factory.mktemp("npz")
    x_test, y_test = digits[2][:3], digits[3][:3]
    nan = x_test.copy()
    nan[0, 0, 0, 0] = np.nan
    arrays = {"rep": (digits[0][:20], digits[1][:20]), "wrong-shape": (np.zeros((3, 28, 28, 1), np.float32), y_test),
              "labels-99": (x_test, np.full(3, 99)), "nan": (nan, y_test), "good": (x_test, y_test)}
    for name, (x, y) in arrays.items():
        np.savez(folder / f"{name}.npz", x=x, y=y)
    return {name: folder / f"{name}.npz" for name in arrays}


def _cli(npz_files: dict[str, Path], *extra: str) -> list[str]:
    return ["--float-model", str(DEFAULT_FLOAT_MODEL), "--representative", str(npz_files["rep"]), *extra]


@pytest.mark.parametrize("name,message", [
    ("wrong-shape", r"inputs of shape \(28, 28, 1\), but the float model takes \(8, 8, 1\)"),
    ("labels-99", "labels 99..99, but the float model has 10 classes"),
    ("nan", "1 input values are NaN or infinite"),
])
def test_cli_checks_data_before_converting(tmp_path, npz_files, name, message) -> None:  # noqa: ANN001
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=message):
        main(_cli(npz_files, "--rep-num", "20", "--data", str(npz_files[name]), "--cache-dir", str(cache)))
    assert not cache.exists()   # refused before any conversion


@pytest.mark.parametrize("flags,message", [
    (["--rep-num", "0"], "--rep-num must be at least 1, got 0"),
    (["--rep-num", "-5"], "--rep-num must be at least 1, got -5"),
    (["--rep-start", "-1"], "--rep-start must be 0 or more, got -1"),
    (["--rep-num", "20", "--num", "0"], "--num must be at least 1, got 0"),
])
def test_cli_refuses_sample_counts_below_one(tmp_path, npz_files, flags, message) -> None:  # noqa: ANN001
    with pytest.raises(UserError, match=message):
        main(_cli(npz_files, *flags, "--data", str(npz_files["good"]), "--cache-dir", str(tmp_path)))


def test_a_file_as_cache_dir_is_a_user_error(tmp_path, npz_files, digits, capsys) -> None:  # noqa: ANN001
    (tmp_path / "file").write_text("not a directory")
    argv = _cli(npz_files, "--rep-num", "20", "--cache-dir", str(tmp_path / "file"))
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: quantization cache {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a directory"
    assert err[1].startswith("  hint: ") and len(err) == 2
    with pytest.raises(UserError, match="is a file, not a directory"):
        quantize_cached(DEFAULT_FLOAT_MODEL, digits[0][:20], "int8", tmp_path / "file" / "sub")


def test_an_unusable_float_model_is_reported_before_the_representative_set(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "x.tflite").write_text("not a model")
    with pytest.raises(UserError, match="unsupported float model file x.tflite"):
        main(["--float-model", str(tmp_path / "x.tflite")])
    with pytest.raises(UserError, match="is a directory but not a SavedModel"):
        main(["--float-model", str(tmp_path)])
    with pytest.raises(UserError, match="unsupported float model file x.tflite"):
        experiment_models(tmp_path / "x.tflite", None, cache_dir=tmp_path)


def test_array_hash_depends_on_shape_and_dtype() -> None:
    x = np.arange(6, dtype=np.float32)
    assert array_sha256(x) == array_sha256(x.copy())
    assert len({array_sha256(x), array_sha256(x.reshape(2, 3)), array_sha256(x.astype(np.float64))}) == 3


def test_legacy_keras2_h5_loads_through_tf_keras() -> None:
    path = SHARED_DIR / "models" / "mlperf-tiny" / "vww_96.h5"
    if not path.is_file():
        pytest.skip(f"{path} absent (../shared reference data not available)")
    pytest.importorskip("tf_keras", reason="tf_keras not installed (needed for Keras-2 files)")
    model = load_float_keras(path)
    assert tuple(model.inputs[0].shape[1:]) == (96, 96, 3)


# ---------------------------------------------------------------- the David-and-Goliath study


def _dg_files() -> dict[str, Path]:
    files = {
        "float": DG / "cifar_resnet_float.h5", "int8": DG / "cifar_resnet_int8.tflite",
        "int16x8": DG / "cifar_resnet_int16.tflite", "test": CIFAR / "test_first1017.npz",
        "pool": CIFAR / "test_10k_jpeg.npz",
    }
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        pytest.skip(f"{absent} absent (../shared reference data not available)")
    return files


@pytest.mark.slow   # about 75 s; .ci/run's D&G quick study runs these models too
def test_david_goliath_accuracies(tmp_path) -> None:  # noqa: ANN001
    """The study's models on the first 1000 test images, as we measure them (Keras float, TFLite Micro
    for the quantized ones): float 88.3 %, int16x8 88.2 %, int8 88.0 % (the study printed 88.3 / 88.2 /
    87.5 %); our own conversions (500 calibration images from indices 1017.. of the pool) within 1 point.
    About 35-50 s on 2 cores (under the 60 s line for @slow)."""
    files = _dg_files()
    test = load_npz_dataset(files["test"]).take(1000)
    models = experiment_models(files["float"], given={"int8": files["int8"], "int16x8": files["int16x8"]})
    assert round(100 * float_accuracy(models.float_model, test.x, test.y), 1) == 88.3
    given = {p: tflite_accuracy(models[p].data, test.x, test.y) for p in ("int16x8", "int8")}
    assert (round(100 * given["int16x8"], 1), round(100 * given["int8"], 1)) == (88.2, 88.0)
    pool = load_npz_dataset(files["pool"])
    ours = experiment_models(files["float"], pool.x[1017:1517], cache_dir=tmp_path)
    for precision in ("int16x8", "int8"):
        data = ours[precision].data
        assert unsupported_ops(data) == []
        compile_bytes(data)
        assert abs(tflite_accuracy(data, test.x, test.y) - given[precision]) <= 0.01

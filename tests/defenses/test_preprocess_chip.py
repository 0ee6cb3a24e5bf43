"""The firmware pre-processing stage (firmware/runtime/preprocess.c) on the emulated chip.

For every bit depth 1..7 and median window 2 and 3, on random and real digits inputs: the chip's
output bytes equal the TFLite Micro reference run on the host's integer pre-processing
(host/engine/integer.py) of the same input, and the device reports the stage's instructions
apart from the inference's. The host's float defenses vs that integer reference: test_defenses.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from host.compiler import CompiledModel, compile_tflite
from host.compiler.types import TensorInfo
from host.core.boards import load_board
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL
from host.defenses import get_defense
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware, preprocess_defines
from host.engine.preprocess import ChipStage, parse_stage
from host.engine.reference import ReferenceInterpreter
from host.link.device import Device
from host.link.messages import parse_info

BOARD = "mps2-an386"
STAGES = [f"squeeze:{bits}" for bits in range(1, 8)] + ["median:2", "median:3"]
needs_chip = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and arm-none-eabi-gcc")


@pytest.fixture(scope="module")
def model() -> CompiledModel:
    return compile_tflite(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference() -> ReferenceInterpreter:
    return ReferenceInterpreter(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def inputs(model: CompiledModel) -> np.ndarray:
    """6 random int8 inputs (the whole range, incl. the extremes) and 6 real test digits, quantized."""
    from host.core.data import load_digits_split

    tensor = model.inputs[0]
    rng = np.random.default_rng(5)
    noise = rng.integers(-128, 128, size=(6, *tensor.shape[1:]), dtype=np.int64).astype(np.int8)
    noise[0] = -128
    noise[1] = 127
    digits = load_digits_split()[2][:6]
    return np.concatenate([noise, TensorInfo.quantize(tensor, digits).reshape(6, *tensor.shape[1:])])


def run_on_chip(model: CompiledModel, stage: str, out_dir: Path, batch: np.ndarray) -> tuple[Device, list]:
    board = load_board(BOARD)
    image = build_firmware(model, board, out_dir, preprocess=stage)
    with boot_elf(board, image.elf, model.sha256, timeout_s=60) as device:
        results = list(device.infer_many((x.tobytes() for x in batch), window=4))
        return device, results


@needs_chip
@pytest.mark.parametrize("stage", STAGES)
def test_chip_stage_is_bit_exact_and_reports_its_cost(stage: str, model: CompiledModel, reference: ReferenceInterpreter,
                                                      inputs: np.ndarray, tmp_path: Path) -> None:
    tensor = model.inputs[0]
    device, results = run_on_chip(model, stage, tmp_path, inputs)
    chip_stage = parse_stage(stage)
    assert (device.info.preprocess_kind, device.info.preprocess_param) == (chip_stage.code, chip_stage.param)
    preprocessed = chip_stage.reference(inputs, tensor)
    for k, (x, result) in enumerate(zip(preprocessed, results, strict=True)):
        golden = np.asarray(reference.run(x.reshape(tensor.shape))[0])
        assert result.output == golden.tobytes(), f"{stage}: input {k} differs from the reference"
        assert result.preprocess_ticks is not None and result.preprocess_instructions > 0
    if chip_stage.kind == "squeeze":  # no data-dependent branches: the same cost for every input (±1 tick)
        ticks = [r.preprocess_ticks for r in results]
        assert max(ticks) - min(ticks) <= 1


@needs_chip
def test_inference_ticks_exclude_the_stage(model: CompiledModel, inputs: np.ndarray, tmp_path: Path) -> None:
    """The staged firmware's INFER ticks are those of the plain firmware on the pre-processed input."""
    stage = parse_stage("median:3")
    _, staged = run_on_chip(model, stage.label, tmp_path / "staged", inputs)
    _, plain = run_on_chip(model, "none", tmp_path / "plain", stage.reference(inputs, model.inputs[0]))
    for a, b in zip(staged, plain, strict=True):
        assert a.output == b.output and abs(a.ticks - b.ticks) <= 1
        assert b.preprocess_ticks is None
        assert a.preprocess_ticks > 0


@needs_chip
def test_stage_changes_what_the_engine_sees(model: CompiledModel, reference: ReferenceInterpreter,
                                            inputs: np.ndarray, tmp_path: Path) -> None:
    """1 bit leaves two values: the chip's outputs are those of the squeezed input, not the raw one."""
    _, results = run_on_chip(model, "squeeze:1", tmp_path, inputs[6:])
    raw = [np.asarray(reference.run(x.reshape(model.inputs[0].shape))[0]).tobytes() for x in inputs[6:]]
    assert any(r.output != b for r, b in zip(results, raw, strict=True))


def test_host_defenses_name_their_chip_stage() -> None:
    assert get_defense("feature-squeezing", bit_depth=4).chip_stage() == ChipStage("squeeze", 4)
    assert get_defense("feature-squeezing", bit_depth=20).chip_stage() is None
    assert get_defense("median-smoothing").chip_stage() == ChipStage("median", 2)
    assert get_defense("spatial-smoothing", window=3).chip_stage() == ChipStage("median", 3)
    assert get_defense("spatial-smoothing", filter="mean").chip_stage() is None
    assert get_defense("jpeg").chip_stage() is None


@pytest.mark.parametrize("text", ["squeeze", "squeeze:0", "squeeze:17", "median:6", "blur:2", "median:x"])
def test_bad_stage_names_are_user_errors(text: str) -> None:
    with pytest.raises(UserError):
        parse_stage(text)


def test_stage_defines_follow_the_input_grid(model: CompiledModel) -> None:
    assert preprocess_defines(model, "squeeze:4", (0.0, 1.0)) == {
        "TM_PREPROCESS": "1", "TM_PREPROCESS_PARAM": "4", "TM_PREPROCESS_Q_LO": "(-128)", "TM_PREPROCESS_Q_HI": "(127)"}
    # window 3: rows -1, 0 kept (2 rows of 8 × 1 int8)
    assert preprocess_defines(model, "median:3", (0.0, 1.0))["TM_PREPROCESS_RING_BYTES"] == "16u"
    assert preprocess_defines(model, None, (0.0, 1.0)) == {}
    with pytest.raises(UserError, match="not on the int8 grid"):
        preprocess_defines(model, "squeeze:4", (0.0, 0.7))
    floats = TensorInfo("x", "float32", (1, 8, 8, 1), 0.0, 0)
    with pytest.raises(UserError, match="int8 or int16"):
        ChipStage("median", 2).defines(floats)


def test_stage_reference_int16_matches_integer_module() -> None:
    """The int16 path of the reference (the C code has one too; int16 models run it on the chip)."""
    from host.engine.integer import median_filter_quantized, squeeze_bits_quantized

    tensor = TensorInfo("x", "int16", (1, 5, 7, 2), 1 / 32767, 0)
    q = np.random.default_rng(1).integers(-32768, 32768, size=(3, 5, 7, 2)).astype(np.int16)
    assert np.array_equal(ChipStage("squeeze", 5).reference(q, tensor),
                          squeeze_bits_quantized(q, 5, 1 / 32767, 0, (0.0, 1.0)))
    assert np.array_equal(ChipStage("median", 3).reference(q, tensor), median_filter_quantized(q, 3))


def test_info_without_stage_fields_parses_as_no_stage() -> None:
    from tests.support.link import info_payload

    assert parse_info(info_payload()).preprocess_kind == 0
    info = parse_info(info_payload(extra=bytes([0, 2, 4, 100, 0, 1, 2, 3])))
    assert (info.preprocess_kind, info.preprocess_param, info.infer_trailer_bytes) == (2, 3, 4)


@needs_chip
@pytest.mark.parametrize("stage", ["squeeze:3", "median:2"])
def test_int16_input_on_chip(stage: str, int16_model: bytes, tmp_path: Path) -> None:
    """The int16x8 digits model (input int16, scale ~1/32767, zero point 0): the int16 path of the stage."""
    from host.compiler.compile import compile_bytes

    model = compile_bytes(int16_model, name="digits_int16x8")
    tensor = model.inputs[0]
    assert tensor.dtype == "int16"
    rng = np.random.default_rng(7)
    batch = rng.integers(-2000, 34000, size=(4, *tensor.shape[1:])).clip(-32768, 32767).astype(np.int16)
    _, results = run_on_chip(model, stage, tmp_path, batch)
    reference = ReferenceInterpreter(int16_model)
    for x, result in zip(parse_stage(stage).reference(batch, tensor), results, strict=True):
        assert result.output == np.asarray(reference.run(x.reshape(tensor.shape))[0]).tobytes()
        assert result.preprocess_instructions > 0


@pytest.fixture(scope="module")
def int16_model() -> bytes:
    from host.core.data import load_digits_split
    from host.core.paths import DEFAULT_FLOAT_MODEL
    from host.quantization.quantize import load_float_keras, quantize

    return quantize(load_float_keras(DEFAULT_FLOAT_MODEL), load_digits_split()[0][:300], "int16x8")


@pytest.mark.slow   # 27 s; CI's David-and-Goliath quick study runs its defenses on the chip every time (.ci/run)
@needs_chip
def test_study_runs_defenses_on_the_chip(tmp_path: Path) -> None:
    """[[defense]] on_chip = true: per defense the chip's accuracy, bit-exactness with the reference on
    the integer pre-processing, and instructions of the stage and the inference, in metrics.json and
    the report."""
    import json
    import subprocess
    import sys

    from host.core.paths import ROOT

    config = tmp_path / "study.toml"
    config.write_text(f"""
[model]
float = "{ROOT / 'models/digits_cnn.keras'}"
int8 = "{ROOT / 'models/digits_cnn_int8.tflite'}"
precisions = ["float32", "int8"]
[dataset]
path = "builtin:digits-test"
num = 8
[chip]
board = "{BOARD}"
precisions = ["int8"]
num = 5
[[attack]]
name = "fgsm"
eps = [0.2]
[[defense]]
name = "feature-squeezing"
bit_depth = 3
on_chip = true
[[defense]]
name = "median-smoothing"
window = 2
on_chip = true
[[defense]]
name = "combined-squeezing"
on_chip = true
[[defense]]
name = "jpeg"
""")
    proc = subprocess.run([sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(tmp_path),
                           "--run-id", "s", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "s/metrics.json").read_text())
    assert doc["experiment"]["chip"]["preprocess_stages"] == {
        "feature-squeezing(bit_depth=3)": "squeeze:3", "median-smoothing(window=2)": "median:2",
        "combined-squeezing": "median:2"}
    assert doc["summary"]["defended_chip_inferences"] == 3 * 2 * 5 and doc["summary"]["defended_chip_mismatches"] == 0
    for evaluation in doc["evaluations"]:
        assert set(evaluation["defended"]["jpeg"]["models"]) == {"float32", "int8"}
        # on int8 inputs the study's combined squeezer is the 2x2 median, on the host as on the chip
        combined = evaluation["defended"]["combined-squeezing"]["models"]
        median = evaluation["defended"]["median-smoothing(window=2)"]["models"]
        assert combined["int8"] == median["int8"]
        assert combined["chip:int8"]["accuracy"] == median["chip:int8"]["accuracy"]
        for name in ("feature-squeezing(bit_depth=3)", "median-smoothing(window=2)", "combined-squeezing"):
            models = evaluation["defended"][name]["models"]
            chip = models["chip:int8"]
            assert chip["n"] == 5 and chip["reference_agreement"]["identical"] == 5
            assert chip["accuracy"] == models["stage-ref:int8"]["accuracy"]
            assert 0 < chip["preprocess_instructions_median"] < chip["instructions_median"]
            assert chip["total_instructions_median"] > chip["instructions_median"]
    report = (tmp_path / "s/report.md").read_text()
    assert "### Pre-processing on the chip" in report
    assert "- pre-processing on the chip vs reference on the integer stage: 30/30 identical" in report
    assert "pre-processing on the chip vs reference on the integer stage: bit-exact (30/30 identical)" in proc.stdout
    assert "| median-smoothing(window=2) | fgsm | 0.2 | int8 |" in report and "| 5/5 |" in report


def test_on_chip_needs_a_stage_and_a_chip(tmp_path: Path) -> None:
    from host.core.paths import ROOT
    from host.study.config import load_experiment

    base = f"""
[model]
float = "{ROOT / 'models/digits_cnn.keras'}"
int8 = "{ROOT / 'models/digits_cnn_int8.tflite'}"
precisions = ["float32", "int8"]
[dataset]
path = "builtin:digits-test"
num = 8
"""
    config = tmp_path / "c.toml"
    config.write_text(base + '[[defense]]\nname = "median-smoothing"\non_chip = true\n')
    with pytest.raises(UserError, match="no \\[chip\\]"):
        load_experiment(config)
    config.write_text(base + '[chip]\nboard = "mps2-an386"\n[[defense]]\nname = "jpeg"\non_chip = true\n')
    with pytest.raises(UserError, match="no firmware pre-processing stage"):
        load_experiment(config)
    config.write_text(base + '[chip]\nboard = "mps2-an386"\n[[defense]]\nname = "median-smoothing"\non_chip = 1\n')
    with pytest.raises(UserError, match="on_chip must be true or false"):
        load_experiment(config)
    config.write_text(base + '[chip]\nboard = "mps2-an386"\n[[defense]]\nname = "median-smoothing"\non_chip = true\n')
    assert load_experiment(config).defenses[0].on_chip


@needs_chip
def test_flash_with_a_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make flash PREPROCESS=median:2 (into a private flash folder, not the shared default one): the manifest
    names the stage, the device reports it, and host.evaluate's backend refuses to compare it with the
    reference on raw inputs."""
    import json

    import host.emulators.launch
    import host.link.images
    from host.backends.backend import DeviceBackend, ModelIO
    from host.flash import main as flash_main

    monkeypatch.setattr(host.link.images, "flash_dir", lambda board: tmp_path / board)
    monkeypatch.setenv("PREPROCESS", "median:2")
    assert flash_main(["--board", BOARD, "--model", str(DEFAULT_MODEL)]) == 0
    assert json.loads((tmp_path / BOARD / "manifest.json").read_text())["preprocess"] == "median:2"
    with host.emulators.launch.open_device(BOARD) as device:
        assert (device.info.preprocess_kind, device.info.preprocess_param) == (2, 2)
        assert device.infer(bytes(64)).preprocess_instructions > 0
        with pytest.raises(UserError, match="pre-processes its inputs"):
            DeviceBackend(device, ModelIO.from_bytes(DEFAULT_MODEL.read_bytes()))


def test_no_stage_in_the_mlperf_mode(model: CompiledModel) -> None:
    with pytest.raises(UserError, match="MLPerf"):
        build_firmware(model, load_board(BOARD), mlperf=True, preprocess="squeeze:4")

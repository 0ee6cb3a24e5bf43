"""`make flash`, `python -m host.flash`, `python -m host.check` and the README's main job, end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host.core.paths import DEFAULT_MODEL, FLASH_DIR, ROOT

needs_toolchain = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")


def run(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_clean_failure(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model\n" * 10)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(DEFAULT_MODEL.read_bytes()[:700])
    return {"text": text, "truncated": truncated}


@pytest.mark.parametrize("module", ["host.flash", "host.check"])
def test_bad_model_files_are_refused_cleanly(module: str, bad_files: dict[str, Path], tmp_path: Path) -> None:
    assert_clean_failure(run(module, "--model", str(tmp_path / "missing.tflite")), "not found")
    assert_clean_failure(run(module, "--model", str(bad_files["text"])), "notes.tflite")
    assert_clean_failure(run(module, "--model", str(bad_files["truncated"])), "truncated.tflite")
    assert_clean_failure(run(module, "--model", str(ROOT / "models/digits_cnn.keras")), "not a .tflite")
    assert_clean_failure(run(module, "--model", str(tmp_path)), "directory")


@pytest.mark.parametrize("module", ["host.flash", "host.check"])
def test_unknown_board_lists_boards(module: str) -> None:
    proc = run(module, "--model", str(DEFAULT_MODEL), "--board", "arduino-uno")
    assert_clean_failure(proc, "unknown board 'arduino-uno'", "mps2-an386")


def test_flash_names_the_range_option_it_was_given() -> None:
    from host import flash
    from host.core.errors import UserError

    with pytest.raises(UserError, match="--preprocess-range '5,1': LO must be below HI"):
        flash.main(["--preprocess", "squeeze:4", "--preprocess-range", "5,1"])


def test_check_bad_inputs_spec(tmp_path: Path) -> None:
    assert_clean_failure(run("host.check", "--model", str(DEFAULT_MODEL), "--inputs", "random:0"), "random:N")
    assert_clean_failure(run("host.check", "--model", str(DEFAULT_MODEL), "--inputs", str(tmp_path / "x.npz")),
                         "not found")
    (tmp_path / "notes.npz").write_text("not an archive\n")  # np.load tried to unpickle it: a traceback
    proc = run("host.check", "--model", str(DEFAULT_MODEL), "--inputs", str(tmp_path / "notes.npz"))
    assert_clean_failure(proc, "notes.npz: not an .npz file")
    assert proc.stderr.count("error:") == 1, proc.stderr
    assert_clean_failure(run("host.check", "--model", str(DEFAULT_MODEL), "--target", "native", "--profile"),
                         "--profile needs the chip")


def bad_npz(tmp_path: Path, kind: str) -> Path:
    """An .npz that host.check's inputs refuse (each used to be a traceback or a verdict on nothing)."""
    path = tmp_path / f"{kind}.npz"
    if kind == "text":
        path.write_text("x = 1, 2, 3\n")
    elif kind == "object":
        np.savez(path, x=np.array([np.zeros((8, 8, 1)), None], dtype=object))
    elif kind == "strings":
        np.savez(path, x=np.full((3, 8, 8, 1), "a"))
    elif kind == "no-arrays":
        np.savez(path)
    elif kind == "nan":
        np.savez(path, x=np.full((2, 8, 8, 1), np.nan, np.float32))
    elif kind == "wide-ints":
        np.savez(path, x=np.full((2, 8, 8, 1), 300, np.int64))
    else:
        np.savez(path, x=np.zeros((0 if kind == "no-samples" else 4, 8, 8, 1), np.float32))
    return path


@pytest.mark.parametrize(("kind", "argv", "message"), [
    ("text", [], "text.npz: not an .npz file"),
    ("object", [], "object.npz: not a readable .npz file .Object arrays"),
    ("strings", [], "strings.npz: array 'x' holds <U1 values, not numbers"),
    ("no-arrays", [], "no-arrays.npz: the .npz holds no arrays"),
    ("no-samples", [], "bad --inputs '.*no-samples.npz': array 'x' holds no samples"),
    ("nan", [], "nan.npz: array 'x' holds NaN or infinite values"),
    ("wide-ints", [], "wide-ints.npz: array 'x' holds 300..300, outside int8's -128..127"),
    ("four", ["--num", "-3"], "bad --num -3"),
    ("four", ["--num", "0"], "bad --num 0"),
])
def test_check_refuses_bad_npz_inputs(kind: str, argv: list[str], message: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from host import check
    from host.core.errors import UserError

    monkeypatch.setattr(check, "native_runner", _must_not_run)
    with pytest.raises(UserError, match=message):
        check.main(["--model", str(DEFAULT_MODEL), "--target", "native", "--inputs", str(bad_npz(tmp_path, kind)),
                    *argv])


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the check went on to build and run")


def test_check_counts_the_samples_of_the_input_array(tmp_path: Path) -> None:
    """Labels saved before the inputs made `bit-exact 3/5` (exit 1) of 3 matching inputs."""
    from host.backends.inputs import parse_inputs
    from host.compiler import compile_tflite

    path = tmp_path / "labelled.npz"
    np.savez(path, y=np.arange(5), x=np.zeros((3, 8, 8, 1), np.float32))
    inputs, count = parse_inputs(str(path), compile_tflite(DEFAULT_MODEL), seed=0)
    assert count == 3 and len(list(inputs)) == 3
    inputs, count = parse_inputs(str(path), compile_tflite(DEFAULT_MODEL), seed=0, limit=2)
    assert count == 2 and len(list(inputs)) == 2


def test_check_native_refuses_an_unknown_board(monkeypatch: pytest.MonkeyPatch) -> None:
    from host import check
    from host.core.errors import UserError

    monkeypatch.setattr(check, "native_runner", _must_not_run)
    with pytest.raises(UserError, match="unknown board 'bogus'"):
        check.main(["--model", str(DEFAULT_MODEL), "--target", "native", "--board", "bogus"])


@pytest.mark.parametrize(("link", "argv", "message"), [
    (None, [], "board nucleo-f446re is not emulated: connect to it with a link URL"),
    ("socket://127.0.0.1:1", ["--cycles"], "--cycles counts in QEMU booted here, and board nucleo-f446re is not"),
])
def test_check_refuses_a_real_board_it_would_boot_before_building(
        link: str | None, argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from host import check
    from host.core.errors import UserError
    from host.link.device import LINK_ENV

    monkeypatch.delenv(LINK_ENV, raising=False)
    if link is not None:
        monkeypatch.setenv(LINK_ENV, link)
    monkeypatch.setattr(check, "run_on_chip", _must_not_run)  # builds the firmware, then boots it
    with pytest.raises(UserError, match=message):
        check.main(["--model", str(DEFAULT_MODEL), "--board", "nucleo-f446re", *argv])


def test_check_native_verdict() -> None:
    proc = run("host.check", "--model", str(DEFAULT_MODEL), "--target", "native", "--inputs", "random:25")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("bit-exact 25/25")


@needs_toolchain
def test_check_on_chip_with_profile() -> None:
    proc = run("host.check", "--model", str(DEFAULT_MODEL), "--inputs", "random:10", "--profile")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "bit-exact 10/10" in out and "instructions per inference" in out
    assert "CONV_2D" in out.split("profile", 1)[1] and "%" in out


@pytest.mark.slow   # 24 s; the default suite runs the same pair in tests/commands/test_readme.py
@needs_toolchain
def test_make_flash_then_evaluate_on_the_emulated_board(tmp_path: Path) -> None:
    """The README's main job: `make flash && python -m host.evaluate` (a short run)."""
    flash = subprocess.run(["make", "flash"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert flash.returncode == 0, flash.stdout + flash.stderr
    assert "flash " in flash.stdout and "RAM " in flash.stdout and "4,194,304" in flash.stdout
    manifest = json.loads((FLASH_DIR / "mps2-an386/manifest.json").read_text())
    assert manifest["model_path"] == "models/digits_cnn_int8.tflite"

    proc = run("host.evaluate", "--num", "20", "--eps", "0.1", "--attacks", "fgsm,pgd", "--out", str(tmp_path),
               "--run-id", "e2e")
    assert proc.returncode == 0, proc.stderr
    assert "chip vs reference: bit-exact (60/60 identical)" in proc.stdout
    assert "Traceback" not in proc.stderr and "oneDNN" not in proc.stderr
    doc = json.loads((tmp_path / "e2e/metrics.json").read_text())
    assert doc["config"]["backend"] == "device" and doc["summary"]["bit_exact"]
    clean = doc["evaluations"][0]
    assert clean["chip_accuracy"] == clean["reference_accuracy"] and clean["instructions_median"] > 1e5
    assert (tmp_path / "e2e/report.md").exists()


def test_missing_toolchain_and_qemu_name_the_debian_package(monkeypatch, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    from host import flash
    from host.core.boards import load_board
    from host.core.errors import UserError, run_cli
    from host.emulators.qemu import QemuProcess

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if "arm" in name else real_which(name, *a, **k))
    assert run_cli(flash.main, ["--model", str(DEFAULT_MODEL)]) == 2
    assert "gcc-arm-none-eabi" in capsys.readouterr().err
    with pytest.raises(UserError, match="qemu-system-arm not found") as err:
        QemuProcess(load_board("mps2-an386"), tmp_path / "x.elf").command(1234)
    assert "apt-get install qemu-system-arm" in (err.value.hint or "")

"""MLPerf Tiny compatibility mode (firmware/runtime/mlperf_mode.c) in a real QEMU boot.

The digits model is built with the MLPerf option and driven the way the MLPerf Tiny runner drives a
DUT in performance mode (docs/mlperf.md): name%, profile%, db load N%, db HEX%, infer N W%, results%.
The scores must be TFLite Micro's outputs for the loaded input (dequantized, 3 decimals) and the
m-lap-us timestamps monotonic.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator

import numpy as np
import pytest
import serial

from host.compiler import CompiledModel, compile_tflite
from host.core.boards import load_board
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL
from host.emulators.qemu import QemuProcess
from host.engine.build import build_firmware, check_fits, estimate_needs
from host.engine.reference import ReferenceInterpreter
from tests.support.mlperf import expected_scores

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]
BOARDS = ["mps2-an386", "netduinoplus2"]


class Dut:
    """The runner's side of the EEMBC text protocol: send `cmd%`, read lines up to m-ready."""

    def __init__(self, link: serial.SerialBase) -> None:
        self.link, self.buffer, self.transcript = link, b"", []

    def read_until_ready(self, timeout_s: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        lines: list[str] = []
        while time.monotonic() < deadline:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode("ascii")
                lines.append(line)
                self.transcript.append(f"< {line}")
                if line == "m-ready":
                    return lines
            self.buffer += self.link.read(max(1, self.link.in_waiting))
        raise AssertionError(f"no m-ready within {timeout_s} s; got {lines} + {self.buffer!r}")

    def command(self, text: str, timeout_s: float = 60.0) -> list[str]:
        self.transcript.append(f"> {text}%" if len(text) < 80 else f"> {text[:72]}…%")
        self.link.write(text.encode("ascii") + b"%")
        return self.read_until_ready(timeout_s)


@pytest.fixture(scope="module")
def model() -> CompiledModel:
    return compile_tflite(DEFAULT_MODEL)


@pytest.fixture(scope="module", params=BOARDS)
def dut(request: pytest.FixtureRequest, model: CompiledModel,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dut]:
    board = load_board(request.param)
    image = build_firmware(model, board, out_dir=tmp_path_factory.mktemp("mlperf"), mlperf=True)
    with QemuProcess(board, image.elf) as qemu:
        link = qemu.start()
        try:
            dut = Dut(link)
            boot = dut.read_until_ready(20)
            assert boot[0] == "m-timestamp-mode-performance" and boot[-2:] == ["m-init-done", "m-ready"], boot
            yield dut
        finally:
            link.close()


def load(dut: Dut, data: bytes, chunk: int = 100) -> list[str]:
    lines = dut.command(f"db load {len(data)}")
    assert lines == [f"m-[Expecting {len(data)} bytes]", "m-ready"]
    for start in range(0, len(data), chunk):
        lines = dut.command("db " + data[start:start + chunk].hex())
    return lines


def test_name_profile_and_errors(dut: Dut, model: CompiledModel) -> None:
    assert dut.command("name") == ["m-name-dut-[slingshot]", "m-ready"]
    profile = dut.command("profile")
    assert profile[0].startswith("m-profile-[slingshot ") and profile[1] == f"m-model-[{model.name}]"
    assert dut.command("bogus arg") == ["e-[Unknown command: bogus]", "m-ready"]
    assert dut.command("db load 0")[0].startswith("e-[")
    assert dut.command("db load 999999")[0].startswith("e-[Supplied buffer size 999999")
    assert dut.command("infer 0")[0] == "e-[Inference iterations must be >0]"
    assert dut.command("\r\nname") == ["m-name-dut-[slingshot]", "m-ready"]  # line ends between commands
    assert dut.command("x" * 1500)[0].startswith("e-[Command longer than")
    stamp = dut.command("timestamp")
    assert re.fullmatch(r"m-lap-us-\d+", stamp[0]), stamp


def test_infer_matches_tflite_micro_and_timestamps_are_monotonic(dut: Dut, model: CompiledModel) -> None:
    reference = ReferenceInterpreter(DEFAULT_MODEL)
    info = model.inputs[0]
    rng = np.random.default_rng(7)
    for _ in range(3):
        x = rng.integers(np.iinfo(info.dtype).min, np.iinfo(info.dtype).max + 1, size=info.shape).astype(info.dtype)
        assert load(dut, x.tobytes())[-2:] == ["m-load-done", "m-ready"]
        lines = dut.command("infer 3 2")
        assert lines[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"], lines
        t0, t1 = (int(line.removeprefix("m-lap-us-")) for line in lines[3:5])
        assert lines[5] == "m-infer-done" and lines[-1] == "m-ready"
        assert 0 < t0 < t1
        scores = lines[6].removeprefix("m-results-[").removesuffix("]").split(",")
        assert scores == expected_scores(model, reference.run(x)), lines[6]
        assert dut.command("results") == [lines[6], "m-ready"]
    stamps = [int(line.split("-")[-1]) for line in dut.transcript if line.startswith("< m-lap-us-")]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_db_print_and_wrong_size(dut: Dut, model: CompiledModel) -> None:
    assert load(dut, bytes(range(10)))[-2:] == ["m-load-done", "m-ready"]
    assert dut.command("db print")[:2] == ["m-buffer-00-01-02-03-04-05-06-07", "m-buffer-08-09"]
    assert dut.command("infer 1 0")[0].startswith(f"e-[The model takes {model.inputs[0].nbytes} input bytes")
    assert dut.command("db load 4") == ["m-[Expecting 4 bytes]", "m-ready"]
    assert dut.command("db 0g")[0] == "e-[Invalid hex digit]"
    assert dut.command("db 001")[0].startswith("e-[Insufficent number of hex digits")


def test_fit_check_counts_the_mlperf_buffers(model: CompiledModel) -> None:
    board = load_board("netduinoplus2")
    plain = {n.region.name: n.need for n in estimate_needs(model, board)}
    mlperf = {n.region.name: n.need for n in estimate_needs(model, board, mlperf=True)}
    assert mlperf["ram"] - plain["ram"] == (model.inputs[0].nbytes + 3) // 4 * 4 + 1024
    tiny = load_board("nucleo-f446re")
    import dataclasses

    small = dataclasses.replace(tiny, ram=dataclasses.replace(tiny.ram, length=plain["ram"] + 100))
    check_fits(model, small)
    with pytest.raises(UserError, match="MLPerf db and command buffers"):
        check_fits(model, small, mlperf=True)


def test_benchmark_conversions_by_model_id(model: CompiledModel, tmp_path_factory: pytest.TempPathFactory) -> None:
    """ic01 (and vww01): uint8 data files, 128 subtracted for the int8 input, as the reference's th_load_tensor;
    ad01 on a model whose output and input differ in size: an error line instead of a wrong anomaly score
    (tests/commands/test_mlperf_runner.py checks the score itself on the ToyCar model, with the MLPerf Tiny runner)."""
    board = load_board("mps2-an386")
    reference = ReferenceInterpreter(DEFAULT_MODEL)
    info = model.inputs[0]
    pixels = np.random.default_rng(18).integers(0, 256, size=info.shape, dtype=np.uint8)
    for model_id in ("ic01", "ad01"):
        image = build_firmware(model, board, out_dir=tmp_path_factory.mktemp(model_id), mlperf=True,
                               mlperf_model_id=model_id)
        with QemuProcess(board, image.elf) as qemu:
            link = qemu.start()
            try:
                dut = Dut(link)
                dut.read_until_ready(20)
                assert load(dut, pixels.tobytes())[-2:] == ["m-load-done", "m-ready"]
                lines = dut.command("infer 1 0")
            finally:
                link.close()
        if model_id == "ic01":
            x = (pixels.astype(np.int16) - 128).astype(np.int8)
            assert lines[6] == f"m-results-[{','.join(expected_scores(model, reference.run(x)))}]", lines
        else:
            assert lines[6].startswith("e-[ad01: the model's first output and input differ in size"), lines

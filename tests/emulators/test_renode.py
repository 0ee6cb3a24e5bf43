"""Renode boards (host/emulators/renode.py, boards/renode-stm32f4, tests/renode/*.robot).

Renode is not installed in this repository's environment: the board file, the platform description,
the generated .resc and the command line are tested here; booting the firmware in Renode (the
protocol through host.link.device, and the Robot Framework test with renode-test) is skipped with a
reason when `renode` / `renode-test` are not on PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from host.compiler import compile_tflite
from host.core.boards import list_boards, load_board
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL, ROOT
from host.emulators.renode import RenodeProcess, platform_argument, script
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter
from tests.support.mlperf import expected_scores

BOARD = "renode-stm32f4"
HAS_RENODE = shutil.which("renode") is not None
HAS_GCC = shutil.which("arm-none-eabi-gcc") is not None
needs_renode = pytest.mark.skipif(not HAS_RENODE, reason="Renode is not installed (`renode` not on PATH)")
needs_renode_test = pytest.mark.skipif(shutil.which("renode-test") is None,
                                       reason="Renode's test runner is not installed (`renode-test` not on PATH)")
needs_gcc = pytest.mark.skipif(not HAS_GCC, reason="needs gcc-arm-none-eabi (make deps)")


def test_board_file() -> None:
    board = load_board(BOARD)
    assert board.emulator_kind == "renode" and board.emulated and board.method == "emulator"
    assert board.uart_base == 0x40004400 and board.emulator["uart"] == "sysbus.usart2"
    assert board.instructions_per_tick == 1 and board.emulator["performance_mips"] * 10**6 == board.clock_hz
    assert BOARD not in list_boards() and BOARD in list_boards(every=True)  # not in the QEMU matrix


def test_platform_matches_the_board_file() -> None:
    board = load_board(BOARD)
    repl = (board.directory / board.emulator["platform"]).read_text()
    blocks = {m.group(1): m.group(0) for m in re.finditer(r"^(\w+):.*?(?=^\w+:|\Z)", repl, re.M | re.S)}
    assert f"@ sysbus 0x{board.flash.origin:08X}" in blocks["flash"]
    assert f"size: 0x{board.flash.length:X}" in blocks["flash"]
    assert f"@ sysbus 0x{board.ram.origin:08X}" in blocks["sram"] and f"size: 0x{board.ram.length:X}" in blocks["sram"]
    usart = board.emulator["uart"].removeprefix("sysbus.")
    assert f"<0x{board.uart_base:08X}, +0x100>" in blocks[usart] and "nvic@38" in blocks[usart]  # uart_stm32.c's IRQ
    assert f"systickFrequency: {board.clock_hz}" in blocks["nvic"]


def test_script(tmp_path: Path) -> None:
    board = load_board(BOARD)
    elf = tmp_path / "firmware.elf"
    text = script(board, elf, 4321)
    lines = text.splitlines()
    assert f'mach create "{BOARD}"' in lines
    assert f"machine LoadPlatformDescription @{board.directory.resolve() / 'stm32f4-slingshot.repl'}" in lines
    assert "cpu PerformanceInMips 168" in lines
    assert 'emulation CreateServerSocketTerminal 4321 "term" false' in lines  # raw socket, no telnet negotiation
    assert "connector Connect sysbus.usart2 term" in lines
    assert f"    sysbus LoadELF @{elf.resolve()}" in lines and lines[-1] == "start"
    robot = script(board, elf, None, start=False)
    assert "CreateServerSocketTerminal" not in robot and "start" not in robot.splitlines()
    assert platform_argument(load_board(BOARD)).startswith("@/")
    with pytest.raises(UserError, match="not emulated by Renode"):
        script(load_board("netduinoplus2"), elf, 1)
    with pytest.raises(UserError, match="spaces"):
        script(board, tmp_path / "with space.elf", 1)


def test_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/renode/{name}" if name == "renode" else None)
    process = RenodeProcess(load_board(BOARD), tmp_path / "firmware.elf")
    command = process.command(5555)
    assert command[:5] == ["/opt/renode/renode", "--disable-xwt", "--console", "--plain", "-e"]
    assert command[5] == f"include @{process.script_path}"
    assert 'CreateServerSocketTerminal 5555 "term" false' in process.script_path.read_text()
    with pytest.raises(UserError, match="not emulated by Renode"):
        RenodeProcess(load_board("mps2-an386"), tmp_path / "x.elf")


def test_missing_renode_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="renode not found on PATH") as err:
        RenodeProcess(load_board(BOARD), tmp_path / "firmware.elf").command(1)
    assert "renode.io" in str(err.value)


@needs_gcc
def test_firmware_builds_for_renode(tmp_path: Path) -> None:
    model = compile_tflite(DEFAULT_MODEL)
    for mlperf in (False, True):
        image = build_firmware(model, load_board(BOARD), out_dir=tmp_path / str(mlperf), mlperf=mlperf)
        # a bound that catches unintended growth: 65,940 B on 2026-12-04 (DSP kernels included), 92,184 B on
        # 2026-12-06 with the 12,672 B of weights the compiler widens for the DSP kernels, 105,688 B with the
        # Winograd path (its 16 KB of transformed filters in place of 9 KB of widened weights, 5 KB of code),
        # 115,100 B (MLPERF=1) on 2026-12-07 with FULLY_CONNECTED's run of 32 six-unit bodies (2 KB of code) and
        # the assembly QUANTIZE, DEQUANTIZE and input widening
        assert image.elf.exists() and image.flash_bytes < 120 * 1024


@needs_renode
@needs_gcc
def test_digits_bit_exact_in_renode(tmp_path: Path) -> None:
    from host.backends.inputs import random_inputs
    from host.emulators.launch import boot_elf
    from host.engine.reference import ReferenceInterpreter

    model, board = compile_tflite(DEFAULT_MODEL), load_board(BOARD)
    image = build_firmware(model, board, out_dir=tmp_path)
    reference = ReferenceInterpreter(DEFAULT_MODEL)
    with boot_elf(board, image.elf, model.sha256, timeout_s=60) as device:
        for sample in random_inputs(model.inputs, 3, seed=0):
            outputs, result = device.infer_arrays(*sample)
            for ours, golden in zip(outputs, reference.run(*sample), strict=True):
                np.testing.assert_array_equal(ours, golden)
            assert result.instructions is not None and result.instructions > 0


@needs_renode_test
@needs_gcc
def test_robot_mlperf_mode(tmp_path: Path) -> None:
    model, board = compile_tflite(DEFAULT_MODEL), load_board(BOARD)
    image = build_firmware(model, board, out_dir=tmp_path / "fw", mlperf=True)
    resc = tmp_path / "run.resc"
    resc.write_text(script(board, image.elf, None, start=False))
    x = np.random.default_rng(1).integers(-128, 128, size=model.inputs[0].shape).astype(np.int8)
    hexed = x.tobytes().hex()
    chunks = " ".join(hexed[i:i + 200] for i in range(0, len(hexed), 200))
    results = "m-results-[" + ",".join(expected_scores(model, ReferenceInterpreter(DEFAULT_MODEL).run(x))) + "]"
    proc = subprocess.run(["renode-test", str(ROOT / "tests" / "renode" / "mlperf_mode.robot"),
                           "--variable", f"RESC:{resc}", "--variable", f"INPUT_HEX:{chunks}",
                           "--variable", f"INPUT_BYTES:{x.nbytes}", "--variable", f"RESULTS:{results}"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

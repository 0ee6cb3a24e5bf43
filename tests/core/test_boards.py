"""Boards are data: every board in boards/ loads, boots in QEMU and runs models bit-exact.

Default suite (about 40 s of build + QEMU on 2 cores): board files load and
validate, the tick calibration of every board agrees with its board file, the
digits model is bit-exact on every board with a consistent instruction count,
the extra-region mechanism works end to end, and models that do not fit are
refused before building. The full matrix of the ../shared models x every
board is marked slow (`make test-slow`).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from host.backends.inputs import random_inputs
from host.backends.verify import first_mismatch
from host.compiler import CompiledModel, compile_tflite
from host.core.boards import Board, MemoryRegion, list_boards, load_board, load_board_file
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL, ROOT, SHARED_DIR
from host.engine.build import (
    IO_BUFFER_BYTES,
    STACK_FRAMES_BYTES,
    build_firmware,
    check_fits,
    check_stack,
    estimate_needs,
    placed_for,
    regions_script,
    weights_script,
    without_guarded_if_short,
)

BOARDS = list_boards()
NEW_BOARDS = ["mps2-an500", "mps3-an547", "netduinoplus2"]
SHARED_MODELS = sorted((SHARED_DIR / "models").glob("*/*.tflite"))
COFFEE = SHARED_DIR / "models" / "david-goliath" / "coffee_cnn_int8.tflite"
HAS_TOOLS = shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None
needs_qemu = pytest.mark.skipif(not HAS_TOOLS, reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")
needs_shared = pytest.mark.skipif(not SHARED_MODELS, reason=f"needs the shared models in {SHARED_DIR / 'models'}")

# Digits model, instructions per inference: the M4 builds (mps2-an386, netduinoplus2) run the same
# code and agree within one tick of the coarser board (measured: 1,103,880 vs 1,103,875). The M7 and
# M55 builds are compiled for another core and agree within 3.8 % (measured +1.16 %, and -3.77 % on the
# M55, whose counted loops use Armv8.1-M's DLS/LE: docs/boards.md); the tolerance is 5 %.
SAME_CODE_TOLERANCE_TICKS = 1
OTHER_CORE_TOLERANCE = 0.05


def run_model(model: CompiledModel, path: Path, board: Board, count: int, seed: int = 0,
              out_dir: Path | None = None) -> tuple[int, list[int]]:
    """Build, boot, run `count` random inputs; return (bit-exact count, instructions per inference)."""
    from host.emulators.launch import boot_elf
    from host.engine.reference import ReferenceInterpreter

    image = build_firmware(model, board, out_dir=out_dir)
    reference = ReferenceInterpreter(path)
    exact, costs = 0, []
    with boot_elf(board, image.elf, model.sha256) as device:
        assert device.info.board == board.name and device.info.cpu == board.cpu
        assert device.info.tick_hz == board.clock_hz
        for k, sample in enumerate(random_inputs(model.inputs, count, seed)):
            outputs, result = device.infer_arrays(*sample)
            golden = reference.run(*sample)
            exact += first_mismatch(k, outputs, golden) is None
            assert result.instructions is not None
            costs.append(result.instructions)
    return exact, costs


@pytest.fixture(scope="module")
def digits() -> CompiledModel:
    return compile_tflite(DEFAULT_MODEL)


# ---- board files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BOARDS)
def test_every_board_loads(name: str) -> None:
    board = load_board(name)
    assert board.name == name and board.emulated
    assert board.flash.length > 0 and board.ram.length > 0
    ratio = board.tick_ratio
    assert ratio is not None and ratio > 0
    # The cost metric: instructions = ticks x ratio, exact for whole numbers of ticks.
    assert board.instructions(ratio.denominator * 1000) == ratio.numerator * 1000


def test_the_new_boards_are_there() -> None:
    assert set(NEW_BOARDS + [DEFAULT_BOARD]) <= set(BOARDS)
    an547, stm32 = load_board("mps3-an547"), load_board("netduinoplus2")
    assert an547.tick_ratio == Fraction(125, 4) and an547.instructions_per_tick == 31.25
    assert stm32.flash.origin == 0x08000000 and stm32.ram.origin == 0x20000000
    # ticks x instructions_per_tick is a whole instruction count even for 125/21 (what --profile prints)
    assert 72555 * stm32.instructions_per_tick == 431875 == stm32.instructions(72555)
    assert load_board(DEFAULT_BOARD).instructions_per_tick == 40


def test_unknown_board_lists_the_boards(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError) as err:
        load_board("no-such-board")
    assert "unknown board 'no-such-board'" in str(err.value)
    assert all(name in str(err.value) for name in BOARDS)

    from host.check import main as check_main

    assert run_cli(check_main, ["--model", str(DEFAULT_MODEL), "--board", "no-such-board"]) == 2
    stderr = capsys.readouterr().err
    assert "unknown board" in stderr and all(name in stderr for name in BOARDS)


GOOD = (ROOT / "boards" / DEFAULT_BOARD / "board.toml").read_text()


@pytest.mark.parametrize(("edit", "field"), [
    (lambda t: t.replace('cpu = "cortex-m4"', ""), "'cpu' is missing"),
    (lambda t: t.replace("origin = 0x20000000", 'origin = "0x20000000"'), "'memory.ram.origin' must be an int"),
    (lambda t: t.replace("clock_hz = 25_000_000", "clock_hz = -1"), "'clock_hz' must be positive"),
    (lambda t: t.replace('float_abi = "hard"', 'float_abi = "fast"'), "'float_abi' must be one of"),
    (lambda t: t.replace('driver = "cmsdk"', 'driver = "pl011"'), "'uart.driver'"),
    (lambda t: t.replace("instructions_per_tick = 40", 'instructions_per_tick = "forty"'),
     "'emulator.instructions_per_tick'"),
    (lambda t: t + '\n[memory.ccm]\norigin = 0x20100000\nlength = 0x1000\nholds = ["stack"]\n',
     "'memory.ccm' overlaps memory.ram"),
    (lambda t: t + '\n[memory.ccm]\norigin = 0x10000000\nlength = 0x1000\nholds = ["heap"]\n',
     "'memory.ccm.holds' unknown item 'heap'"),
    (lambda t: t + '\n[memory.a]\norigin = 0x10000000\nlength = 0x1000\nholds = ["stack"]\n'
                   '[memory.b]\norigin = 0x11000000\nlength = 0x1000\nholds = ["stack"]\n',
     "'memory.b.holds' 'stack' is already placed in memory.a"),
    (lambda t: t + '\n[memory.ccm]\norigin = 0x10000000\nlength = 0x1000\noverflow = ["code"]\n',
     "'memory.ccm.overflow' unknown item 'code'"),
    (lambda t: t + '\n[memory.ccm]\norigin = 0x10000000\nlength = 0x1000\nholds = ["arena"]\noverflow = ["arena"]\n',
     "'memory.ccm.overflow' 'arena' is in holds already"),
    (lambda t: t.replace("[memory.ram]", '[memory.ram]\noverflow = ["arena"]'), "only extra regions take 'overflow'"),
    (lambda t: t.replace("[uart]", "[uart\n"), "not valid TOML"),
])
def test_invalid_board_file_names_file_and_field(tmp_path: Path, edit, field: str) -> None:  # noqa: ANN001
    path = tmp_path / DEFAULT_BOARD / "board.toml"
    path.parent.mkdir()
    path.write_text(edit(GOOD))
    with pytest.raises(UserError) as err:
        load_board_file(path)
    assert str(path) in str(err.value) and field in str(err.value), str(err.value)


def test_board_name_must_match_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "renamed" / "board.toml"
    path.parent.mkdir()
    path.write_text(GOOD)
    with pytest.raises(UserError, match="field 'name' must match the folder name 'renamed'"):
        load_board_file(path)


def psram_board() -> Board:
    """mps2-an386 with stack, I/O buffers and arena moved to its 16 MiB PSRAM (0x21000000, mapped by QEMU)."""
    base = load_board(DEFAULT_BOARD)
    return dataclasses.replace(base, name="mps2-an386-psram", regions=(
        MemoryRegion(0x21000000, 0x01000000, "psram", ("stack", "io_buffers", "arena")),))


def test_regions_script_places_items_and_zero_table() -> None:
    script = regions_script(psram_board())
    assert ".psram (NOLOAD)" in script and "} > PSRAM" in script
    assert "*(.bss.tm_io)" in script and "model.o(.bss.arena)" in script and "__stack_top = .;" in script
    assert "LONG(__psram_start) LONG(__psram_end)" in script
    plain = regions_script(load_board(DEFAULT_BOARD))
    assert "__zero_table_start = 0;" in plain and "NOLOAD" not in plain


# ---- fit check -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BOARDS)
def test_digits_fits_every_board(digits: CompiledModel, name: str) -> None:
    check_fits(digits, load_board(name))


@needs_shared
@pytest.mark.parametrize("name", ["mps2-an386", "mps3-an547"])
def test_the_kernels_scratch_fits_every_boards_stack(name: str) -> None:
    """The int16x8 CIFAR ResNet holds the most scratch (its first CONV_2D's widened weights and staged taps)."""
    model = compile_tflite(SHARED_DIR / "models" / "david-goliath" / "cifar_resnet_int16.tflite")
    check_stack(model, load_board(name))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi (make deps)")
def test_a_stack_too_small_for_the_kernels_is_refused(digits: CompiledModel, tmp_path: Path) -> None:
    board = dataclasses.replace(load_board("mps2-an386"), stack_bytes=STACK_FRAMES_BYTES)
    with pytest.raises(UserError, match=r"bytes of stack on mps2-an386 .* stack_bytes = 2,048") as err:
        build_firmware(digits, board, tmp_path)
    assert "raise stack_bytes in boards/mps2-an386/board.toml" in str(err.value.hint)
    assert not (tmp_path / "firmware.elf").exists()


def test_estimate_follows_the_placement(digits: CompiledModel) -> None:
    needs = {n.region.name: n for n in estimate_needs(digits, psram_board())}
    assert dict(needs["psram"].parts) == {"arena": 2048, "I/O buffers": IO_BUFFER_BYTES, "stack": 16384}
    assert set(dict(needs["ram"].parts)) == {"other statics"}


@needs_shared
def test_coffee_cnn_refused_on_netduinoplus2_before_building() -> None:
    board = load_board("netduinoplus2")
    model, _ = without_guarded_if_short(compile_tflite(COFFEE), board)  # as the build does: the DSP copies go
    with pytest.raises(UserError) as err:
        check_fits(model, board)
    message = str(err.value)
    assert "does not fit board netduinoplus2" in message and "memory.ram (0x20000000, 131,072 bytes)" in message
    short = int(message.split("short by ")[1].split(" bytes")[0].replace(",", ""))
    expected = model.arena_bytes + IO_BUFFER_BYTES + 16384 + 1024 - 131072
    assert short == expected
    assert "boards with room for it" in message and "mps3-an547" in message


@needs_shared
@pytest.mark.parametrize("command", ["host.check", "host.flash"])
def test_refusal_is_a_clean_cli_error(command: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", command, "--model", str(COFFEE), "--board", "netduinoplus2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "memory.ram" in result.stderr and "short by" in result.stderr
    assert not (ROOT / "build" / "netduinoplus2" / COFFEE.stem / "firmware.elf").exists()


def test_link_overflow_names_the_region(digits: CompiledModel, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAS_TOOLS:
        pytest.skip("needs gcc-arm-none-eabi")
    # Should the estimate ever pass a model that the exact link refuses, the linker's verdict is
    # reported with the board file's region name and the shortfall.
    import host.engine.build

    monkeypatch.setattr(host.engine.build, "check_fits", lambda model, board: None)
    tight = dataclasses.replace(load_board(DEFAULT_BOARD), name="tight", ram=MemoryRegion(0x20000000, 8192, "ram"))
    with pytest.raises(UserError) as err:
        build_firmware(digits, tight, out_dir=tmp_path)
    message = str(err.value)
    assert "firmware link failed for board tight" in message and "memory.ram is short by" in message, message
    assert "Traceback" not in message and "does not fit the board's memory" in message


# ---- in QEMU ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_runs(digits: CompiledModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, list[int]]]:
    """The portable kernels on every board: the same C everywhere, so costs are comparable across
    boards (the optimized kernels differ per CPU: tests/engine/test_kernels_opt.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TM_KERNELS", "portable")
        return {name: run_model(digits, DEFAULT_MODEL, load_board(name), count=5,
                                out_dir=tmp_path_factory.mktemp(f"portable-{name}")) for name in BOARDS}


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", BOARDS)
def test_digits_bit_exact_on_every_board(digits_runs: dict[str, tuple[int, list[int]]], name: str) -> None:
    exact, costs = digits_runs[name]
    assert exact == 5
    # One cost per inference, measured per inference: the digits model's cost depends a little on the
    # input (data-dependent branches), so a counter stuck at one value would show as a single value.
    # Measured (portable kernels, seed 0): 3 or 4 distinct values of 5 on every board, spreads of
    # 160-281 instructions (0.02 %) around 1.06-1.12 M; the bound is 0.1 %, so the count is consistent.
    assert len(costs) == 5 and min(costs) > 1_000_000
    assert len(set(costs)) >= 2, costs
    assert max(costs) - min(costs) <= 0.001 * float(np.median(costs)), costs


@needs_qemu
@pytest.mark.qemu
def test_digits_instruction_count_consistent_across_boards(digits_runs: dict[str, tuple[int, list[int]]]) -> None:
    reference = float(np.median(digits_runs[DEFAULT_BOARD][1]))
    assert 1_103_000 <= reference < 1_104_500  # the documented cost on mps2-an386 (docs/boards.md)
    for name in BOARDS:
        board = load_board(name)
        cost = float(np.median(digits_runs[name][1]))
        if board.cpu == load_board(DEFAULT_BOARD).cpu and board.fpu == load_board(DEFAULT_BOARD).fpu:
            coarsest = max(float(board.tick_ratio or 1), 40.0)
            assert abs(cost - reference) <= SAME_CODE_TOLERANCE_TICKS * coarsest, (name, cost, reference)
        else:
            assert abs(cost - reference) <= OTHER_CORE_TOLERANCE * reference, (name, cost, reference)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", BOARDS)
def test_tick_calibration_matches_board_file(name: str) -> None:
    from host.emulators.qemu import calibrate

    board = load_board(name)
    result = calibrate(board)
    assert board.tick_ratio is not None
    assert result.agrees_with(board.tick_ratio), (result, float(board.tick_ratio))


@needs_qemu
@pytest.mark.qemu
def test_extra_region_holds_stack_buffers_and_arena(digits: CompiledModel, tmp_path: Path) -> None:
    board = psram_board()
    image = build_firmware(digits, board, out_dir=tmp_path)
    symbols = {}
    nm = subprocess.run(["arm-none-eabi-nm", str(image.elf)], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16)
    psram = board.regions[0]
    for name in ("arena", "rx_payload", "tx_payload", "op_ticks", "__stack_top", "_estack"):
        assert psram.contains(symbols[name]) or symbols[name] == psram.end, name
    assert image.region_bytes["psram"] >= 2048 + IO_BUFFER_BYTES + 16384
    assert image.ram_bytes < 1024  # only the other statics stay in RAM
    assert any(line.startswith("psram") and "stack" in line for line in image.usage_lines())
    exact, _ = run_model(digits, DEFAULT_MODEL, board, count=3, out_dir=tmp_path)
    assert exact == 3


# ---- the shared models on every board (slow) ---------------------------------------------------


@needs_qemu
@needs_shared
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("name", BOARDS)
@pytest.mark.parametrize("path", SHARED_MODELS, ids=[p.stem for p in SHARED_MODELS])
def test_shared_model_on_board(path: Path, name: str) -> None:
    board = load_board(name)
    model = compile_tflite(path)
    if any(n.short_by > 0 for n in estimate_needs(model, placed_for(model, board))):
        with pytest.raises(UserError, match="short by"):  # refused before building, with the shortfall
            check_fits(model, board)
        return
    exact, costs = run_model(model, path, board, count=3, seed=1)
    assert exact == 3, (path.stem, name, costs)


# ---- overflow regions: a model bigger than the TCMs of the M55 ----------------------------------------


def big_fully_connected(depth: int = 300_000, units: int = 2) -> bytes:
    """One int16x8 FULLY_CONNECTED: depth × units int8 weights and a depth-long int16 input (600 KB each)."""
    from tests.support.tflite_builder import GraphBuilder, _bias, fb

    rng = np.random.default_rng(1)
    g = GraphBuilder()
    x = g.tensor((1, depth), "int16", 0.01, 0)
    f = g.tensor((units, depth), "int8", 0.003, 0, rng.integers(-127, 128, size=(units, depth), dtype=np.int8))
    bias, bias_type = _bias(rng, "int16", units, 3000)
    b = g.tensor((units,), bias_type, 0.01 * 0.003, 0, bias)
    y = g.tensor((1, units), "int16", 0.5, 0)
    g.op("FULLY_CONNECTED", [x, f, b], [y], fb.FullyConnectedOptionsT())
    return g.build([x], [y])


def test_overflow_moves_only_what_does_not_fit(digits: CompiledModel) -> None:
    m55 = load_board("mps3-an547")
    assert placed_for(digits, m55) is m55            # fits the TCMs: nothing moves
    assert "none" in weights_script(m55)
    big = compile_bytes_cached(big_fully_connected())
    placed = placed_for(big, m55)
    assert placed.region_of("weights").name == "sram" and placed.region_of("arena").name == "isram"
    assert placed.region_of("io_buffers").name == "ram" and placed.region_of("stack").name == "ram"
    script = weights_script(placed)
    assert ".sram_weights : ALIGN(16)" in script and "model.o(.rodata.t[0-9]*_data)" in script
    assert "NOLOAD" not in script
    with pytest.raises(UserError, match="memory.flash"):   # without the overflow regions: refused, as before
        check_fits(big, dataclasses.replace(m55, regions=()))


@pytest.mark.slow   # about 40 s: 600 KB of input over the emulated UART per inference
@pytest.mark.skipif(not HAS_TOOLS, reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")
def test_model_bigger_than_the_tcms_runs_bit_exact_on_the_m55(tmp_path: Path) -> None:
    """600 KB of weights (ITCM: 512 KiB) go to the SRAM and a 600 KB arena (DTCM: 512 KiB) to the ISRAM;
    QEMU loads the weights with the image; two inferences equal TFLite Micro's."""
    from tests.support.chip import assert_bit_exact_on_chip

    data = big_fully_connected()
    model = compile_bytes_cached(data)
    image = build_firmware(model, load_board("mps3-an547"), tmp_path / "build")
    assert image.region_bytes["sram"] == model.weights_bytes and image.region_bytes["isram"] >= model.arena_bytes
    assert image.flash_bytes < 100_000
    assert_bit_exact_on_chip("mps3-an547", tmp_path / "chip", data, "big FC", np.random.default_rng(0), model=model,
                             inputs=2)


_COMPILED: dict[bytes, CompiledModel] = {}


def compile_bytes_cached(data: bytes) -> CompiledModel:
    from host.compiler.compile import compile_bytes

    if data not in _COMPILED:
        _COMPILED[data] = compile_bytes(data, name="big_fc")
    return _COMPILED[data]

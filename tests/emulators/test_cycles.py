"""The QEMU cycle plugin and the Cortex-M4 cycle model against cycle counts done by hand.

tests/emulators/cycles/microbench.S holds bare-metal micro-benchmarks for mps2-an386 whose cycles are
counted by hand from the Cortex-M4 TRM (Table 3-1, 3.3.2 "Load/store timings"), each as
constant + k·P (P: pipeline refill, 1..3) plus divides at 2..12 cycles. They run once under
QEMU with the plugin; the model's low (P = 1) and high (P = 3) estimates must equal the hand
counts exactly, and the plugin's instruction counts the instructions executed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from host.core.boards import Board, MemoryRegion, load_board
from host.core.paths import DEFAULT_MODEL
from host.core.timing import CpuTiming, is_instruction_counter, timing_for, wait_states
from host.emulators.cycles import (
    PLUGIN_DIR,
    CyclePlugin,
    CyclesUnavailable,
    Markers,
    Window,
    build_plugin,
    call_markers,
    function_counts,
    qemu_version,
)
from host.emulators.qemu import QemuProcess, calibrate, run_windows

pytestmark = pytest.mark.qemu
HERE = Path(__file__).parent / "cycles"
BOARD = "mps2-an386"


@dataclass(frozen=True)
class HandCount:
    """Cycles = constant + refills·P + divides·(2..12), counted from the TRM beside the code."""
    constant: int
    refills: int
    instructions: int
    divides: int = 0

    def at(self, p: int, divide: int) -> int:
        return self.constant + self.refills * p + self.divides * divide


HAND_COUNTS = {
    "bench_load_run": HandCount(14, 2, 10),
    "bench_smlad_loop": HandCount(403, 51, 1 + 1 + 50 * 7 + 1),
    "bench_taken_loop": HandCount(203, 101, 1 + 1 + 100 * 2 + 1),
    "bench_branch_kinds": HandCount(6, 4, 6),
    "bench_load_multiple": HandCount(32, 2, 7),
    "bench_divide": HandCount(4, 2, 7, divides=3),
    "bench_multiply_it": HandCount(17, 4, 15),
    "bench_unaligned": HandCount(10, 2, 5),
    "bench_page_edge": HandCount(8, 2, 7),
    "bench_address_dependency": HandCount(15, 2, 9),
}


def assemble(out_dir: Path) -> Path:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    elf = out_dir / "microbench.elf"
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles", "-T", str(HERE / "microbench.ld"),
                    str(HERE / "microbench.S"), "-o", str(elf)], check=True)
    return elf


def run_benchmarks(board: Board, elf: Path) -> tuple[dict[str, Window], dict[str, Window]]:
    """The two passes over the benchmarks: every data access watched, then the learned ones counted inline."""
    markers = call_markers(elf, tuple(HAND_COUNTS))
    plugin = replace(CyclePlugin.for_markers(board, elf, markers), learn_after=len(HAND_COUNTS))
    windows = run_windows(board, elf, plugin, 2 * len(HAND_COUNTS))
    assert plugin.learned and plugin.learned > 20  # the second pass counts most accesses inline
    first, second = windows[:len(HAND_COUNTS)], windows[len(HAND_COUNTS):]
    return {markers.names[w.start]: w for w in first}, {markers.names[w.start]: w for w in second}


@pytest.fixture(scope="module")
def microbench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Board, Path, dict[str, Window], CpuTiming,
                                                                  dict[str, Window]]:
    board = load_board(BOARD)
    elf = assemble(tmp_path_factory.mktemp("microbench"))
    timing = timing_for(board)
    assert timing is not None
    watched, learned = run_benchmarks(board, elf)
    return board, elf, watched, timing, learned


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_model_predicts_the_hand_count(microbench: tuple, name: str) -> None:
    board, _, windows, timing, _ = microbench
    hand = HAND_COUNTS[name]
    estimate = timing.estimate(windows[name].counts, wait_states(board))
    assert (estimate.low, estimate.high) == (hand.at(1, 2), hand.at(3, 12))
    assert estimate.instructions == hand.instructions


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_learned_accesses_count_as_the_watched_ones(microbench: tuple, name: str) -> None:
    """The second pass counts the data accesses it learned in the first inline: the same counts."""
    watched, learned = microbench[2], microbench[4]
    assert learned[name].counts == watched[name].counts


def test_classes_and_regions_of_the_load_run(microbench: tuple) -> None:
    counts = microbench[2]["bench_load_run"].counts
    assert {k: counts[k] for k in ("load", "load_pipelined", "store", "store_pipelined", "branch")} == \
        {"load": 3, "load_pipelined": 3, "store": 1, "store_pipelined": 1, "branch": 2}
    assert (counts["read.ram"], counts["write.ram"], counts["read.flash"], counts["write.flash"]) == (5, 2, 1, 0)
    assert counts["fetch_bytes.flash"] == 24 and counts["fetch_bytes.ram"] == 0


def test_branch_and_multiple_counts(microbench: tuple) -> None:
    windows = microbench[2]
    loop = windows["bench_smlad_loop"].counts
    assert (loop["branch_cond_taken"], loop["branch_cond_not_taken"], loop["dsp"]) == (49, 1, 150)
    kinds = windows["bench_branch_kinds"].counts
    assert (kinds["branch_cond_taken"], kinds["branch_cond_not_taken"], kinds["branch"]) == (1, 1, 3)
    multiple = windows["bench_load_multiple"].counts
    assert (multiple["load_multiple_regs"], multiple["store_multiple_regs"], multiple["load_multiple_pc"]) == (12, 9, 1)
    assert (multiple["read.ram"], multiple["write.ram"]) == (14, 11)
    assert windows["bench_unaligned"].counts["unaligned_penalty"] == 4
    assert windows["bench_page_edge"].counts["other"] == 0
    assert windows["bench_page_edge"].counts["fetch_bytes.flash"] == 18
    assert windows["bench_address_dependency"].counts["address_dependency_penalty"] == 2


def test_wait_states_are_charged_per_access_and_fetched_word(microbench: tuple) -> None:
    board, _, windows, timing, _ = microbench
    slow = replace(board, flash=replace(board.flash, wait_states=1), ram=replace(board.ram, wait_states=2))
    counts = windows["bench_load_run"].counts
    base = timing.estimate(counts, wait_states(board))
    charged = timing.estimate(counts, wait_states(slow))
    # flash: 1 data read + 24 fetched bytes = 6 words, 1 wait state each; RAM: 7 accesses, 2 each
    assert charged.low - base.low == charged.high - base.high == (1 + 6) * 1 + 7 * 2


def test_plugin_leaves_instruction_counts_unchanged() -> None:
    """The calibration firmware's tick counts (no idle time: deterministic) with and without the plugin."""
    board = load_board(BOARD)
    from host.engine.build import build_calibration

    elf = build_calibration(board).elf
    without = calibrate(board)
    with_plugin = calibrate(board, plugin=CyclePlugin.for_markers(board, elf, Markers((), ())))
    assert with_plugin.ticks == without.ticks


def test_plugin_that_qemu_refuses_is_one_clear_error(tmp_path: Path) -> None:
    board = load_board(BOARD)
    elf = assemble(tmp_path)
    plugin = CyclePlugin(build_plugin(api_version=99), call_markers(elf, "bench_load_run"),
                         (("ram", 0x20000000, 0x400000),), tmp_path / "out.cycles")
    with pytest.raises(CyclesUnavailable) as caught, QemuProcess(board, elf, plugin=plugin) as qemu:
        qemu.start()
    message = str(caught.value)
    assert message.startswith(f"QEMU {qemu_version()} cannot load the cycle plugin, written for QEMU plugin API "
                              "version 1: plugin requires API version 99, but this QEMU supports only up to version 1")


def test_region_wait_states_are_validated(tmp_path: Path) -> None:
    from host.core.boards import load_board_file
    from host.core.errors import UserError

    text = (Path(load_board(BOARD).directory) / "board.toml").read_text()
    board_dir = tmp_path / "slow-board"
    board_dir.mkdir()
    (board_dir / "board.toml").write_text(text.replace('name = "mps2-an386"', 'name = "slow-board"').replace(
        "length = 0x00400000\n\n[memory.ram]", "length = 0x00400000\nwait_states = 2\n\n[memory.ram]"))
    board = load_board_file(board_dir / "board.toml")
    assert board.flash == MemoryRegion(0, 0x400000, "flash", (), 2)
    (board_dir / "board.toml").write_text(text.replace('name = "mps2-an386"', 'name = "slow-board"').replace(
        "length = 0x00400000\n\n[memory.ram]", "length = 0x00400000\nwait_states = -1\n\n[memory.ram]"))
    with pytest.raises(UserError, match="memory.flash.wait_states"):
        load_board_file(board_dir / "board.toml")


DIGITS = DEFAULT_MODEL


def test_check_prints_cycles_per_inference_and_per_op() -> None:
    result = subprocess.run([sys.executable, "-m", "host.check", "--model", str(DIGITS), "--inputs", "random:2",
                             "--cycles", "--profile", "--functions", "4"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    instructions = int(re.search(r"cost\s+([\d,]+) instructions", out).group(1).replace(",", ""))
    cycles = re.search(r"cycles\s+([\d,]+)–([\d,]+) estimated Cortex-M4 cycles per inference "
                       r"\(P = 1\.\.3, median of 2; ([\d,]+) instructions counted by the plugin, "
                       r"CPI ([\d.]+)–([\d.]+)\)", out)
    assert cycles is not None, out
    low, high, counted = (int(cycles.group(i).replace(",", "")) for i in (1, 2, 3))
    assert instructions < low < high < 3 * instructions
    # the window is the call of tm_invoke, the ticks run between two reads of SysTick around it
    assert abs(counted - instructions) <= 2 * 40
    latency = re.search(r"latency\s+([\d.]+)–([\d.]+) ms at 25 MHz", out)
    assert latency is not None and float(latency.group(1)) == pytest.approx(low / 25e6 * 1e3, abs=0.01)
    per_op = re.findall(r"^\s+\d+ (\w+)\s+([\d,]+)\s+[\d.]+ %\s+([\d,]+)\s+([\d,]+)$", out, re.MULTILINE)
    assert [op for op, *_ in per_op][:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"]
    op_low = sum(int(lo.replace(",", "")) for _, _, lo, _ in per_op)
    assert 0.97 * low < op_low <= low
    functions = re.findall(r"^  ([A-Za-z_]\w*)\s+([\d,]+)\s+([\d,]+)\s+[\d.]+ %\s+([\d,]+)$", out, re.MULTILINE)
    assert len(functions) == 4 and sum(int(f[2].replace(",", "")) for f in functions) < 1.02 * low
    assert functions[0][0] == "wino_pair"   # the 3x3 16 -> 32 layer's Winograd loop leads on the digits CNN
    assert "bit-exact 2/2" in out


def test_no_cycle_model_means_instructions_only() -> None:
    from host.backends.verify import cycle_counting

    board = load_board("mps2-an500")
    timing, plugin, note = cycle_counting(board, None, profile=False)  # type: ignore[arg-type]
    assert timing is None and plugin is None
    assert note == ("board mps2-an500: no cycle model for cortex-m7 (boards/cpus/cortex-m7.toml is absent; "
                    "docs/performance.md): instructions only")


def test_check_goes_on_without_cycles_when_qemu_refuses_the_plugin(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from host import check
    from host.emulators import cycles

    real_build = cycles.build_plugin
    monkeypatch.setattr(cycles, "build_plugin", lambda: real_build(api_version=99))
    assert check.main(["--model", str(DIGITS), "--inputs", "random:1", "--cycles"]) == 0
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"QEMU {qemu_version()} cannot load the cycle plugin, written for QEMU plugin API version 1" in errors[0]
    assert "plugin requires API version 99, but this QEMU supports only up to version 1" in errors[0]
    assert "bit-exact 1/1" in captured.out and "instructions per inference" in captured.out
    assert "cycles " not in captured.out


CONDITIONS = ("eq", "ne", "cs", "cc", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le")
EXPECTED_CLASS = {
    **dict.fromkeys(("ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrex", "ldrexb", "ldrexh", "strex"), "load"),
    **dict.fromkeys(("str", "strb", "strh"), "store"),
    "ldrd": "load_double", "strd": "store_double", "tbb": "table_branch", "tbh": "table_branch",
    **dict.fromkeys(("ldmia", "ldm", "ldmdb", "pop"), "load_multiple"),
    **dict.fromkeys(("stmia", "stm", "stmdb", "push"), "store_multiple"),
    **dict.fromkeys(("b", "bl", "bx", "blx"), "branch"), **dict.fromkeys(("cbz", "cbnz"), "branch_cond_taken"),
    **dict.fromkeys(("mul", "muls", "mla", "mls", "smull", "umull", "smlal", "umlal"), "mul"),
    **dict.fromkeys(("sdiv", "udiv"), "div"), **dict.fromkeys(("dsb", "dmb", "isb"), "barrier"),
    **dict.fromkeys(("smlad", "smladx", "smuad", "smlabb", "smlabt", "smlatb", "smlatt", "smulbb", "smulbt",
                     "smultb", "smultt", "smlawb", "smlawt", "smulwb", "smulwt", "smlalbb", "smlald", "smmul",
                     "smmulr", "smmla", "smmlar", "sxtb16", "sxtab16", "uxtb16", "uxtab16", "qadd", "qsub", "qadd16",
                     "qadd8", "qsub8", "sadd16", "sadd8", "ssub8", "ssub16", "uadd8", "usub8", "sel", "ssat16",
                     "usat16", "usada8", "usad8", "shadd16"), "dsp"),
    **dict.fromkeys(("vldr",), "fp_load"), **dict.fromkeys(("vstr",), "fp_store"),
    **dict.fromkeys(("vldmia", "vpop"), "fp_load_multiple"), **dict.fromkeys(("vstmia", "vpush", "vstmdb"),
                                                                            "fp_store_multiple"),
    **dict.fromkeys(("vdiv", "vsqrt"), "fp_div"), **dict.fromkeys(("vmla", "vmls", "vfma", "vfms"), "fp_mac"),
    **dict.fromkeys(("udf", "svc", "bkpt"), "other"),
}


def unconditional_b(hw1: str, hw2: str | None) -> bool:
    """B's T2 (16-bit) or T4 (32-bit) encoding, which objdump shows as B<cond> inside an IT block."""
    first = int(hw1, 16)
    if hw2 is None:
        return first >> 11 == 0b11100
    return first >> 11 == 0b11110 and int(hw2, 16) & 0xD000 == 0x9000


def expected_class(mnemonic: str, operands: str, hw1: str = "0000", hw2: str | None = None) -> str:
    name = mnemonic.split(".")[0]
    if name[:1] == "b" and name[1:] in CONDITIONS:
        # B<cond>: the class of a taken one, decided when it runs; an unconditional B made conditional by its IT
        # block is a branch marked conditional (the same cycles: 1 + P taken, 1 not)
        return "branch" if unconditional_b(hw1, hw2) else "branch_cond_taken"
    if name.startswith("it") and set(name[2:]) <= {"t", "e"}:
        return "it"
    if name not in EXPECTED_CLASS and name[:-2] in EXPECTED_CLASS and name[-2:] in CONDITIONS:
        name = name[:-2]   # a condition suffix (in an IT block)
    cls = EXPECTED_CLASS.get(name, "fp" if name.startswith("v") else "alu")
    writes_pc = operands.startswith("pc,") or ("pc}" in operands and cls == "load_multiple")
    if cls == "load" and writes_pc:
        return "load_pc"
    if cls == "load_multiple" and writes_pc:
        return "load_multiple_pc"
    return cls


def test_decoder_agrees_with_objdump_on_a_whole_firmware(tmp_path: Path) -> None:
    """Every instruction of the digits firmware (engine, DSP kernels, runtime, libc) gets the class its
    objdump mnemonic says, and LDM/STM/PUSH/POP their register count."""
    from host.compiler import compile_tflite
    from host.engine.build import build_firmware, toolchain

    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("no host gcc")
    harness = tmp_path / "classify"
    plugin_dir = PLUGIN_DIR
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{plugin_dir}", str(HERE / "classify.c"),
                    str(plugin_dir / "thumb_timing.c"), "-o", str(harness)], check=True)
    elf = build_firmware(compile_tflite(DIGITS), load_board(BOARD)).elf
    disassembly = subprocess.run([toolchain("objdump"), "-d", str(elf)], capture_output=True, text=True).stdout
    line_re = re.compile(r"^\s*[0-9a-f]+:\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+\t(\S+)\s*(.*)$")
    rows = [m.groups() for m in map(line_re.match, disassembly.splitlines()) if m and not m.group(3).startswith(".")]
    assert len(rows) > 3000
    feed = "".join(f"{1 if hw2 else 0} {hw1} {hw2 or '0'}\n" for hw1, hw2, _, _ in rows)
    classified = subprocess.run([str(harness)], input=feed, capture_output=True, text=True, check=True).stdout
    wrong = []
    for (hw1, hw2, mnemonic, operands), line in zip(rows, classified.splitlines(), strict=True):
        cls, regs = line.split()
        want = expected_class(mnemonic, operands, hw1, hw2)
        if cls != want:
            wrong.append(f"{hw1} {hw2 or ''} {mnemonic} {operands}: {cls}, expected {want}")
        elif cls.startswith(("load_multiple", "store_multiple")):
            listed = re.search(r"\{(.*)\}", operands).group(1).split(",")
            if int(regs) != len(listed):
                wrong.append(f"{mnemonic} {operands}: {regs} registers")
    assert not wrong, "\n".join(wrong[:20])


def test_cycles_need_the_chip(capsys: pytest.CaptureFixture[str]) -> None:
    from host import check
    from host.core.errors import run_cli

    assert run_cli(check.main, ["--model", str(DIGITS), "--target", "native", "--cycles"]) == 2
    assert "error: --cycles needs the chip (--target chip)" in capsys.readouterr().err
    assert run_cli(check.main, ["--model", str(DIGITS), "--functions", "3"]) == 2
    assert "error: --functions N needs --cycles" in capsys.readouterr().err


@pytest.mark.slow   # about 19 s: an evaluate run and a check run, both with the plugin
@pytest.mark.usefixtures("flashed_default_board")   # host.evaluate runs what is flashed
def test_evaluate_reports_the_cycles_that_check_estimates(tmp_path: Path) -> None:
    """`host.evaluate --cycles`: every chip unit counts with the plugin; the journal keeps each inference's
    estimate, whose median equals host.check --cycles on the same inputs (same firmware, same windows), and
    the console table and report.md show it."""
    import json
    import sqlite3

    import numpy as np

    from host.core.data import load_digits_split
    from host.study.units import from_npz

    n = 5   # odd: both medians are one inference's estimate (check prints its median rounded)
    run = subprocess.run([sys.executable, "-m", "host.evaluate", "--num", str(n), "--attacks", "none", "--cycles",
                          "--workers", "0", "--no-progress", "--out", str(tmp_path), "--run-id", "cyc"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "median cycles (est.)" in run.stdout
    assert "median cycles (est.)" in (tmp_path / "cyc" / "report.md").read_text()
    clean = json.loads((tmp_path / "cyc" / "metrics.json").read_text())["evaluations"][0]
    median = clean["cycles_median"]
    assert median["n"] == n
    with sqlite3.connect(tmp_path / "cyc" / "results.sqlite") as db:
        rows = db.execute("SELECT result FROM units WHERE kind = 'chip' ORDER BY key").fetchall()
    per_inference = np.concatenate([from_npz("chip", blob).cycles for (blob,) in rows])
    assert per_inference.shape == (n, 2) and (per_inference > 0).all()
    assert (median["low"], median["high"]) == tuple(np.median(per_inference, axis=0))

    _, _, x_test, _ = load_digits_split()
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=x_test[:n])
    check = subprocess.run([sys.executable, "-m", "host.check", "--model", str(DIGITS), "--inputs", str(inputs),
                            "--input-range", "0,1", "--cycles"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    found = re.search(r"cycles\s+([\d,]+)–([\d,]+) estimated", check.stdout)
    assert found is not None, check.stdout
    assert (median["low"], median["high"]) == tuple(float(found.group(i).replace(",", "")) for i in (1, 2))


def test_executions_per_address_sum_to_each_function(tmp_path: Path) -> None:
    """pcs=: executions per instruction address inside the windows, summed per function of the ELF's
    symbol table (host.check --functions), give each micro-benchmark's instruction count once per
    window (its `bl` is its caller's; the benchmarks run in a loop, so each ran some whole number of times)."""
    board = load_board(BOARD)
    elf = assemble(tmp_path)
    markers = call_markers(elf, tuple(HAND_COUNTS))
    plugin = replace(CyclePlugin.for_markers(board, elf, markers), learn_after=0, pcs=tmp_path / "microbench.pcs")
    run_windows(board, elf, plugin, len(HAND_COUNTS), keep_files=True)
    per_function = function_counts(elf, plugin.read_pcs())
    plugin.discard()
    for name, hand in HAND_COUNTS.items():
        executed = sum(n for c, n in per_function[name].items() if is_instruction_counter(c))
        assert executed >= hand.instructions - 1 and executed % (hand.instructions - 1) == 0, (name, executed)

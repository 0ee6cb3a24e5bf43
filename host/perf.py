"""`python -m host.perf` (part of `make bench`): the MLPerf Tiny models on every emulated board,
portable reference kernels vs the optimized ones, in instructions per inference (QEMU
-icount shift=0: deterministic), with arena and flash bytes, and the optimized build's estimated
cycles on boards whose CPU has a cycle model (QEMU's cycle plugin, host.core.timing); issue 17's
cycle targets and its int16x8-against-int8 target judged from them.
Writes docs/performance.md, keeping what follows its hand-written marker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from host.backends.inputs import random_inputs
from host.compiler import compile_tflite
from host.core.boards import load_board
from host.core.errors import UserError, run_cli
from host.core.paths import BUILD_DIR, ROOT, SHARED_DIR
from host.core.timing import timing_for, wait_states
from host.emulators.cycles import CyclePlugin, CyclesUnavailable
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware, check_fits

MODELS = {
    "ResNet-8 (IC)": "mlperf-tiny/pretrainedResnet_quant.tflite",
    "MobileNetV1-0.25 VWW": "mlperf-tiny/vww_96_int8.tflite",
    "DS-CNN KWS": "mlperf-tiny/kws_ref_model.tflite",
    "ToyCar AD": "mlperf-tiny/model_ToyCar_quant_fullint_micro.tflite",
}
INFERENCES = 3
HAND_WRITTEN = "<!-- Everything below is written by hand: python -m host.perf keeps it. -->"

# Issue 17's cycle targets: at least 1.2x fewer cycles than the best published MLPerf Tiny result per model, those
# being NUCLEO-L4R5ZI (Cortex-M4F, latency x 120 MHz, ../shared/README.md), against our estimate on this board at zero
# wait states (every estimate in the range, P = 1 .. 3, for "met").
TARGET_BOARD = "mps2-an386"
CYCLE_TARGETS = {   # model: (best published cycles, its submission, target cycles)
    "ResNet-8 (IC)": (19_820_000, "ST X-CUBE-AI 9.0", 16_000_000),
    "MobileNetV1-0.25 VWW": (10_670_000, "ST X-CUBE-AI 9.0", 8_500_000),
    "DS-CNN KWS": (5_180_000, "ST X-CUBE-AI 9.0", 4_200_000),
    "ToyCar AD": (486_000, "Plumerai 2023.05", 400_000),
}

# Issue 17's int16x8 target: the study's CIFAR ResNet in int16x8 at most this many times its int8 cost per board, in
# instructions and (where the CPU has a cycle model) in every estimated cycle count.
PRECISION_MODELS = ("david-goliath/cifar_resnet_int8.tflite", "david-goliath/cifar_resnet_int16.tflite")
PRECISION_TARGETS = {"mps2-an386": 1.25, "mps2-an500": 1.25, "mps3-an547": 2.2}


@dataclass(frozen=True)
class Cost:
    instructions: int
    cycles: tuple[int, int] | None = None   # estimated, P = low and high


@dataclass(frozen=True)
class PrecisionRow:
    board: str
    int8: Cost
    int16: Cost


@dataclass(frozen=True)
class Row:
    model: str
    board: str
    portable: int | None
    optimized: int | None
    arena: int
    flash: int
    note: str = ""
    cycles: tuple[int, int] | None = None   # optimized build, estimated, P = low and high


@contextmanager
def kernels(kind: str) -> Iterator[None]:
    """TM_KERNELS=portable builds the reference kernels only (host/engine/build.py)."""
    saved = os.environ.get("TM_KERNELS")
    if kind == "portable":
        os.environ["TM_KERNELS"] = "portable"
    else:
        os.environ.pop("TM_KERNELS", None)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TM_KERNELS", None)
        else:
            os.environ["TM_KERNELS"] = saved


def measure(model_path: Path, board_name: str, kind: str,
            cycles: bool = False) -> tuple[int, int, int, tuple[int, int] | None]:
    """(median instructions per inference, arena bytes, flash bytes, median estimated cycles (low, high) or None)
    on one board; `cycles`: with QEMU's cycle plugin when the board's CPU has a cycle model."""

    board = load_board(board_name)
    model = compile_tflite(model_path)
    with kernels(kind):
        image = build_firmware(model, board, BUILD_DIR / "perf" / kind / board.name / model.name)
    timing = timing_for(board) if cycles and board.emulator_kind == "qemu" else None
    plugin = None
    if timing is not None:
        try:
            plugin = CyclePlugin.for_firmware(board, image.elf)
        except CyclesUnavailable as err:
            print(f"error: {err.message.splitlines()[0]}", file=sys.stderr)
    costs, estimates = [], []
    try:
        with boot_elf(board, image.elf, model.sha256, plugin=plugin) as device:
            for x in random_inputs(model.inputs, INFERENCES, 0):
                costs.append(device.infer_arrays(*x)[1].instructions or 0)
                if plugin is not None and timing is not None:
                    estimates.append(timing.estimate(plugin.read_windows()[-1].counts, wait_states(board)))
    finally:
        if plugin is not None:
            plugin.discard()
    estimate = None
    if estimates:
        estimate = (int(statistics.median(e.low for e in estimates)), int(statistics.median(e.high for e in estimates)))
    return int(statistics.median(costs)), model.arena_bytes, image.flash_bytes, estimate


def run(boards: list[str], cycles: bool = True) -> list[Row]:
    rows = []
    for label, rel in MODELS.items():
        path = SHARED_DIR / "models" / rel
        for board in boards:
            try:
                check_fits(compile_tflite(path), load_board(board))
            except UserError as err:
                rows.append(Row(label, board, None, None, 0, 0, err.message.splitlines()[0]))
                continue
            portable = measure(path, board, "portable")
            optimized = measure(path, board, "optimized", cycles)
            rows.append(Row(label, board, portable[0], optimized[0], optimized[1], optimized[2], cycles=optimized[3]))
            print(f"  {label:22s} {board:14s} {portable[0]:>13,} -> {optimized[0]:>12,}", file=sys.stderr)
    return rows


def precision_run(boards: list[str], cycles: bool = True) -> list[PrecisionRow]:
    """The study's CIFAR ResNet in both precisions on the boards with a PRECISION_TARGETS entry (none without
    ../shared's study models)."""
    paths = [SHARED_DIR / "models" / rel for rel in PRECISION_MODELS]
    if not all(path.exists() for path in paths):
        return []
    rows = []
    for board in (b for b in boards if b in PRECISION_TARGETS):
        int8, int16 = (measure(path, board, "optimized", cycles) for path in paths)
        rows.append(PrecisionRow(board, Cost(int8[0], int8[3]), Cost(int16[0], int16[3])))
        print(f"  int16x8 / int8         {board:14s} {int16[0] / int8[0]:.3f}×", file=sys.stderr)
    return rows


def precision_verdict(row: PrecisionRow) -> str:
    """Met when the instructions' ratio and the estimated cycles' (at P = 1 and at P = 3) are within the target."""
    target = PRECISION_TARGETS[row.board]
    ratios = [row.int16.instructions / row.int8.instructions]
    if row.int8.cycles and row.int16.cycles:
        ratios += [row.int16.cycles[0] / row.int8.cycles[0], row.int16.cycles[1] / row.int8.cycles[1]]
    worst = max(ratios)
    return "**met**" if worst <= target else f"not met: {worst / target:.2f}× the target"


def precision_lines(rows: list[PrecisionRow]) -> list[str]:
    """The int16x8 target's table."""
    if not rows:
        return []
    lines = [
        "", "int16x8 against int8 (issue 17): the David-and-Goliath CIFAR ResNet "
        "(`../shared/models/david-goliath/`) in both precisions, at most 1.25× on the M4/M7 and 2.2× on the M55, "
        "in instructions and in every estimated cycle count (docs/performance.md, \"int16x8 against int8\").", "",
        "| board | int8 instructions | int16x8 instructions | ratio | int8 est. cycles | int16x8 est. cycles | ratio "
        "(P = 1 / 3) | target | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cycles = ["–", "–", "–"]
        if r.int8.cycles and r.int16.cycles:
            (a, b), (c, d) = r.int8.cycles, r.int16.cycles
            cycles = [f"{a:,} – {b:,}", f"{c:,} – {d:,}", f"{c / a:.3f}× / {d / b:.3f}×"]
        lines.append(f"| {r.board} | {r.int8.instructions:,} | {r.int16.instructions:,} | "
                     f"{r.int16.instructions / r.int8.instructions:.3f}× | {' | '.join(cycles)} | "
                     f"≤ {PRECISION_TARGETS[r.board]}× | {precision_verdict(r)} |")
    return lines


def _cycles_cell(row: Row) -> str:
    if row.cycles is None:
        return "–"
    low, high = row.cycles
    return f"{low:,} – {high:,} ({low / row.optimized:.2f}–{high / row.optimized:.2f})" if row.optimized else "–"


def target_verdict(low: int, high: int, target: int) -> str:
    """Met when the whole estimate (P = 1 .. 3) is within the target."""
    if high <= target:
        return "**met**"
    if low <= target:
        return "met at P = 1 only"
    return f"not met: {low / target:.2f}× the target"


def _millions(cycles: int) -> str:
    return f"{cycles / 1e6:.2f} M" if cycles >= 1_000_000 else f"{cycles / 1e6:.3f} M"


def target_lines(rows: list[Row]) -> list[str]:
    """The cycle targets' table, from the rows of TARGET_BOARD with estimated cycles."""
    measured = {r.model: r.cycles for r in rows if r.board == TARGET_BOARD and r.cycles}
    if not measured:
        return []
    lines = [
        "", f"Cycle targets (issue 17): at least 1.2× fewer cycles than the best published MLPerf Tiny result, those "
        "being real NUCLEO-L4R5ZI silicon with flash wait states (latency × 120 MHz, ../shared/README.md), ours "
        f"estimated on {TARGET_BOARD} at zero wait states: not like for like (\"Against the cycle targets\" below). "
        "Met means every estimate of the range (P = 1 – 3) is within the target.", "",
        "| model | best published (cycles) | target | ours, est. (P = 1 – 3) | |",
        "|---|---|---|---|---|",
    ]
    for model, (published, by, target) in CYCLE_TARGETS.items():
        if model in measured:
            low, high = measured[model]
            lines.append(f"| {model} | {_millions(published)} ({by}) | ≤ {_millions(target)} | "
                         f"{_millions(low)} – {_millions(high)} | {target_verdict(low, high, target)} |")
    return lines


def render(rows: list[Row], seconds: float, hand_written: str = "", precision: list[PrecisionRow] | None = None) -> str:
    lines = [
        "# Performance: MLPerf Tiny models on the emulated boards", "",
        f"Generated by `make bench` (`python -m host.perf`) on {time.strftime('%Y-%m-%d')} in {seconds:.0f} s.",
        "Instructions per inference are QEMU's retired instructions (`-icount shift=0`, ticks ×",
        "instructions_per_tick of the board; median of 3 random inputs): deterministic, but not",
        "cycles — see \"Instructions versus cycles\" below. Portable = the reference C kernels",
        "(`TM_KERNELS=portable`); optimized = DSP (M4/M7/M55) and Helium (M55) kernels selected at",
        "build time (docs/engine.md). Arena and flash are those of the optimized build. Estimated",
        "cycles: the optimized build on a board whose CPU has a cycle model (the Cortex-M4 boards),",
        "at P = 1 – P = 3 and zero wait states, with cycles per instruction in parentheses; see",
        "\"Estimated cycles\" below.", "",
        "| model | board | portable | optimized | speed-up | est. cycles, optimized (CPI) | arena (B) | flash (B) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.portable is None:
            lines.append(f"| {r.model} | {r.board} | – | – | – | – | – | does not fit: {r.note} |")
            continue
        speedup = f"{r.portable / r.optimized:.2f}×" if r.optimized else "–"
        lines.append(f"| {r.model} | {r.board} | {r.portable:,} | {r.optimized:,} | {speedup} | {_cycles_cell(r)} | "
                     f"{r.arena:,} | {r.flash:,} |")
    lines += target_lines(rows)
    lines += precision_lines(precision or [])
    lines += [
        "", "Targets (issue 6) and references on the same emulated M4 (../shared/README.md): TFLM +",
        "CMSIS-NN takes 29,862,120 (ResNet-8), 24,102,760 (VWW), 7,698,280 (KWS) and 676,080 (ToyCar)",
        "instructions; TFLM's reference kernels 107.4 M / 100.2 M / 43.0 M / 2.05 M.", "",
        HAND_WRITTEN,
    ]
    if hand_written:
        return "\n".join(lines) + "\n\n" + hand_written
    return "\n".join(lines) + "\n"


def kept_text(path: Path) -> str:
    """What follows the hand-written marker in the current file (the method, the cycle model, …)."""
    text = path.read_text() if path.exists() else ""
    return text.split(HAND_WRITTEN, 1)[1].lstrip("\n") if HAND_WRITTEN in text else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--boards", default="mps2-an386,mps2-an500,mps3-an547,netduinoplus2",
                   help="comma-separated boards (default: the four emulated boards)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md", help="markdown file to write")
    p.add_argument("--no-cycles", action="store_true", help="skip the estimated cycles (QEMU's cycle plugin)")
    args = p.parse_args(argv)
    if not (SHARED_DIR / "models").exists():
        raise UserError(f"{SHARED_DIR / 'models'} is absent: the MLPerf Tiny models live in ../shared",
                        hint="the rest of `make bench` does not need them")
    started = time.time()
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    rows = run(boards, cycles=not args.no_cycles)
    precision = precision_run(boards, cycles=not args.no_cycles)
    text = render(rows, time.time() - started, kept_text(args.out), precision)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

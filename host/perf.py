"""`python -m host.perf` (part of `make bench`): the MLPerf Tiny models on every emulated board,
portable reference kernels vs the optimized ones, in instructions per inference (QEMU
-icount shift=0: deterministic), with arena and flash bytes, and the optimized build's estimated
cycles on boards whose CPU has a cycle model (QEMU's cycle plugin, host.core.timing).
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


def render(rows: list[Row], seconds: float, hand_written: str = "") -> str:
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
    rows = run([b.strip() for b in args.boards.split(",") if b.strip()], cycles=not args.no_cycles)
    text = render(rows, time.time() - started, kept_text(args.out))
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

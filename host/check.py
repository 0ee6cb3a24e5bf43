"""`python -m host.check`: is a model bit-exact on the chip?

Compiles the model, runs N inputs through the target (the chip over its
link, or the host-native build of the same engine) and through the TFLite
Micro reference interpreter, and prints ops, memory, cost and a verdict line
`bit-exact K/N` (exit 0 only when K == N). On a mismatch it replays the
first failing input through a debug build that keeps every tensor and names
the first op whose output differs from the reference (library: host.backends.verify).

`--cycles` adds estimated CPU cycles and the latency at the board's clock (QEMU's
cycle plugin and the CPU's timing table, docs/performance.md); a board whose CPU
has no table, or a QEMU that refuses the plugin, is said so on stderr and the
check goes on with instructions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from host.backends.inputs import check_num, parse_inputs, parse_range
from host.backends.verify import (
    ChipCycles,
    check,
    check_over_link,
    localize,
    native_runner,
    run_on_chip,
    summary_lines,
)
from host.compiler import CompiledModel, compile_tflite
from host.core.boards import load_board
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD
from host.core.timing import CycleEstimate
from host.emulators.launch import board_link, cycles_over_link, require_emulated
from host.link.device import LINK_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="the .tflite model")
    parser.add_argument("--board", default=DEFAULT_BOARD, help=f"board to run on (default {DEFAULT_BOARD})")
    parser.add_argument("--inputs", default="random:10", help="random:N (default random:10) or a .npz file")
    parser.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    parser.add_argument("--num", type=int, default=None, help="use the first N samples of a .npz")
    parser.add_argument("--input-range", default="0,1", metavar="LO,HI",
                        help="range uint8 images in a .npz are mapped to before quantizing (default 0,1; "
                        "the MLPerf Tiny ResNet takes 0,255)")
    parser.add_argument("--target", choices=("chip", "native"), default="chip",
                        help="chip: build, boot and run on the board; native: the same engine built for this host")
    parser.add_argument("--profile", action="store_true",
                        help="print instructions per op of the last inference (chip only)")
    parser.add_argument("--cycles", action="store_true",
                        help="also estimate CPU cycles and latency with QEMU's cycle plugin and the CPU's timing "
                        "table (boards/cpus/; per op with --profile; docs/performance.md)")
    parser.add_argument("--functions", type=int, default=0, metavar="N",
                        help="with --cycles: the N firmware functions with the most estimated cycles per inference "
                        "(zero wait states; inlined code counts in its caller)")
    parser.add_argument("--port", default=None, metavar="URL",
                        help="check the board behind this link instead of booting an emulator (it must run the "
                        "model's firmware: make flash): rfc2217://HOST:PORT, socket://HOST:PORT or /dev/ttyACM0 "
                        "(default: $SLINGSHOT_LINK; docs/boards.md)")
    parser.add_argument("--place", default=None, metavar="NAME",
                        help="check the board of a labgrid place (coordinator: $LG_COORDINATOR), acquired for the "
                        "check and released on exit (pip install 'slingshot[lab]'; docs/boards.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_board(args.board)  # an unknown board fails before compiling, whatever the target
    check_num(args.num)
    if args.target == "native" and (args.profile or args.cycles):
        option = "--profile" if args.profile else "--cycles"
        raise UserError(f"{option} needs the chip (--target chip): the host build has no tick counter")
    if args.functions < 0 or (args.functions and not args.cycles):
        raise UserError("--functions N needs --cycles and N >= 1", hint="e.g. --cycles --functions 15")
    if args.place is not None or args.port is not None:
        option = "--place" if args.place is not None else "--port"
        if args.target != "chip":
            raise UserError(f"{option} needs --target chip")
        if args.cycles:
            raise cycles_over_link(option)
    if args.target == "native":
        return _main(args, None)
    with board_link(args.place, args.port) as url:
        return _main(args, url)


def _main(args: argparse.Namespace, url: str | None) -> int:
    if args.target == "chip":
        refuse_unbootable(args.board, url, args.cycles)
    model = compile_tflite(args.model)
    inputs, count = parse_inputs(args.inputs, model, args.seed, parse_range(args.input_range), args.num)
    chip_cycles: ChipCycles | None = None
    if args.target == "native":
        runner, target = native_runner(model), "host-native engine (same C as the firmware)"
        exact, total, first, first_inputs, costs = check(args.model, runner, model, inputs, count)
    else:
        chip = (check_over_link(args.model, model, args.board, url, inputs, count, profile=args.profile)
                if url is not None and not args.cycles else
                run_on_chip(args.model, model, args.board, inputs, count, profile=args.profile, cycles=args.cycles,
                            functions=bool(args.functions)))
        (exact, total, first, first_inputs, costs), target = chip.result, chip.target
        chip_cycles = chip.cycles
        if chip.cycles_note:
            print(chip.cycles_note, file=sys.stderr)
        if chip.ticks is not None:
            per_op = chip.cycles.per_op if chip.cycles else None
            print_profile(model, chip.ticks, chip.instructions_per_tick, per_op)
        if chip.cycles is not None and chip.cycles.per_function:
            print_functions(chip.cycles.per_function, args.functions)
    for line in summary_lines(model, args.model, target):
        print(line)
    if costs:
        print(f"cost     {statistics.median(costs):,.0f} instructions per inference (median of {len(costs)})")
    if chip_cycles is not None and chip_cycles.per_inference:
        for line in cycle_lines(chip_cycles, load_board(args.board).clock_hz):
            print(line)
    if first is not None:
        print(f"mismatch sample {first.index}, output {first.output} at {first.position}: "
              f"ours {first.ours}, reference {first.golden}")
        assert first_inputs is not None
        print(localize(args.model, first_inputs))
    print(f"bit-exact {exact}/{total}")
    return 0 if exact == total else 1


def refuse_unbootable(board_name: str, url: str | None, cycles: bool) -> None:
    """A real board is reached over its link, never booted here: say so before its firmware is built."""
    board = load_board(board_name)
    if board.emulated:
        return
    if url is None:
        require_emulated(board)
    if cycles:  # --cycles boots QEMU whatever the link
        raise UserError(f"--cycles counts in QEMU booted here, and board {board.name} is not emulated",
                        hint=f"drop --cycles to check the board over {LINK_ENV}, or pick an emulated board")


def print_functions(per_function: dict[str, CycleEstimate], top: int) -> None:
    """The `top` functions by estimated cycles per inference, with their instructions and share."""
    total = sum(e.low for e in per_function.values()) or 1
    ranked = sorted(per_function.items(), key=lambda item: -item[1].low)
    p_low, p_high = next(iter(per_function.values())).refill
    print(f"functions  per inference (instructions; estimated cycles at P = {p_low} and P = {p_high}, "
          "zero wait states):")
    for name, estimate in ranked[:top]:
        print(f"  {name:<36} {estimate.instructions:>12,} {estimate.low:>12,} {100 * estimate.low / total:5.1f} % "
              f"{estimate.high:>12,}")


def print_profile(model: CompiledModel, ticks: list[int], per_tick: int | None,
                  cycles: list[CycleEstimate] | None = None) -> None:
    """Ticks per op of the last inference and their share; with `cycles`, the estimated cycles per op."""
    total = sum(ticks) or 1
    unit = "instructions" if per_tick else "ticks"
    scale = per_tick or 1
    if cycles:
        p_low, p_high = cycles[0].refill
        unit += f"; estimated cycles at P = {p_low} and P = {p_high}"
    print(f"profile  per op, last inference ({unit}):")
    for index, (op, t) in enumerate(zip(model.ops, ticks, strict=False)):
        line = f"  {index:3d} {op:22s} {t * scale:>14,} {100.0 * t / total:6.1f} %"
        if cycles and index < len(cycles):
            line += f" {cycles[index].low:>14,} {cycles[index].high:>14,}"
        print(line)


def cycle_lines(cycles: ChipCycles, clock_hz: int) -> list[str]:
    """Median estimated cycles per inference, CPI and the latency at the board's clock."""
    low = statistics.median(e.low for e in cycles.per_inference)
    high = statistics.median(e.high for e in cycles.per_inference)
    instructions = statistics.median(e.instructions for e in cycles.per_inference)
    p_low, p_high = cycles.per_inference[0].refill
    n = len(cycles.per_inference)
    return [
        f"cycles   {low:,.0f}–{high:,.0f} estimated {cycles.timing.name} cycles per inference (P = {p_low}..{p_high}, "
        f"median of {n}; {instructions:,.0f} instructions counted by the plugin, "
        f"CPI {low / instructions:.2f}–{high / instructions:.2f})",
        f"latency  {1e3 * low / clock_hz:,.2f}–{1e3 * high / clock_hz:,.2f} ms at {clock_hz / 1e6:g} MHz "
        "(estimated: zero wait states unless the board file gives some; docs/performance.md)",
    ]


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""`python -m host.check`: is a model bit-exact on the chip?

Compiles the model, runs N inputs through the target (the chip over its
link, or the host-native build of the same engine) and through the TFLite
Micro reference interpreter, and prints ops, memory, cost and a verdict line
`bit-exact K/N` (exit 0 only when K == N). On a mismatch it replays the
first failing input through a debug build that keeps every tensor and names
the first op whose output differs from the reference (library: host.backends.verify).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from host.backends.inputs import parse_inputs, parse_range
from host.backends.verify import check, localize, native_runner, run_on_chip, summary_lines
from host.compiler import CompiledModel, compile_tflite
from host.core.boards import load_board
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.target == "chip":
        load_board(args.board)  # an unknown board fails before compiling
    elif args.profile:
        raise UserError("--profile needs the chip (--target chip): the host build has no tick counter")
    model = compile_tflite(args.model)
    inputs, count = parse_inputs(args.inputs, model, args.seed, parse_range(args.input_range), args.num)
    if args.target == "native":
        runner, target = native_runner(model), "host-native engine (same C as the firmware)"
        exact, total, first, first_inputs, costs = check(args.model, runner, model, inputs, count)
    else:
        chip = run_on_chip(args.model, model, args.board, inputs, count, profile=args.profile)
        (exact, total, first, first_inputs, costs), target = chip.result, chip.target
        if chip.ticks is not None:
            print_profile(model, chip.ticks, chip.instructions_per_tick)
    for line in summary_lines(model, args.model, target):
        print(line)
    if costs:
        print(f"cost     {statistics.median(costs):,.0f} instructions per inference (median of {len(costs)})")
    if first is not None:
        print(f"mismatch sample {first.index}, output {first.output} at {first.position}: "
              f"ours {first.ours}, reference {first.golden}")
        assert first_inputs is not None
        print(localize(args.model, first_inputs))
    print(f"bit-exact {exact}/{total}")
    return 0 if exact == total else 1


def print_profile(model: CompiledModel, ticks: list[int], per_tick: int | None) -> None:
    """Ticks per op of the last inference, largest share first marked."""
    total = sum(ticks) or 1
    unit = "instructions" if per_tick else "ticks"
    scale = per_tick or 1
    print(f"profile  per op, last inference ({unit}):")
    for index, (op, t) in enumerate(zip(model.ops, ticks, strict=False)):
        print(f"  {index:3d} {op:22s} {t * scale:>14,} {100.0 * t / total:6.1f} %")


if __name__ == "__main__":
    sys.exit(run_cli(main))

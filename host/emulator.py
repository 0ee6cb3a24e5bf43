"""`python -m host.emulator calibrate [BOARD …]`: measure instructions per SysTick tick of the QEMU boards
(library: host.emulators.qemu)."""

from __future__ import annotations

import argparse
import sys

from host.core.boards import list_boards, load_board
from host.core.errors import run_cli
from host.emulators.qemu import calibrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.emulator", description="QEMU boards: tick calibration")
    parser.add_argument("command", choices=("calibrate",))
    parser.add_argument("boards", nargs="*", help="board names (default: every emulated board)")
    args = parser.parse_args(argv)
    boards = [load_board(name) for name in args.boards or list_boards()]
    ok = True
    for board in boards:
        if not board.emulated:
            continue
        result = calibrate(board)
        ratio = board.tick_ratio
        agrees = ratio is not None and result.agrees_with(ratio)
        ok = ok and agrees
        print(f"{board.name:16} {result.counts[1] - result.counts[0]:,} loop iterations = "
              f"{result.ticks[1] - result.ticks[0]:,} ticks -> {result.instructions_per_tick:.6f} instructions/tick; "
              f"board file {ratio} = {float(ratio or 0):.6f} {'(agrees)' if agrees else '(DIFFERS)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))

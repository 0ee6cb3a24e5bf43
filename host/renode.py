"""`python -m host.renode script|command`: the Renode script and command line for a board
(library: host.emulators.renode)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host.core.boards import load_board
from host.core.errors import UserError, run_cli
from host.emulators.renode import RenodeProcess, script
from host.link.images import flash_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.renode", description="Renode boards: script, command line")
    parser.add_argument("what", choices=("script", "command"))
    parser.add_argument("--board", default="renode-stm32f4")
    parser.add_argument("--elf", type=Path, default=None, help="firmware ELF (default: build/flash/<board>/)")
    parser.add_argument("--port", type=int, default=4321, help="TCP port of the UART's server socket")
    args = parser.parse_args(argv)
    board = load_board(args.board)
    if board.emulator_kind != "renode":
        raise UserError(f"board {board.name} is not emulated by Renode", hint="try --board renode-stm32f4")
    if args.elf is None:
        args.elf = flash_dir(board.name) / "firmware.elf"
    if args.what == "script":
        print(script(board, args.elf, args.port), end="")
    else:
        process = RenodeProcess(board, args.elf)
        print(" ".join(process.command(args.port)))
        print(f"# script: {process.script_path} (removed on exit; `script` prints it)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

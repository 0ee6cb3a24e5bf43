"""`python -m host.flash` (what `make flash` runs): model → firmware → board.

Compiles the .tflite model, builds the firmware for the board and flashes it.
For an emulated board "flashing" installs the ELF and a manifest in
build/flash/<board>/, where host.evaluate and host.check find it.
Prints flash and RAM use read from the ELF against the board's limits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from host.boards import Board, load_board
from host.build import FirmwareImage, build_firmware
from host.compiler import CompiledModel, compile_tflite
from host.errors import UserError, run_cli
from host.paths import DEFAULT_BOARD, DEFAULT_MODEL, ROOT


def install(image: FirmwareImage, model: CompiledModel, model_path: Path, board: Board) -> Path:
    """Put the ELF and its manifest where the device layer looks (build/flash/<board>/)."""
    from host.device import flash_dir

    target = flash_dir(board.name)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.elf, target / "firmware.elf.tmp")
    (target / "firmware.elf.tmp").replace(target / "firmware.elf")
    manifest = {
        "board": board.name,
        "model_path": _display(model_path),
        "model_name": model.name,
        "model_sha256": model.sha256.hex(),
        "elf_sha256": hashlib.sha256((target / "firmware.elf").read_bytes()).hexdigest(),
        "flash_bytes": image.flash_bytes,
        "ram_bytes": image.ram_bytes,
        "arena_bytes": model.arena_bytes,
        "weights_bytes": model.weights_bytes,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def _display(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def flash(model_path: Path, board_name: str) -> tuple[FirmwareImage, CompiledModel, Path]:
    board = load_board(board_name)
    model = compile_tflite(model_path)  # clear errors for missing / non-TFLite / unsupported models
    image = build_firmware(model, board)
    method = board.flash_method.get("method", "emulator")
    if method != "emulator":
        raise UserError(f"board {board.name}: flash method '{method}' is not supported by this build",
                        hint="emulated boards only for now; see docs/boards.md")
    return image, model, install(image, model, model_path, board)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.flash", description=__doc__.split("\n\n")[0])
    p.add_argument("--board", default=DEFAULT_BOARD, help="board name, a folder in boards/ (default: %(default)s)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="int8/int16 .tflite (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    image, model, target = flash(args.model, args.board)
    print(f"model    {args.model}: {len(model.ops)} ops, arena {model.arena_bytes:,} B, "
          f"weights {model.weights_bytes:,} B")
    for line in image.usage_lines():
        print(line)
    print(f"         flash = weights {model.weights_bytes:,} + code and tables "
          f"{image.flash_bytes - model.weights_bytes:,}; RAM is the peak (statics, arena, stack: no heap)")
    print(f"flashed  {image.board.name} ({image.board.description.split(':')[0]}): {target / 'firmware.elf'} "
          f"in {time.monotonic() - started:.1f} s")
    print("next     python -m host.evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

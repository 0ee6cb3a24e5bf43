"""What `make flash` left for a board: build/flash/<board>/manifest.json and firmware.elf.

Imports: host.core.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from host.core.errors import UserError
from host.core.paths import FLASH_DIR


@dataclass(frozen=True)
class FlashedImage:
    board: str
    model_path: str
    model_sha256: bytes
    elf: Path
    flash_bytes: int
    ram_bytes: int
    mode: str = "protocol"          # "mlperf": the MLPerf Tiny mode build (docs/mlperf.md), no framed protocol
    port: str | None = None         # real boards: the serial port found or given at flash time


def flash_dir(board: str) -> Path:
    return FLASH_DIR / board


def read_flashed(board: str) -> FlashedImage:
    manifest = flash_dir(board) / "manifest.json"
    if not manifest.exists():
        raise UserError(f"nothing flashed for board {board}",
                        hint=f"run `make flash BOARD={board}` (or `make flash` for the default board) first")
    data = json.loads(manifest.read_text())
    elf = flash_dir(board) / "firmware.elf"
    if not elf.exists():
        raise UserError(f"{elf} is missing", hint=f"run `make flash BOARD={board}` again")
    return FlashedImage(board=data["board"], model_path=data["model_path"],
                        model_sha256=bytes.fromhex(data["model_sha256"]), elf=elf,
                        flash_bytes=int(data.get("flash_bytes", 0)), ram_bytes=int(data.get("ram_bytes", 0)),
                        mode=str(data.get("mode", "protocol")), port=data.get("port"))

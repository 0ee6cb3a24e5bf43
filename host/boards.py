"""Boards are data: boards/<name>/board.toml (see docs/boards.md)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import UserError
from host.paths import BOARDS_DIR


@dataclass(frozen=True)
class MemoryRegion:
    origin: int
    length: int


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    directory: Path
    cpu: str
    fpu: str
    float_abi: str
    clock_hz: int
    flash: MemoryRegion
    ram: MemoryRegion
    uart_driver: str
    uart_base: int
    uart_baud: int
    stack_bytes: int
    emulator: dict = field(default_factory=dict)
    flash_method: dict = field(default_factory=dict)
    extra_sources: tuple[str, ...] = ()
    extra_defines: dict = field(default_factory=dict)
    linker_script: str | None = None

    @property
    def emulated(self) -> bool:
        return bool(self.emulator)

    @property
    def instructions_per_tick(self) -> int | None:
        """Instructions per SysTick tick under QEMU -icount shift=0 (None on real hardware)."""
        value = self.emulator.get("instructions_per_tick")
        return int(value) if value is not None else None


def list_boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.toml"))


def load_board(name: str) -> Board:
    path = BOARDS_DIR / name / "board.toml"
    if not path.exists():
        raise UserError(
            f"unknown board '{name}'",
            hint=f"available boards: {', '.join(list_boards())} (each is a folder in boards/)",
        )
    try:
        data = tomllib.loads(path.read_text())
        return _board_from_toml(name, path.parent, data)
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as err:
        raise UserError(f"{path}: invalid board description ({err})", hint="see docs/boards.md") from None


def _board_from_toml(name: str, directory: Path, data: dict) -> Board:
    memory, uart = data["memory"], data["uart"]
    return Board(
        name=data.get("name", name),
        description=data.get("description", ""),
        directory=directory,
        cpu=data["cpu"],
        fpu=data.get("fpu", "none"),
        float_abi=data.get("float_abi", "soft"),
        clock_hz=int(data["clock_hz"]),
        flash=MemoryRegion(int(memory["flash"]["origin"]), int(memory["flash"]["length"])),
        ram=MemoryRegion(int(memory["ram"]["origin"]), int(memory["ram"]["length"])),
        uart_driver=uart["driver"],
        uart_base=int(uart["base"]),
        uart_baud=int(uart.get("baud", 115200)),
        stack_bytes=int(data.get("stack_bytes", 16384)),
        emulator=dict(data.get("emulator", {})),
        flash_method=dict(data.get("flash", {})),
        extra_sources=tuple(data.get("sources", ())),
        extra_defines=dict(data.get("defines", {})),
        linker_script=data.get("linker_script"),
    )

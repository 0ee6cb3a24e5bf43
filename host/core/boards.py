"""Boards are data: boards/<name>/board.toml (see docs/boards.md).

A board file names the CPU and FPU, the memory map (flash, RAM and any
extra regions such as CCM), the UART, the clock and how the board is run
(an emulator) or flashed. Nothing in the host or the firmware branches on a
board's name: adding a board is adding a folder.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from host.core.errors import UserError
from host.core.paths import BOARDS_DIR, FIRMWARE_DIR

# What the build can place in an extra memory region ([memory.<name>] holds = [...]).
# Everything not listed in some region stays where it is by default: weights in flash, the rest in RAM.
PLACEABLE = {
    "stack": "the main stack (stack_bytes)",
    "arena": "the model's activation arena",
    "io_buffers": "the protocol's receive/transmit/profile buffers",
    "weights": "the model's constant tensors (weights, biases): loaded with the image, read-only",
}
FLOAT_ABIS = ("soft", "softfp", "hard")
EMULATOR_KINDS = ("qemu", "renode")
# How `make flash` puts the image on the board ([flash] method): install for an emulator, program through
# a debug probe with pyOCD, or copy the .bin/.hex to the probe's USB mass-storage drive (Mbed/DAPLink, ST-LINK).
FLASH_METHODS = ("emulator", "pyocd", "mass_storage")
IMAGE_FORMATS = ("bin", "hex")
_USB_ID = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")
_REGION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class TickRatio(float):
    """A non-integer instructions-per-tick ratio (e.g. 125/21) that stays exact:
    times a tick count (an int) it gives the rounded whole instruction count, so
    `ticks * board.instructions_per_tick` is an instruction count on every board."""

    exact: Fraction

    def __new__(cls, exact: Fraction) -> TickRatio:
        value = super().__new__(cls, float(exact))
        value.exact = exact
        return value

    def __mul__(self, other: object) -> int | float:  # type: ignore[override]
        if isinstance(other, int) and not isinstance(other, bool):
            return round(self.exact * other)
        return float(self) * other  # type: ignore[operator]

    __rmul__ = __mul__  # type: ignore[assignment]


@dataclass(frozen=True)
class MemoryRegion:
    origin: int
    length: int
    name: str = ""
    holds: tuple[str, ...] = ()
    wait_states: int = 0      # extra cycles per data access and per fetched word (the cycle model)
    overflow: tuple[str, ...] = ()   # items placed here only for a model they do not fit where they would go

    @property
    def end(self) -> int:
        return self.origin + self.length

    def contains(self, address: int) -> bool:
        return self.origin <= address < self.end


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
    regions: tuple[MemoryRegion, ...] = ()   # extra regions ([memory.<name>] other than flash and ram)
    usb_ids: tuple[tuple[int, int], ...] = ()  # [uart] usb: VID:PID of the USB serial bridge (real boards)

    @property
    def emulated(self) -> bool:
        return bool(self.emulator)

    @property
    def emulator_kind(self) -> str | None:
        """"qemu", "renode" or None (a real board)."""
        return str(self.emulator.get("kind", "qemu")) if self.emulator else None

    @property
    def method(self) -> str:
        """The flash method ([flash] method): "emulator", "pyocd" or "mass_storage"."""
        return str(self.flash_method.get("method", "emulator"))

    @property
    def probe_target(self) -> str | None:
        """pyOCD target name ([flash] target), e.g. "stm32f446retx"."""
        value = self.flash_method.get("target")
        return None if value is None else str(value)

    @property
    def tick_ratio(self) -> Fraction | None:
        """Exact guest instructions per SysTick tick under QEMU -icount (None on real hardware)."""
        value = self.emulator.get("instructions_per_tick")
        return None if value is None else _fraction(value)

    @property
    def instructions_per_tick(self) -> int | TickRatio | None:
        """Instructions per tick: an int when whole (MPS2: 40), else a TickRatio (125/21 at 168 MHz)
        whose product with a tick count is the rounded instruction count."""
        ratio = self.tick_ratio
        if ratio is None:
            return None
        return int(ratio) if ratio.denominator == 1 else TickRatio(ratio)

    @property
    def icount_shift(self) -> int:
        return int(self.emulator.get("icount_shift", 0))

    def instructions(self, ticks: int) -> int | None:
        """Guest instructions for a tick count (rounded to the nearest instruction)."""
        ratio = self.tick_ratio
        return None if ratio is None else round(ticks * ratio)

    def region_of(self, item: str) -> MemoryRegion:
        """The region holding a placeable item (stack, arena, io_buffers, weights): an extra region, or
        by default flash for the weights and RAM for the rest."""
        for region in self.regions:
            if item in region.holds:
                return region
        return self.flash if item == "weights" else self.ram

    @property
    def all_regions(self) -> tuple[MemoryRegion, ...]:
        return (self.flash, self.ram, *self.regions)


def list_boards(every: bool = False) -> list[str]:
    """Board names. By default the boards this machine runs by itself, i.e. those emulated by QEMU
    (the default test matrix, `python -m host.emulator calibrate`); `every=True` adds real boards
    (flashed through a probe) and boards emulated by Renode."""
    names = sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.toml"))
    return names if every else [n for n in names if _emulator_kind(BOARDS_DIR / n / "board.toml") == "qemu"]


def _emulator_kind(path: Path) -> str | None:
    """The [emulator] kind of a board file without validating it (an unreadable file counts as QEMU,
    so that loading it reports the problem)."""
    try:
        emulator = tomllib.loads(path.read_text()).get("emulator")
    except (OSError, tomllib.TOMLDecodeError):
        return "qemu"
    if not isinstance(emulator, dict) or not emulator:
        return None
    return str(emulator.get("kind", "qemu"))


def load_board(name: str) -> Board:
    path = BOARDS_DIR / name / "board.toml"
    if not name or "/" in name or not path.exists():
        raise UserError(
            f"unknown board '{name}'",
            hint=f"available boards: {', '.join(list_boards(every=True))} (each is a folder in boards/)",
        )
    return load_board_file(path)


def load_board_file(path: Path) -> Board:
    """Parse and validate one board.toml; errors name the file and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err})", hint="see docs/boards.md") from None
    try:
        return _board_from_toml(path.parent.name, path.parent, data)
    except BoardFieldError as err:
        raise UserError(f"{path}: field '{err.field}' {err.problem}", hint="see docs/boards.md") from None


class BoardFieldError(Exception):
    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field, self.problem = field_name, problem


def _get(table: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:  # noqa: ANN401
    name = f"{where}.{key}" if where else key
    if key not in table:
        if default is ...:
            raise BoardFieldError(name, "is missing")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise BoardFieldError(name, f"must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}, "
                                    f"got {value!r}")
    return value


def _positive(value: int, name: str) -> int:
    if value <= 0:
        raise BoardFieldError(name, f"must be positive, got {value}")
    return value


def _fraction(value: object, name: str = "emulator.instructions_per_tick") -> Fraction:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            ratio = Fraction(value.replace("_", ""))
        elif isinstance(value, int | float):
            ratio = Fraction(value)
        else:
            raise ValueError
    except (ValueError, ZeroDivisionError):
        raise BoardFieldError(name, f"must be a positive number or a fraction like \"125/21\", got {value!r}") \
            from None
    if ratio <= 0:
        raise BoardFieldError(name, f"must be positive, got {value!r}")
    return ratio


def _region(memory: dict, key: str, extra: bool) -> MemoryRegion:
    where = f"memory.{key}"
    table = _get(memory, key, dict, "memory")
    origin = _get(table, "origin", int, where)
    length = _positive(_get(table, "length", int, where), f"{where}.length")
    if origin < 0 or origin + length > 1 << 32:
        raise BoardFieldError(f"{where}.origin", "the region must lie in the 32-bit address space")
    holds: tuple[str, ...] = ()
    overflow: tuple[str, ...] = ()
    if extra:
        if not _REGION_NAME.match(key):
            raise BoardFieldError(where, "region names are lower-case identifiers (e.g. ccm, dtcm)")
        raw = _get(table, "holds", list, where, [])
        for item in raw:
            if item not in PLACEABLE:
                raise BoardFieldError(f"{where}.holds", f"unknown item {item!r}; one of {', '.join(PLACEABLE)}")
        holds = tuple(raw)
        overflow = tuple(_get(table, "overflow", list, where, []))
        for item in overflow:
            if item not in PLACEABLE:
                raise BoardFieldError(f"{where}.overflow", f"unknown item {item!r}; one of {', '.join(PLACEABLE)}")
            if item in holds:
                raise BoardFieldError(f"{where}.overflow", f"{item!r} is in holds already (always placed here)")
    elif "holds" in table or "overflow" in table:
        key_given = "holds" if "holds" in table else "overflow"
        raise BoardFieldError(f"{where}.{key_given}", f"only extra regions take '{key_given}' (RAM holds the rest)")
    wait_states = _get(table, "wait_states", int, where, 0)
    if wait_states < 0:
        raise BoardFieldError(f"{where}.wait_states", f"must be 0 or more, got {wait_states}")
    return MemoryRegion(origin, length, key, holds, wait_states, overflow)


def _board_from_toml(name: str, directory: Path, data: dict) -> Board:
    memory = _get(data, "memory", dict, "")
    uart = _get(data, "uart", dict, "")
    flash = _region(memory, "flash", extra=False)
    ram = _region(memory, "ram", extra=False)
    regions = tuple(_region(memory, key, extra=True) for key in memory if key not in ("flash", "ram"))
    _check_layout(flash, ram, regions)
    fpu = _get(data, "fpu", str, "", "none")
    float_abi = _get(data, "float_abi", str, "", "soft")
    if float_abi not in FLOAT_ABIS:
        raise BoardFieldError("float_abi", f"must be one of {', '.join(FLOAT_ABIS)}, got {float_abi!r}")
    if fpu == "none" and float_abi != "soft":
        raise BoardFieldError("float_abi", "must be \"soft\" for a core without FPU (fpu = \"none\")")
    driver = _get(uart, "driver", str, "uart")
    if not (FIRMWARE_DIR / "drivers" / f"uart_{driver}.c").exists():
        raise BoardFieldError("uart.driver", f"no driver firmware/drivers/uart_{driver}.c")
    emulator = dict(_get(data, "emulator", dict, "", {}))
    if emulator:
        kind = _get(emulator, "kind", str, "emulator")
        if kind not in EMULATOR_KINDS:
            raise BoardFieldError("emulator.kind", f"must be one of {', '.join(EMULATOR_KINDS)}, got {kind!r}")
        if kind == "qemu":
            _get(emulator, "machine", str, "emulator")
        else:
            platform = _get(emulator, "platform", str, "emulator")
            if not platform.startswith("@") and not (directory / platform).is_file():
                raise BoardFieldError("emulator.platform", f"{platform!r} is neither a file in {directory} nor a "
                                                           "Renode path like \"@platforms/cpus/stm32f4.repl\"")
            _positive(_get(emulator, "performance_mips", int, "emulator", 100), "emulator.performance_mips")
            _get(emulator, "uart", str, "emulator")
        if "instructions_per_tick" in emulator:
            _fraction(emulator["instructions_per_tick"])
        if not 0 <= _get(emulator, "icount_shift", int, "emulator", 0) <= 10:
            raise BoardFieldError("emulator.icount_shift", "must be between 0 and 10")
    sources = tuple(_get(data, "sources", list, "", []))
    for source in sources:
        if not isinstance(source, str) or not (directory / source).is_file():
            raise BoardFieldError("sources", f"{source!r} is not a file in {directory}")
    linker_script = _get(data, "linker_script", str, "", None)
    if linker_script is not None and not (directory / linker_script).is_file():
        raise BoardFieldError("linker_script", f"{linker_script!r} is not a file in {directory}")
    flash_method = dict(_get(data, "flash", dict, "", {}))
    _check_flash_method(flash_method, bool(emulator))
    usb_ids = tuple(_usb_id(v) for v in _get(uart, "usb", list, "uart", []))
    board_name = _get(data, "name", str, "", name)
    if board_name != name:
        raise BoardFieldError("name", f"must match the folder name {name!r}, got {board_name!r}")
    stack_bytes = _positive(_get(data, "stack_bytes", int, "", 16384), "stack_bytes")
    if stack_bytes % 8:
        raise BoardFieldError("stack_bytes", f"must be a multiple of 8, got {stack_bytes}")
    return Board(
        name=board_name,
        description=_get(data, "description", str, "", ""),
        directory=directory,
        cpu=_get(data, "cpu", str, ""),
        fpu=fpu,
        float_abi=float_abi,
        clock_hz=_positive(_get(data, "clock_hz", int, ""), "clock_hz"),
        flash=flash,
        ram=ram,
        uart_driver=driver,
        uart_base=_get(uart, "base", int, "uart"),
        uart_baud=_positive(_get(uart, "baud", int, "uart", 115200), "uart.baud"),
        stack_bytes=stack_bytes,
        emulator=emulator,
        flash_method=flash_method,
        extra_sources=sources,
        extra_defines=dict(_get(data, "defines", dict, "", {})),
        linker_script=linker_script,
        regions=regions,
        usb_ids=usb_ids,
    )


def _check_flash_method(table: dict, emulated: bool) -> None:
    method = _get(table, "method", str, "flash", "emulator")
    if method not in FLASH_METHODS:
        raise BoardFieldError("flash.method", f"must be one of {', '.join(FLASH_METHODS)}, got {method!r}")
    if emulated != (method == "emulator"):
        raise BoardFieldError("flash.method", "must be \"emulator\" exactly when the board has an [emulator]"
                              if emulated else "a real board (no [emulator]) needs \"pyocd\" or \"mass_storage\"")
    if method == "pyocd":
        _get(table, "target", str, "flash")
    if method == "mass_storage":
        labels = _get(table, "drive_labels", list, "flash", [])
        if not all(isinstance(label, str) and label for label in labels):
            raise BoardFieldError("flash.drive_labels", f"must be a list of volume labels, got {labels!r}")
    fmt = _get(table, "format", str, "flash", "bin")
    if fmt not in IMAGE_FORMATS:
        raise BoardFieldError("flash.format", f"must be one of {', '.join(IMAGE_FORMATS)}, got {fmt!r}")


def _usb_id(value: object) -> tuple[int, int]:
    if not isinstance(value, str) or not _USB_ID.match(value):
        raise BoardFieldError("uart.usb", f"entries are USB ids \"VID:PID\" in hex like \"0483:374B\", got {value!r}")
    vid, pid = value.split(":")
    return int(vid, 16), int(pid, 16)


def _check_layout(flash: MemoryRegion, ram: MemoryRegion, regions: tuple[MemoryRegion, ...]) -> None:
    placed: dict[str, str] = {}
    for region in regions:
        for item in region.holds:
            if item in placed:
                raise BoardFieldError(f"memory.{region.name}.holds",
                                      f"{item!r} is already placed in memory.{placed[item]}")
            placed[item] = region.name
    every = (flash, ram, *regions)
    for i, a in enumerate(every):
        for b in every[i + 1:]:
            if a.origin < b.end and b.origin < a.end:
                raise BoardFieldError(f"memory.{b.name}", f"overlaps memory.{a.name}")

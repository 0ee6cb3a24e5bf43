"""Firmware build: the generated model + engine + runtime + board, from board data.

Objects are compiled in parallel into build/<board>/<model>/ and only rebuilt
when their source or flags change. Flash and RAM use are read from the ELF.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from host.boards import Board
from host.compiler import CompiledModel
from host.errors import UserError
from host.paths import BUILD_DIR, FIRMWARE_DIR

TOOLCHAIN_HINT = "install the Arm toolchain: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
CODE_ALLOWANCE = 64 * 1024   # engine + runtime code, for the pre-link fit check
STATIC_RAM_ALLOWANCE = 12 * 1024  # protocol buffers and statics


@dataclass(frozen=True)
class FirmwareImage:
    elf: Path
    flash_bytes: int          # .text + .rodata + .data (load image)
    ram_bytes: int            # .data + .bss + stack
    board: Board

    def usage_lines(self) -> list[str]:
        return [
            _usage("flash", self.flash_bytes, self.board.flash.length),
            _usage("RAM", self.ram_bytes, self.board.ram.length) + f" (incl. {self.board.stack_bytes:,} B stack)",
        ]


def _usage(label: str, used: int, total: int) -> str:
    return f"{label:5} {used:>10,} / {total:>10,} bytes ({100.0 * used / total:5.1f} %)"


def toolchain(tool: str = "gcc") -> str:
    path = shutil.which(f"arm-none-eabi-{tool}")
    if path is None:
        raise UserError(f"arm-none-eabi-{tool} not found", hint=TOOLCHAIN_HINT)
    return path


def check_fits(model: CompiledModel, board: Board) -> None:
    """Refuse, before building, a model whose weights or arena cannot fit the board."""
    flash_need = model.weights_bytes + CODE_ALLOWANCE
    ram_need = model.arena_bytes + board.stack_bytes + STATIC_RAM_ALLOWANCE
    problems = []
    if flash_need > board.flash.length:
        problems.append(f"flash: needs about {flash_need:,} bytes (weights {model.weights_bytes:,} + code), "
                        f"board has {board.flash.length:,} (short by {flash_need - board.flash.length:,})")
    if ram_need > board.ram.length:
        problems.append(f"RAM: needs about {ram_need:,} bytes (arena {model.arena_bytes:,} + stack and buffers), "
                        f"board has {board.ram.length:,} (short by {ram_need - board.ram.length:,})")
    if problems:
        raise UserError(f"model '{model.name}' does not fit board {board.name}:\n  " + "\n  ".join(problems),
                        hint="choose a board with more memory or a smaller model")


def cflags(board: Board) -> list[str]:
    flags = [f"-mcpu={board.cpu}", "-mthumb", f"-mfloat-abi={board.float_abi}"]
    if board.fpu != "none":
        flags.append(f"-mfpu={board.fpu}")
    flags += ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
              "-ffp-contract=off", "-fno-common"]
    defines = {
        "BOARD_NAME": f'"{board.name}"',
        "BOARD_CPU": f'"{board.cpu}"',
        "CPU_CLOCK_HZ": f"{board.clock_hz}u",
        "UART_BASE": f"0x{board.uart_base:08X}u",
        "UART_BAUD": f"{board.uart_baud}u",
        **{k: str(v) for k, v in board.extra_defines.items()},
    }
    flags += [f"-D{k}={v}" for k, v in defines.items()]
    flags += [f"-I{FIRMWARE_DIR / d}" for d in ("engine", "runtime")]
    return flags


def sources(board: Board, model_c: Path) -> list[Path]:
    driver = FIRMWARE_DIR / "drivers" / f"uart_{board.uart_driver}.c"
    if not driver.exists():
        raise UserError(f"board {board.name}: no UART driver '{board.uart_driver}' ({driver} missing)")
    found = [model_c, driver]
    for folder in ("engine", "engine/ops", "runtime"):
        found += sorted((FIRMWARE_DIR / folder).glob("*.c"))
    found += [board.directory / s for s in board.extra_sources]
    return found


def _memory_script(board: Board, out_dir: Path) -> Path:
    if board.linker_script:
        return board.directory / board.linker_script
    script = out_dir / "memory.ld"
    script.write_text(
        "/* Generated from the board file. */\nMEMORY\n{\n"
        f"    FLASH (rx)  : ORIGIN = 0x{board.flash.origin:08X}, LENGTH = 0x{board.flash.length:X}\n"
        f"    RAM   (rwx) : ORIGIN = 0x{board.ram.origin:08X}, LENGTH = 0x{board.ram.length:X}\n"
        "}\nINCLUDE sections.ld\n"
    )
    return script


def _compile_one(cc: str, flags: list[str], src: Path, obj: Path) -> str | None:
    """Compile if the source or flags changed (a hash stamp beside the object)."""
    stamp = obj.with_suffix(".hash")
    digest = hashlib.sha256(src.read_bytes() + " ".join(flags).encode()).hexdigest()
    headers_digest = hashlib.sha256(
        b"".join(h.read_bytes() for h in sorted(FIRMWARE_DIR.rglob("*.h")))).hexdigest()
    key = digest + headers_digest
    if obj.exists() and stamp.exists() and stamp.read_text() == key:
        return None
    result = subprocess.run([cc, *flags, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
    if result.returncode != 0:
        return f"{src}:\n{result.stderr}"
    stamp.write_text(key)
    return None


def build_firmware(model: CompiledModel, board: Board, out_dir: Path | None = None) -> FirmwareImage:
    check_fits(model, board)
    out_dir = out_dir or BUILD_DIR / board.name / model.name
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    model_c = model.write(out_dir)
    cc, flags = toolchain("gcc"), cflags(board)
    srcs = sources(board, model_c)
    objs = [obj_dir / f"{i:02d}_{s.stem}.o" for i, s in enumerate(srcs)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        errors = [e for e in pool.map(lambda p: _compile_one(cc, flags, *p), zip(srcs, objs, strict=True)) if e]
    if errors:
        raise UserError("firmware compilation failed:\n" + "\n".join(errors))
    elf = out_dir / "firmware.elf"
    link = [cc, *flags[:4], "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
            f"-Wl,--defsym=__stack_size={board.stack_bytes}", f"-L{FIRMWARE_DIR / 'runtime'}",
            f"-T{_memory_script(board, out_dir)}", "-Wl,--gc-sections", f"-Wl,-Map={out_dir / 'firmware.map'}",
            *map(str, objs), "-o", str(elf)]
    result = subprocess.run(link, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"firmware link failed for board {board.name}:\n{_explain_link_error(result.stderr)}",
                        hint="the model or its arena does not fit the board's memory" if "overflow" in
                        result.stderr.lower() else None)
    return image_sizes(elf, board)


def _explain_link_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "overflow" in line.lower() or "error" in line.lower()]
    return "\n".join(lines[:8]) or stderr[-2000:]


def image_sizes(elf: Path, board: Board) -> FirmwareImage:
    """Flash = .text + .ARM.exidx + .data; RAM = .data + .bss + stack."""
    result = subprocess.run([toolchain("size"), "-A", str(elf)], capture_output=True, text=True, check=True)
    sections = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    data = sections.get(".data", 0)
    flash = sections.get(".text", 0) + sections.get(".ARM.exidx", 0) + data
    ram = data + sections.get(".bss", 0) + board.stack_bytes
    return FirmwareImage(elf=elf, flash_bytes=flash, ram_bytes=ram, board=board)

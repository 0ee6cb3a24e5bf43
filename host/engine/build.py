"""Firmware build: the generated model + engine + runtime + board, from board data.

Objects are compiled in parallel into build/<board>/<model>/ and only rebuilt
when their source or flags change. Flash and RAM use are read from the ELF.
Builds into one directory take turns (host.core.files.directory_lock), and the ELF is replaced
whole, so processes building or booting the same firmware at once see a complete one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from host.compiler import CompiledModel
from host.core.boards import Board, MemoryRegion, list_boards, load_board
from host.core.errors import UserError
from host.core.files import directory_lock, write_whole
from host.core.paths import BUILD_DIR, FIRMWARE_DIR
from host.engine.preprocess import parse_stage

TOOLCHAIN_HINT = "install the Arm toolchain: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
# Pre-build fit check (check_fits). Model-dependent sizes are exact; these cover the rest.
CODE_ALLOWANCE = 64 * 1024    # engine + runtime code and tables in flash (measured ~22 KiB with -O2)
# protocol.c: rx/tx payload + per-op tick stamps + UART receive ring (512) + request history (448) (.bss.tm_io)
IO_BUFFER_BYTES = 2 * 4096 + (512 + 1) * 8 + 512 + 448
STATIC_RAM_ALLOWANCE = 1024   # other .data/.bss of runtime, engine and libc (measured < 100 B)
# MLPerf Tiny mode (firmware/runtime/mlperf_mode.c): the command line buffer; the `db` buffer holds the inputs.
MLPERF_COMMAND_BYTES = 1024
# Input sections of the placeable items (host.core.boards.PLACEABLE) for the generated regions.ld.
PLACEMENT_SECTIONS = {
    "io_buffers": "*(.bss.tm_io)",
    "arena": "*model.o(.bss.arena)",
}
# The model's constant tensors (host/compiler/emit.py: t<i>_data, one section each with -fdata-sections).
WEIGHT_SECTIONS = "*model.o(.rodata.t[0-9]*_data)"


@dataclass(frozen=True)
class FirmwareImage:
    elf: Path
    flash_bytes: int          # load image in flash: .text + .rodata + .data initializers
    ram_bytes: int            # RAM: .data + .bss (+ stack when the stack is in RAM)
    board: Board
    region_bytes: dict[str, int] = field(default_factory=dict)  # extra regions (incl. the stack if placed there)
    kernel_weights_bytes: int = 0  # weights copies for faster kernels (GUARDED_DATA) in this image

    def usage_lines(self) -> list[str]:
        stack = f" (incl. {self.board.stack_bytes:,} B stack)"
        lines = [
            _usage("flash", self.flash_bytes, self.board.flash.length),
            _usage("RAM", self.ram_bytes, self.board.ram.length) + (stack if self._stack_in("ram") else ""),
        ]
        for region in self.board.regions:
            lines.append(_usage(region.name, self.region_bytes.get(region.name, 0), region.length)
                         + (stack if self._stack_in(region.name) else ""))
        return lines

    def _stack_in(self, region: str) -> bool:
        return self.board.region_of("stack").name == region


def _usage(label: str, used: int, total: int) -> str:
    return f"{label:5} {used:>10,} / {total:>10,} bytes ({100.0 * used / total:5.1f} %)"


def toolchain(tool: str = "gcc") -> str:
    path = shutil.which(f"arm-none-eabi-{tool}")
    if path is None:
        raise UserError(f"arm-none-eabi-{tool} not found", hint=TOOLCHAIN_HINT)
    return path


@dataclass(frozen=True)
class RegionNeed:
    region: MemoryRegion
    need: int
    parts: tuple[tuple[str, int], ...]

    @property
    def short_by(self) -> int:
        return self.need - self.region.length

    def describe(self) -> str:
        parts = " + ".join(f"{label} {size:,}" for label, size in self.parts)
        return (f"memory.{self.region.name} (0x{self.region.origin:08X}, {self.region.length:,} bytes): "
                f"needs about {self.need:,} bytes ({parts}), short by {self.short_by:,} bytes")


def mlperf_db_bytes(model: CompiledModel) -> int:
    """The MLPerf mode's `db` buffer: every input tensor's bytes (rounded up to 4)."""
    return (sum(t.nbytes for t in model.inputs) + 3) // 4 * 4


def estimate_needs(model: CompiledModel, board: Board, mlperf: bool = False) -> list[RegionNeed]:
    """What the model's firmware needs in each memory region (model sizes exact, code and statics estimated).
    `mlperf`: the MLPerf Tiny mode build, which adds its input and command buffers to RAM."""
    parts: dict[str, list[tuple[str, int]]] = {r.name: [] for r in board.all_regions}
    parts[board.region_of("weights").name].append(("weights", model.weights_bytes))
    for label, size in guarded_weights(model, board):
        parts[board.region_of("weights").name].append((label, size))
    parts["flash"].append(("code", CODE_ALLOWANCE))
    for item, label, size in (("arena", "arena", model.arena_bytes), ("io_buffers", "I/O buffers", IO_BUFFER_BYTES),
                              ("stack", "stack", board.stack_bytes)):
        parts[board.region_of(item).name].append((label, size))
    parts["ram"].append(("other statics", STATIC_RAM_ALLOWANCE))
    if mlperf:
        parts["ram"].append(("MLPerf db and command buffers", mlperf_db_bytes(model) + MLPERF_COMMAND_BYTES))
    return [RegionNeed(r, sum(size for _, size in parts[r.name]), tuple(parts[r.name]))
            for r in board.all_regions if parts[r.name]]


def placed_for(model: CompiledModel, board: Board, mlperf: bool = False) -> Board:
    """The board with its `overflow` regions resolved for this model: an item ([memory.<name>] overflow)
    that does not fit where it would go (weights: flash; arena, I/O buffers: RAM) moves to the first
    such region with room for it. Everything that fits stays where it is: the fastest memory first."""
    if not any(r.overflow for r in board.regions):
        return board
    weights = model.weights_bytes + sum(size for _, size in guarded_weights(model, board))
    sizes = {"weights": weights, "arena": model.arena_bytes, "io_buffers": IO_BUFFER_BYTES}
    for item in ("weights", "arena", "io_buffers"):
        needs = {n.region.name: n for n in estimate_needs(model, board, mlperf)}
        home = board.region_of(item)
        if needs[home.name].short_by <= 0:
            continue
        for region in board.regions:
            used = needs[region.name].need if region.name in needs else 0
            if item in region.overflow and used + sizes[item] <= region.length:
                board = _moved(board, item, region)
                break
    return board


def _moved(board: Board, item: str, to: MemoryRegion) -> Board:
    regions = tuple(dataclasses.replace(r, holds=(*r.holds, item)) if r is to else r for r in board.regions)
    return dataclasses.replace(board, regions=regions)


# Constant data model.c holds only where a tm_kernel_table.h macro is set, and the features that set it.
GUARDED_DATA = {"TM_FC_WEIGHTS16": ("FULLY_CONNECTED weights widened for the DSP kernel", ("dsp",), ("mve",)),
                "TM_CONV_WEIGHTS16": ("CONV_2D weights widened for the DSP kernel", ("dsp",), ("mve",)),
                "TM_CONV_WINOGRAD": ("CONV_2D 3x3 filters in the Winograd domain for the DSP kernel", ("dsp",),
                                     ("mve",)),
                "TM_CONV_WINOGRAD16": ("CONV_2D int16x8 3x3 filters in the Winograd domain for the DSP kernel",
                                       ("dsp",), ("mve",)),
                "TM_CONV_WIDE_RQ": ("CONV_2D and DEPTHWISE_CONV_2D requantization words for the DSP kernels",
                                    ("dsp",), ("mve",))}

# Guards of kernel paths that run only over the model's guarded data (the Winograd paths, over the filters the compiler
# transformed): a build whose model holds none of it sets the macro to 0, so the path's code is left out of the image.
DATA_ONLY_PATHS = ("TM_CONV_WINOGRAD", "TM_CONV_WINOGRAD16")


def paths_without_data(model: CompiledModel) -> dict[str, str]:
    """-D defines that leave out the DATA_ONLY_PATHS whose data the model does not hold."""
    return {macro: "0" for macro in DATA_ONLY_PATHS if macro not in model.guarded_bytes}


def guarded_weights(model: CompiledModel, board: Board) -> list[tuple[str, int]]:
    """(label, bytes) of the model's guarded data this board's build holds."""
    features = cpu_features(board) if model.guarded_bytes else ()
    return [(GUARDED_DATA[macro][0], size) for macro, size in model.guarded_bytes.items()
            if all(f in features for f in GUARDED_DATA[macro][1])
            and not any(f in features for f in GUARDED_DATA[macro][2])]


def without_guarded_if_short(model: CompiledModel, board: Board, mlperf: bool = False) -> tuple[CompiledModel,
                                                                                                   dict[str, str]]:
    """The model as built for the board: where its guarded data (faster kernels' copies) would not fit, the
    model without it and the defines that leave it out of model.c (check_fits then judges what is left)."""
    if not guarded_weights(model, board):
        return model, {}
    short = [n for n in estimate_needs(model, placed_for(model, board, mlperf), mlperf) if n.short_by > 0]
    if not short:
        return model, {}
    return dataclasses.replace(model, guarded_bytes={}), {macro: "0" for macro in model.guarded_bytes}


def check_fits(model: CompiledModel, board: Board, mlperf: bool = False) -> None:
    """Refuse, before building, a model that cannot fit the board: name each region and its shortfall."""
    board = placed_for(model, board, mlperf)
    problems = [n for n in estimate_needs(model, board, mlperf) if n.short_by > 0]
    if problems:
        raise UserError(f"model '{model.name}' does not fit board {board.name}:\n  "
                        + "\n  ".join(n.describe() for n in problems), hint=_boards_that_fit(model))


# Stack under the deepest kernel's scratch: main, the protocol, the engine and the kernel's own frames, and
# an exception frame (measured with -fstack-usage for the int16x8 CONV_2D chain on mps2-an386: about 1.4 KB).
STACK_FRAMES_BYTES = 2048


def check_stack(model: CompiledModel, board: Board) -> None:
    """Refuse a model whose kernels' scratch (on the stack, one op at a time) and the call frames under it
    exceed the board's stack: it would overwrite the statics below the stack."""
    scratch = model.scratch_bytes(cpu_features(board))
    if scratch + STACK_FRAMES_BYTES > board.stack_bytes:
        raise UserError(
            f"model '{model.name}' needs about {scratch + STACK_FRAMES_BYTES:,} bytes of stack on {board.name} "
            f"(its largest kernel scratch {scratch:,} + call frames {STACK_FRAMES_BYTES:,}) but the board file "
            f"gives stack_bytes = {board.stack_bytes:,}",
            hint=f"raise stack_bytes in boards/{board.name}/board.toml (RAM permitting), "
                 "or build the portable kernels (TM_KERNELS=portable)")


def _boards_that_fit(model: CompiledModel) -> str:
    fitting = []
    for name in list_boards(every=True):
        try:
            other = load_board(name)
        except UserError:
            continue
        if all(n.short_by <= 0 for n in estimate_needs(model, placed_for(model, other))):
            fitting.append(name)
    if not fitting:
        return "no board in boards/ has room for it: choose a smaller model"
    return f"boards with room for it: {', '.join(fitting)}"


def cflags(board: Board, extra_defines: dict[str, str] | None = None) -> list[str]:
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
        **(extra_defines or {}),
    }
    flags += [f"-D{k}={v}" for k, v in defines.items()]
    if portable_only():
        flags.append("-DTM_KERNELS_PORTABLE=1")
    flags += [f"-I{FIRMWARE_DIR / d}" for d in ("engine", "runtime")]
    return flags


# Kernel selection: firmware/engine/tm_kernel_table.h is the one place that decides which kernel runs each
# op, from the compiler's own target macros for the board's -mcpu (docs/engine.md, "Optimized kernels");
# every kernel folder (engine/ops*/) is compiled (a folder whose feature the core lacks compiles to nothing).
# TM_KERNELS=portable in the environment builds the portable kernels only (for comparisons).
KERNEL_FEATURES = ("mve", "dsp", "fpu")   # the table's feature columns, most specific first


def kernel_folders() -> list[Path]:
    """firmware/engine/ops/ (portable) and every ops_<feature>/."""
    return sorted(p for p in (FIRMWARE_DIR / "engine").glob("ops*") if p.is_dir())


def portable_only() -> bool:
    return os.environ.get("TM_KERNELS", "") == "portable"


def cpu_features(board: Board) -> tuple[str, ...]:
    """The table's features this board's build has (TM_HAVE_<FEATURE> as the cross-compiler sees it)."""
    return _features_for(tuple(cflags(board)))


@functools.lru_cache(maxsize=64)
def _features_for(flags: tuple[str, ...]) -> tuple[str, ...]:
    table = FIRMWARE_DIR / "engine" / "tm_kernel_table.h"
    probe = "".join(f"have_{f} TM_HAVE_{f.upper()}\n" for f in KERNEL_FEATURES)
    result = subprocess.run([toolchain("gcc"), *flags, "-E", "-P", "-include", str(table), "-"],
                            input=probe, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"cannot read the kernel table's features ({' '.join(flags[:3])}):\n{result.stderr.strip()}")
    have = dict(line.split() for line in result.stdout.splitlines() if line.startswith("have_"))
    return tuple(f for f in KERNEL_FEATURES if have.get(f"have_{f}") == "1")


def sources(board: Board, model_c: Path) -> list[Path]:
    driver = FIRMWARE_DIR / "drivers" / f"uart_{board.uart_driver}.c"
    if not driver.exists():
        raise UserError(f"board {board.name}: no UART driver '{board.uart_driver}' ({driver} missing)")
    found = [model_c, driver]
    for folder in (FIRMWARE_DIR / "engine", *kernel_folders(), FIRMWARE_DIR / "runtime"):
        found += sorted(folder.glob("*.c"))
    found += [board.directory / s for s in board.extra_sources]
    return found


def _memory_script(board: Board, out_dir: Path) -> Path:
    (out_dir / "regions.ld").write_text(regions_script(board))
    (out_dir / "weights.ld").write_text(weights_script(board))
    if board.linker_script:
        return board.directory / board.linker_script
    script = out_dir / "memory.ld"
    lines = ["/* Generated from the board file. */", "MEMORY", "{"]
    for region in board.all_regions:
        access = "rx" if region is board.flash else "rwx"
        lines.append(f"    {region.name.upper():8} ({access}) : ORIGIN = 0x{region.origin:08X}, "
                     f"LENGTH = 0x{region.length:X}")
    script.write_text("\n".join([*lines, "}", "INCLUDE sections.ld", ""]))
    return script


def weights_script(board: Board) -> str:
    """The output section of the region that holds the model's weights, if one does (sections.ld includes
    it before .text, whose *(.rodata*) would otherwise take them into flash). Loaded with the image: the
    loader (QEMU, a debug probe) writes them there; nothing copies them at boot."""
    region = board.region_of("weights")
    out = ["/* Generated from the board file: the region holding the model's weights (see docs/boards.md). */"]
    if region is board.flash:
        return "\n".join([*out, "/* none: the weights stay in .text, in flash */", ""])
    return "\n".join([*out, f"    .{region.name}_weights : ALIGN(16)", "    {", f"        {WEIGHT_SECTIONS}",
                      f"    }} > {region.name.upper()}", ""])


def regions_script(board: Board) -> str:
    """Output sections for the extra regions (NOLOAD: zeroed by startup.c via the zero table)."""
    out = ["/* Generated from the board file: extra memory regions (see docs/boards.md). */"]
    zeroed = []
    for region in board.regions:
        body = [f"        {PLACEMENT_SECTIONS[item]}" for item in region.holds if item in PLACEMENT_SECTIONS]
        if not body and "stack" not in region.holds:
            continue
        name = region.name
        out += [f"    .{name} (NOLOAD) : ALIGN(16)", "    {", f"        __{name}_start = .;", *body,
                "        . = ALIGN(4);", f"        __{name}_end = .;"]
        if "stack" in region.holds:
            out += ["        . = ALIGN(8);", "        . += __stack_size;", "        __stack_top = .;"]
        out += [f"    }} > {name.upper()}", ""]
        if body:
            zeroed.append(name)
    if zeroed:
        out += ["    .zero_table : ALIGN(4)", "    {", "        __zero_table_start = .;",
                *[f"        LONG(__{n}_start) LONG(__{n}_end)" for n in zeroed],
                "        __zero_table_end = .;", "    } > FLASH"]
    else:
        out += ["    __zero_table_start = 0;", "    __zero_table_end = 0;"]
    return "\n".join(out) + "\n"


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


def mlperf_defines(model: CompiledModel, model_id: str | None = None) -> dict[str, str]:
    """-D defines of the MLPerf Tiny mode build (firmware/runtime/mlperf_mode.c, docs/mlperf.md);
    `model_id` is what `profile%` reports as m-model-[...] (e.g. kws01; default: the model's name)."""
    defines = {"TM_MLPERF_MODE": "1", "TM_MLPERF_DB_BYTES": f"{mlperf_db_bytes(model)}u",
               "TM_MLPERF_CMD_BYTES": f"{MLPERF_COMMAND_BYTES}u"}
    if model_id is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", model_id):
            raise UserError(f"MLPerf model id {model_id!r}: letters, digits, '_', '.', '-' only (e.g. kws01)")
        defines["TM_MLPERF_MODEL_ID"] = f'"{model_id}"'
    return defines


def preprocess_defines(model: CompiledModel, preprocess: object, input_range: tuple[float, float]) -> dict[str, str]:
    """-D defines of the input pre-processing stage (firmware/runtime/preprocess.c, docs/defenses.md):
    `preprocess` is "squeeze:BITS", "median:WINDOW" or a host.engine.preprocess.ChipStage."""
    stage = parse_stage(preprocess)  # type: ignore[arg-type]
    if stage is None:
        return {}
    if not model.inputs:
        raise UserError(f"model '{model.name}' has no input for the pre-processing stage {stage.label}")
    return stage.defines(model.inputs[0], input_range)


def build_firmware(model: CompiledModel, board: Board, out_dir: Path | None = None,
                   mlperf: bool = False, mlperf_model_id: str | None = None,
                   preprocess: object = None, input_range: tuple[float, float] = (0.0, 1.0)) -> FirmwareImage:
    """Build the firmware; `mlperf` builds the MLPerf Tiny compatibility mode (the EEMBC text protocol,
    docs/mlperf.md) instead of the framed protocol (into build/<board>/<model>-mlperf by default).
    `preprocess` ("squeeze:4", "median:2"): the on-chip input pre-processing stage, for a model input
    whose `input_range` is the float range it quantizes (into build/<board>/<model>-squeeze4 by default).
    The image's `board` has the board file's overflow regions resolved for this model (placed_for)."""
    model, leave_out = without_guarded_if_short(model, board, mlperf)
    board = placed_for(model, board, mlperf)
    if mlperf:
        check_fits(model, board, mlperf)
    else:
        check_fits(model, board)  # (the two-argument call some callers and tests stand in for)
    check_stack(model, board)
    pre = preprocess_defines(model, preprocess, input_range)
    if pre and mlperf:
        raise UserError("the input pre-processing stage runs in the framed protocol's INFER, not in the MLPerf mode",
                        hint="drop PREPROCESS or MLPERF")
    suffix = "-mlperf" if mlperf else (f"-pre{pre['TM_PREPROCESS']}-{pre['TM_PREPROCESS_PARAM']}" if pre else "")
    out_dir = out_dir or BUILD_DIR / board.name / (model.name + suffix)
    defines = {**(mlperf_defines(model, mlperf_model_id) if mlperf else pre), **paths_without_data(model),
               **leave_out} or None
    with directory_lock(out_dir):   # another process building this firmware would rewrite model.c mid-compile
        model_c = model.write(out_dir)
        objs = _compile_all(board, sources(board, model_c), out_dir / "obj", defines)
        image = _link(board, objs, out_dir, out_dir / "firmware.elf")
    return dataclasses.replace(image, kernel_weights_bytes=sum(size for _, size in guarded_weights(model, board)))


def export_image(image: FirmwareImage, fmt: str) -> Path:
    """The ELF's load image as firmware.bin (raw, from the lowest flash address) or firmware.hex (Intel HEX),
    what a mass-storage probe (Mbed/DAPLink, ST-LINK) takes."""
    out = image.elf.with_suffix(f".{fmt}")
    kind = {"bin": "binary", "hex": "ihex"}[fmt]
    sections = [f"--only-section={name}" for name in _flash_sections(image)]
    result = subprocess.run([toolchain("objcopy"), "-O", kind, *sections, str(image.elf), str(out)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"objcopy could not write {out}: {result.stderr.strip()}")
    return out


def _flash_sections(image: FirmwareImage) -> list[str]:
    """Sections with contents loaded at a flash address (code, constants, .data initializers)."""
    result = subprocess.run([toolchain("objdump"), "-h", str(image.elf)], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    names = []
    for line, flags in zip(lines, [*lines[1:], ""], strict=True):
        match = _SECTION.match(line)
        if match and "LOAD" in flags and "CONTENTS" in flags and image.board.flash.contains(int(match.group(4), 16)):
            names.append(match.group(1))
    return names


def _compile_all(board: Board, srcs: list[Path], obj_dir: Path,
                 extra_defines: dict[str, str] | None = None) -> list[Path]:
    obj_dir.mkdir(parents=True, exist_ok=True)
    cc, flags = toolchain("gcc"), cflags(board, extra_defines)
    objs = [obj_dir / f"{i:02d}_{s.stem}.o" for i, s in enumerate(srcs)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        errors = [e for e in pool.map(lambda p: _compile_one(cc, flags, *p), zip(srcs, objs, strict=True)) if e]
    if errors:
        raise UserError("firmware compilation failed:\n" + "\n".join(errors))
    return objs


def _link(board: Board, objs: list[Path], out_dir: Path, elf: Path) -> FirmwareImage:
    cc, flags = toolchain("gcc"), cflags(board)
    link = [cc, *flags[:4], "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
            f"-Wl,--defsym=__stack_size={board.stack_bytes}", f"-L{FIRMWARE_DIR / 'runtime'}", f"-L{out_dir}",
            f"-T{_memory_script(board, out_dir)}", "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}",
            *map(str, objs), "-o"]

    def run_linker(partial: Path) -> None:
        result = subprocess.run([*link, str(partial)], capture_output=True, text=True)
        if result.returncode != 0:
            elf.unlink(missing_ok=True)   # as the linker leaves it: no ELF of an older build beside a failed one
            explained, overflow = _explain_link_error(result.stderr.replace(str(partial), str(elf)))
            raise UserError(f"firmware link failed for board {board.name}:\n{explained}",
                            hint="the model or its arena does not fit the board's memory: choose a bigger board "
                                 "or a smaller model" if overflow else None)

    write_whole(elf, run_linker)   # a process booting this directory's previous ELF reads that one intact
    return image_sizes(elf, board)


def build_calibration(board: Board, out_dir: Path | None = None) -> FirmwareImage:
    """The tick calibration firmware (firmware/runtime/calibrate/): startup, SysTick and UART of the board
    and a timed loop of known instruction count; see host.emulators.qemu.calibrate."""
    out_dir = out_dir or BUILD_DIR / board.name / "_calibrate"
    runtime = FIRMWARE_DIR / "runtime"
    srcs = [runtime / "calibrate" / "calibrate.c", runtime / "startup.c", runtime / "systick.c",
            FIRMWARE_DIR / "drivers" / f"uart_{board.uart_driver}.c",
            *(board.directory / s for s in board.extra_sources)]
    with directory_lock(out_dir):
        objs = _compile_all(board, srcs, out_dir / "obj")
        return _link(board, objs, out_dir, out_dir / "calibrate.elf")


_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def _explain_link_error(stderr: str) -> tuple[str, bool]:
    """The linker's complaint, with 'region X overflowed' turned into the board file's region name."""
    lines, overflow = [], False
    for line in stderr.splitlines():
        match = _OVERFLOW.search(line)
        if match:
            overflow = True
            lines.append(f"  memory.{match.group(1).lower()} is short by {int(match.group(2)):,} bytes")
        elif ("overflow" in line.lower() or "error" in line.lower()) and "collect2" not in line:
            overflow = overflow or "overflow" in line.lower()
            lines.append("  " + line.split(": ", 1)[-1] if "ld:" in line else "  " + line)
    return "\n".join(dict.fromkeys(lines[:8])) or stderr[-2000:], overflow


_SECTION = re.compile(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+2\*\*\d+\s*$")


def image_sizes(elf: Path, board: Board) -> FirmwareImage:
    """Bytes per memory region from the ELF's section headers: flash counts what is loaded at a
    flash address (code, constants, .data initializers), other regions what runs at their addresses
    (.data, .bss, NOLOAD sections), plus the stack where the board file puts it."""
    result = subprocess.run([toolchain("objdump"), "-h", str(elf)], capture_output=True, text=True, check=True)
    used = {r.name: 0 for r in board.all_regions}
    lines = result.stdout.splitlines()
    for line, flags in zip(lines, [*lines[1:], ""], strict=True):
        match = _SECTION.match(line)
        if not match or "ALLOC" not in flags:
            continue
        size, vma, lma = (int(match.group(i), 16) for i in (2, 3, 4))
        if "LOAD" in flags and board.flash.contains(lma):
            used["flash"] += size
        for region in board.all_regions:
            if region is not board.flash and region.contains(vma):
                used[region.name] += size
    if board.region_of("stack") is board.ram:
        used["ram"] += board.stack_bytes
    return FirmwareImage(elf=elf, flash_bytes=used["flash"], ram_bytes=used["ram"], board=board,
                         region_bytes={r.name: used[r.name] for r in board.regions})

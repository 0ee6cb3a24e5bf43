"""The QEMU cycle plugin: build it, tell it which windows to count, read its counts.

firmware/tools/qemu_cycles/ is a TCG plugin (C, QEMU plugin API version 1) that counts the
executed instructions of each window by Cortex-M4 timing class, and the data accesses and
fetched bytes per memory region; host.core.timing turns the counts into estimated cycles
(docs/performance.md, "Estimated cycles").

A window is a call: from the `bl <function>` to the instruction after it, e.g. every call of
the engine's `tm_invoke`, whose addresses come from the ELF (`objdump`). A split function
(`tm_op_boundary_hook`) cuts a window into segments, one per op. The plugin appends one record
per window to a file, flushed before the firmware goes on, so the record of an inference is
there when its answer reaches the host.

With `pcs` the plugin also counts executions per instruction address inside the windows;
`function_counts` sums them per function of the ELF's symbol table (`host.check --functions`).

Imports: host.core, host.engine.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from host.core.boards import Board
from host.core.errors import UserError
from host.core.files import write_whole
from host.core.paths import BUILD_DIR, FIRMWARE_DIR
from host.engine.build import toolchain

PLUGIN_DIR = FIRMWARE_DIR / "tools" / "qemu_cycles"
PLUGIN_API_VERSION = 1
PLUGIN_CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden")
INVOKE_FUNCTION = "tm_invoke"
OP_BOUNDARY_FUNCTION = "tm_op_boundary_hook"
HOST_CC_HINT = "install the host C compiler: sudo apt-get install gcc"
_runs = itertools.count()


class CyclesUnavailable(UserError):
    """The plugin cannot be built or loaded: cycles are not counted, everything else works."""


def build_plugin(api_version: int = PLUGIN_API_VERSION) -> Path:
    """Compile the plugin with the host's gcc, cached under build/cycles/<hash of sources and flags>/."""
    sources = sorted(PLUGIN_DIR.glob("*.c"))
    headers = sorted(PLUGIN_DIR.glob("*.h"))
    flags = [*PLUGIN_CFLAGS, f"-DSLINGSHOT_PLUGIN_API_VERSION={api_version}"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in (*sources, *headers)) + " ".join(flags).encode())
    library = BUILD_DIR / "cycles" / digest.hexdigest()[:16] / "slingshot_cycles.so"
    if library.exists():
        return library
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CyclesUnavailable("cannot build the QEMU cycle plugin: no host C compiler (gcc)", hint=HOST_CC_HINT)

    def compile_plugin(partial: Path) -> None:
        result = subprocess.run([cc, *flags, "-o", str(partial), *map(str, sources)], capture_output=True, text=True)
        if result.returncode != 0:
            raise CyclesUnavailable(f"cannot build the QEMU cycle plugin ({PLUGIN_DIR}):\n"
                                    f"{result.stderr.strip()[-1500:]}", hint="cycles are not counted; instructions are")

    write_whole(library, compile_plugin)   # two builds at once each write their own
    return library


@dataclass(frozen=True)
class Markers:
    """Instruction addresses that open (`starts`) and close (`ends`) windows, and split them."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    splits: tuple[int, ...] = ()
    names: dict[int, str] = field(default_factory=dict)   # start address -> called function


_CALL = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{4}\s+){2}\s*bl\s+[0-9a-f]+\s+<([A-Za-z_.$][\w.$]*)>\s*$")
_SYMBOL = re.compile(r"^([0-9a-f]{8})\s.*\s([A-Za-z_.$][\w.$]*)$")
_FUNCTION = re.compile(r"^([0-9a-f]{8})\s+\w?\s+F\s+\S+\s+([0-9a-f]{8})\s+([A-Za-z_.$][\w.$]*)$")


def call_markers(elf: Path, functions: tuple[str, ...] | str = INVOKE_FUNCTION,
                 split_at: str | None = None) -> Markers:
    """Windows around every `bl` to one of `functions` in the ELF (32-bit BL: the window ends 4 bytes on);
    `split_at`: a function whose entry splits a window into segments."""
    wanted = (functions,) if isinstance(functions, str) else functions
    disassembly = _objdump(elf, "-d")
    starts: list[int] = []
    names: dict[int, str] = {}
    for line in disassembly.splitlines():
        match = _CALL.match(line)
        if match and match.group(2) in wanted:
            address = int(match.group(1), 16)
            starts.append(address)
            names[address] = match.group(2)
    if not starts:
        raise CyclesUnavailable(f"{elf}: no call of {', '.join(wanted)} found", hint="cycles are not counted")
    splits: tuple[int, ...] = ()
    if split_at is not None:
        splits = (symbol_address(elf, split_at),)
    return Markers(tuple(starts), tuple(a + 4 for a in starts), splits, names)


def symbol_address(elf: Path, name: str) -> int:
    """A function's address in the ELF's symbol table (without the Thumb bit)."""
    for line in _objdump(elf, "-t").splitlines():
        match = _SYMBOL.match(line.strip())
        if match and match.group(2) == name:
            return int(match.group(1), 16) & ~1
    raise CyclesUnavailable(f"{elf}: no symbol {name}", hint="cycles are not counted")


def functions_of(elf: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of every function symbol, sorted, without the Thumb bit; a symbol without a
    size (hand-written assembly) runs to the next one (the last: to the end of the address space)."""
    symbols = []
    for line in _objdump(elf, "-t").splitlines():
        match = _FUNCTION.match(line.strip())
        if match:
            symbols.append((int(match.group(1), 16) & ~1, int(match.group(2), 16), match.group(3)))
    symbols.sort()
    spans = []
    for index, (start, size, name) in enumerate(symbols):
        following = symbols[index + 1][0] if index + 1 < len(symbols) else 1 << 32
        spans.append((start, start + size if size else following, name))
    return spans


@dataclass(frozen=True)
class PcCount:
    """One instruction address's executions inside windows, with its timing class (and its
    registers' class and count for LDM/STM/PUSH/POP)."""

    address: int
    executions: int
    cls: str
    regs_cls: str | None
    regs: int


def function_counts(elf: Path, pcs: list[PcCount]) -> dict[str, dict[str, int]]:
    """The timing-class counts of each function's instructions (a conditional instruction counts
    as its taken class: a slight over-estimate). Addresses outside every function: '?'."""
    spans = functions_of(elf)
    starts = [start for start, _, _ in spans]
    per_function: dict[str, dict[str, int]] = {}
    for pc in pcs:
        index = bisect.bisect_right(starts, pc.address) - 1
        inside = index >= 0 and pc.address < spans[index][1]
        counts = per_function.setdefault(spans[index][2] if inside else "?", {})
        counts[pc.cls] = counts.get(pc.cls, 0) + pc.executions
        if pc.regs_cls is not None:
            counts[pc.regs_cls] = counts.get(pc.regs_cls, 0) + pc.executions * pc.regs
    return per_function


def _objdump(elf: Path, *args: str) -> str:
    result = subprocess.run([toolchain("objdump"), *args, str(elf)], capture_output=True, text=True)
    if result.returncode != 0:
        raise CyclesUnavailable(f"objdump cannot read {elf}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Window:
    """One window's counts (counter name -> count) and, when split, its segments' counts."""

    start: int
    counts: dict[str, int]
    segments: tuple[dict[str, int], ...] = ()


@dataclass
class CyclePlugin:
    """The plugin as loaded into one QEMU run: its library, windows, regions and output file."""

    library: Path
    markers: Markers
    regions: tuple[tuple[str, int, int], ...]   # (name, origin, length)
    output: Path
    learn_after: int = 1     # windows whose every data access is watched before the plugin learns (0: never)
    learned: int | None = None   # memory instructions counted inline after learning (the plugin says so)
    pcs: Path | None = None      # where the plugin writes executions per instruction address (None: not counted)
    _offset: int = 0
    _names: list[str] = field(default_factory=list)

    @classmethod
    def for_firmware(cls, board: Board, elf: Path, profile: bool = False, pcs: bool = False) -> CyclePlugin:
        """Windows = the firmware's calls of tm_invoke (split per op when `profile`); `pcs`: also count
        executions per instruction address."""
        markers = call_markers(elf, INVOKE_FUNCTION, OP_BOUNDARY_FUNCTION if profile else None)
        plugin = cls.for_markers(board, elf, markers)
        if pcs:
            plugin.pcs = plugin.output.with_suffix(".pcs")
        return plugin

    @classmethod
    def for_markers(cls, board: Board, elf: Path, markers: Markers) -> CyclePlugin:
        regions = tuple((r.name, r.origin, r.length) for r in board.all_regions)
        output = elf.parent / f"{elf.stem}.{os.getpid()}-{next(_runs)}.cycles"  # one per QEMU run
        return cls(build_plugin(), markers, regions, output)

    def qemu_args(self) -> list[str]:
        if "," in str(self.output) or "," in str(self.library):
            raise CyclesUnavailable(f"QEMU's -plugin option cannot take a path with a comma: {self.output}")
        args = [f"file={self.library}", f"out={self.output}", f"learn_after={self.learn_after}"]
        args += [f"region={name}:{origin:#x}:{length:#x}" for name, origin, length in self.regions]
        args += [f"start={a:#x}" for a in self.markers.starts]
        args += [f"end={a:#x}" for a in self.markers.ends]
        args += [f"mark={a:#x}" for a in self.markers.splits]
        if self.pcs is not None:
            args.append(f"pcs={self.pcs}")
        return ["-plugin", ",".join(args)]

    def reset(self) -> None:
        """Before QEMU starts: the plugin rewrites the file from the beginning."""
        self._offset, self._names, self.learned = 0, [], None
        self.output.unlink(missing_ok=True)
        if self.pcs is not None:
            self.pcs.unlink(missing_ok=True)

    def started(self) -> bool:
        """The plugin has written its header: QEMU loaded it."""
        try:
            with self.output.open("rb") as f:
                return f.readline().endswith(b"\n")
        except FileNotFoundError:
            return False

    def discard(self) -> None:
        """After QEMU has stopped: the counts files are not kept."""
        self.output.unlink(missing_ok=True)
        if self.pcs is not None:
            self.pcs.unlink(missing_ok=True)

    def read_pcs(self) -> list[PcCount]:
        """Executions per instruction address in every window closed so far (the plugin rewrites the
        file whole as a window closes)."""
        if self.pcs is None or not self.pcs.exists():
            return []
        counts = []
        for line in self.pcs.read_text().splitlines():
            if line.startswith("#"):
                continue
            address, executions, cls, regs_cls, regs = line.split()
            counts.append(PcCount(int(address, 16), int(executions), cls, None if regs_cls == "-" else regs_cls,
                                  int(regs)))
        return counts

    def read_windows(self) -> list[Window]:
        """The windows completed since the last call, in order."""
        if not self.output.exists():
            return []
        with self.output.open("rb") as f:
            f.seek(self._offset)
            text = f.read().decode("ascii", errors="replace")
        end = position = 0
        for line in text.split("\n")[:-1]:  # whole lines only: QEMU may be writing the last one
            position += len(line) + 1
            if line.startswith(("W ", "#")):
                end = position  # a record is complete at its W line
        self._offset += end
        return self._parse(text[:end])

    def _parse(self, text: str) -> list[Window]:
        windows: list[Window] = []
        segments: list[dict[str, int]] = []
        for line in text.splitlines():
            if line.startswith("# slingshot-cycles"):
                self._names = line.split(" counters ", 1)[1].split()
            elif line.startswith("# learned "):
                self.learned = int(line.split()[2])
            elif line.startswith("S "):
                segments.append(self._counts(line.split()[1:]))
            elif line.startswith("W "):
                fields = line.split()
                windows.append(Window(int(fields[1], 16), self._counts(fields[2:]), tuple(segments)))
                segments = []
        return windows

    def _counts(self, values: list[str]) -> dict[str, int]:
        if len(values) != len(self._names):
            raise CyclesUnavailable(f"{self.output}: a record has {len(values)} counts for {len(self._names)} counters")
        return dict(zip(self._names, map(int, values), strict=True))


def qemu_version() -> str:
    """`qemu-system-arm --version`'s version, for error messages."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        return "unknown"
    result = subprocess.run([qemu, "--version"], capture_output=True, text=True)
    match = re.search(r"version\s+(\S+)", result.stdout)
    return match.group(1) if match else "unknown"


def load_error(stderr: str) -> CyclesUnavailable | None:
    """QEMU's complaint about the plugin, as one error naming QEMU's version and the plugin API versions."""
    line = next((s for s in stderr.splitlines() if "plugin" in s.lower()), None)
    if line is None:
        return None
    # "qemu-system-arm: Could not load plugin PATH: plugin requires API version 2, but this QEMU supports ..."
    detail = line.split(": ", 2)[-1] if "Could not load plugin" in line else line
    return CyclesUnavailable(
        f"QEMU {qemu_version()} cannot load the cycle plugin, written for QEMU plugin API version "
        f"{PLUGIN_API_VERSION}: {detail.strip()}",
        hint="cycles need a QEMU with TCG plugins that accepts plugin API version 1 (Debian bookworm's "
             "qemu-system-arm 7.2 does); instructions are still counted")

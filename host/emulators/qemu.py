"""QEMU as a board: start it with the UART on a loopback TCP port, connect
with pyserial's socket:// URL, and make sure it always stops.

-icount shift=N (the board file's emulator.icount_shift, default 0) makes the
guest run one instruction per 2^N virtual nanoseconds, so SysTick ticks count
instructions deterministically (the cost metric).  `calibrate` measures how
many instructions one tick is on a board:

    python -m host.emulator calibrate [BOARD ...]
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import serial

from host.core.boards import Board
from host.core.errors import UserError
from host.emulators.cycles import CyclePlugin, CyclesUnavailable, Window, load_error
from host.engine.build import build_calibration

QEMU_HINT = "install QEMU: sudo apt-get install qemu-system-arm"
PR_SET_PDEATHSIG = 1
running_emulators: weakref.WeakSet[QemuProcess] = weakref.WeakSet()


def die_with_parent() -> None:
    """In the child: get SIGTERM when the host process dies, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


_WAITING_ON = re.compile(rb"waiting for connection on: \S*tcp:[^:\s]*:(\d+)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_cores_handed_out = itertools.count()


def one_core() -> set[int]:
    """A core for an emulator nobody placed: round-robin over the cores this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    return {allowed[next(_cores_handed_out) % len(allowed)]}


class QemuProcess:
    """One QEMU instance running a firmware ELF; use as a context manager.

    All its threads are bound to `cpus` (default: one core, round-robin; an empty set: not
    bound).  Under -icount the guest runs in one thread and the UART in the main-loop thread,
    which hand every UART byte to each other: on one core that hand-off is a cheap switch,
    across cores a wake-up of a sleeping thread (docs/evaluate.md, "Several devices").

    `plugin`: the cycle plugin (host.emulators.cycles), loaded only when given; it leaves the
    -icount instruction counts unchanged.

    `paced_shift`: run in wall-clock time, one instruction per 2^shift ns (`-icount shift=N,align=on`:
    QEMU sleeps whenever the guest gets ahead of the host's clock), for tools that time the board
    by the wall clock (the MLPerf Tiny runner).  QEMU then warns on stderr when it falls behind, so
    stderr goes to a file rather than a pipe nobody reads until the end."""

    def __init__(self, board: Board, elf: Path, boot_timeout_s: float = 20.0, cpus: set[int] | None = None,
                 plugin: CyclePlugin | None = None, paced_shift: int | None = None) -> None:
        if board.emulator.get("kind") != "qemu":
            raise UserError(f"board {board.name} is not emulated by QEMU")
        self.board, self.elf, self.boot_timeout_s = board, elf, boot_timeout_s
        self.cpus = one_core() if cpus is None else cpus
        self.plugin = plugin
        self.paced_shift = paced_shift
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._stderr_head = b""

    def command(self, port: int) -> list[str]:
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise UserError("qemu-system-arm not found", hint=QEMU_HINT)
        taskset = shutil.which("taskset")
        bind = [taskset, "-c", ",".join(map(str, sorted(self.cpus)))] if self.cpus and taskset else []
        return [
            *bind, qemu, "-M", str(self.board.emulator["machine"]), "-icount", self._icount(),
            "-nographic", "-monitor", "none", "-no-reboot",
            # nodelay: QEMU writes the UART byte by byte; Nagle would add ~40 ms per reply.
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
            "-kernel", str(self.elf),
            *(self.plugin.qemu_args() if self.plugin else []),
        ]

    def _icount(self) -> str:
        if self.paced_shift is None:
            return f"shift={self.board.icount_shift}"
        return f"shift={self.paced_shift},align=on"

    def start(self) -> serial.SerialBase:
        """Start QEMU and return a connected link (QEMU waits for it before running)."""
        stderr = "no output"
        for _ in range(5):
            self._launch()
            link = self._connect() if self.port else None
            if link is not None:
                try:
                    if self._plugin_loaded():
                        return link
                finally:
                    if self.plugin is not None and not self.plugin.started():
                        link.close()
                self.process.wait(timeout=5)  # type: ignore[union-attr]  # QEMU exits when a plugin fails
            stderr = self._stderr()
            self.stop()
            plugin_error = load_error(stderr) if self.plugin else None
            if plugin_error is not None:
                raise plugin_error
        raise UserError(f"QEMU did not start for board {self.board.name}: {stderr}", hint=QEMU_HINT)

    def launch(self) -> int:
        """Start QEMU without connecting; returns the TCP port of its UART, where it waits for
        one client (e.g. a host.link.faultproxy or an RFC 2217 bridge) before running the firmware."""
        if not self._launch():
            stderr = self._stderr()
            self.stop()
            raise UserError(f"QEMU did not start for board {self.board.name}: {stderr}", hint=QEMU_HINT)
        return self.port

    def _launch(self) -> int:
        """Start QEMU on a port it picks itself (port 0: the kernel's choice, which QEMU announces on
        stderr), so that no other process can take the port between its choice and QEMU's bind, as
        happened when this process picked a free port first.  The port, or 0 if QEMU exited first."""
        if self.plugin is not None:
            self.plugin.reset()
        self._stderr_head = b""
        stderr: Any = subprocess.PIPE if self.paced_shift is None else tempfile.TemporaryFile()  # noqa: SIM115  (closed with the process)
        # Its own session: a Ctrl-C in the terminal reaches its owner, which stops it, not QEMU under a unit.
        self.process = subprocess.Popen(self.command(0), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=stderr,
                                        preexec_fn=die_with_parent, start_new_session=True)
        if stderr is not subprocess.PIPE:
            self.process.stderr = stderr   # read back, and closed, like the pipe
        running_emulators.add(self)
        self.port = self._announced_port()
        return self.port

    def _announced_port(self) -> int:
        """The port in QEMU's "waiting for connection on: ...tcp:127.0.0.1:PORT" line, or 0 once it exits."""
        assert self.process is not None and self.process.stderr is not None
        fd = self.process.stderr.fileno()
        pipe = self.paced_shift is None
        deadline = time.monotonic() + self.boot_timeout_s
        while time.monotonic() < deadline:
            if pipe:
                if select.select([fd], [], [], 0.05)[0]:
                    chunk = os.read(fd, 4096)
                    self._stderr_head += chunk
                    if not chunk:
                        return 0
            else:
                self._stderr_head = os.pread(fd, 65536, 0)
            found = _WAITING_ON.search(self._stderr_head)
            if found:
                return int(found.group(1))
            if self.process.poll() is not None and (not pipe or not select.select([fd], [], [], 0)[0]):
                return 0
            if not pipe:
                time.sleep(0.01)
        return 0

    def _connect(self) -> serial.SerialBase | None:
        deadline = time.monotonic() + self.boot_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return None  # exited (e.g. the port was taken): caller retries
            try:
                return serial.serial_for_url(f"socket://127.0.0.1:{self.port}", timeout=0.05)
            except serial.SerialException:
                time.sleep(0.05)
        return None

    def _plugin_loaded(self) -> bool:
        """QEMU loads plugins once the UART's client is connected: wait for the cycle plugin's header
        (or for QEMU to exit, which it does when a plugin cannot be loaded)."""
        if self.plugin is None:
            return True
        deadline = time.monotonic() + self.boot_timeout_s
        while time.monotonic() < deadline:
            if self.plugin.started():
                return True
            if not self.alive():
                return False
            time.sleep(0.01)
        raise CyclesUnavailable(f"the cycle plugin did not start within {self.boot_timeout_s:.0f} s "
                                f"({self.plugin.output} has no header)")

    def _stderr(self) -> str:
        """What QEMU printed, once it has exited (a QEMU that has just closed its stderr is given a second to
        be reaped: read before, its message was lost as "no output")."""
        if self.process is None or self.process.stderr is None:
            return "no output"
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1.0)
        if self.process.poll() is None:
            text = self._stderr_head
        elif self.process.stderr.seekable():
            self.process.stderr.seek(0)
            text = self.process.stderr.read()
        else:   # the pipe: what _announced_port read, then the rest
            text = self._stderr_head + self.process.stderr.read()
        return text.decode(errors="replace").strip()[-800:] or "no output"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> QemuProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_all() -> None:
    for qemu in list(running_emulators):
        qemu.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
# Only the main thread may install a handler (a device pool may import this module from a
# worker); there, the emulators still die with the host through die_with_parent.
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_sigterm)


@dataclass(frozen=True)
class Calibration:
    """Two timed runs of a 2-instruction loop (firmware/runtime/calibrate/calibrate.c)."""

    board: str
    counts: tuple[int, int]     # loop iterations
    ticks: tuple[int, int]      # SysTick ticks each run took

    @property
    def instructions_per_tick(self) -> float:
        return 2 * (self.counts[1] - self.counts[0]) / (self.ticks[1] - self.ticks[0])

    @property
    def overhead_instructions(self) -> float:
        """Instructions of the timing itself (ticks_now calls), from the shorter run."""
        return self.ticks[0] * self.instructions_per_tick - 2 * self.counts[0]

    def agrees_with(self, ratio: Fraction, ticks_tolerance: float = 2.0) -> bool:
        """Within the +-1 tick quantization of each of the two runs (plus a SysTick wrap interrupt)."""
        expected_ticks = 2 * (self.counts[1] - self.counts[0]) / ratio
        return abs((self.ticks[1] - self.ticks[0]) - expected_ticks) <= ticks_tolerance


def calibrate(board: Board, timeout_s: float = 60.0, plugin: CyclePlugin | None = None) -> Calibration:
    """Build and boot the calibration firmware; read its measurement line from the UART.
    `plugin`: with the cycle plugin loaded (which must not change the ticks)."""
    image = build_calibration(board)
    with QemuProcess(board, image.elf, plugin=plugin) as qemu:
        link = qemu.start()
        try:
            line = _read_line(link, b"calibrate ", timeout_s)
        finally:
            link.close()
    fields = line.split()
    if len(fields) != 5 or not all(f.isdigit() for f in fields[1:]):
        raise UserError(f"board {board.name}: unexpected calibration output {line!r}")
    n1, t1, n2, t2 = (int(f) for f in fields[1:])
    return Calibration(board.name, (n1, n2), (t1, t2))


def _read_line(link: serial.SerialBase, prefix: bytes, timeout_s: float) -> str:
    buffer = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        buffer += link.read(max(1, link.in_waiting))
        start = buffer.find(prefix)
        end = buffer.find(b"\n", start) if start >= 0 else -1
        if end >= 0:
            return buffer[start:end].decode("ascii", errors="replace")
    raise UserError(f"no calibration output within {timeout_s:.0f} s", hint="the firmware did not boot")


def run_windows(board: Board, elf: Path, plugin: CyclePlugin, count: int, timeout_s: float = 20.0,
                keep_files: bool = False) -> list[Window]:
    """Boot a bare-metal ELF with the cycle plugin until it has recorded `count` windows (e.g. the
    micro-benchmarks of tests/emulators/test_cycles.py); the ELF's UART is connected and ignored.
    `keep_files`: the plugin's files stay for the caller to read (and discard)."""
    windows: list[Window] = []
    with QemuProcess(board, elf, plugin=plugin) as qemu:
        link = qemu.start()
        try:
            deadline = time.monotonic() + timeout_s
            while len(windows) < count and time.monotonic() < deadline:
                windows += plugin.read_windows()
                time.sleep(0.02)
        finally:
            link.close()
    if not keep_files:
        plugin.discard()
    if len(windows) < count:
        raise CyclesUnavailable(f"{elf}: {len(windows)} of {count} windows recorded within {timeout_s:.0f} s")
    return windows

"""QEMU as a board: start it with the UART on a loopback TCP port, connect
with pyserial's socket:// URL, and make sure it always stops.

-icount shift=0 makes the guest run one instruction per virtual nanosecond,
so SysTick ticks count instructions deterministically (the cost metric).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path

import serial

from host.boards import Board
from host.errors import UserError

QEMU_HINT = "install QEMU: sudo apt-get install qemu-system-arm"
PR_SET_PDEATHSIG = 1
_running: weakref.WeakSet[QemuProcess] = weakref.WeakSet()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the host process dies, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QemuProcess:
    """One QEMU instance running a firmware ELF; use as a context manager."""

    def __init__(self, board: Board, elf: Path, boot_timeout_s: float = 20.0) -> None:
        if board.emulator.get("kind") != "qemu":
            raise UserError(f"board {board.name} is not emulated by QEMU")
        self.board, self.elf, self.boot_timeout_s = board, elf, boot_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def command(self, port: int) -> list[str]:
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise UserError("qemu-system-arm not found", hint=QEMU_HINT)
        return [
            qemu, "-M", str(self.board.emulator["machine"]), "-icount", "shift=0",
            "-nographic", "-monitor", "none", "-no-reboot",
            # nodelay: QEMU writes the UART byte by byte; Nagle would add ~40 ms per reply.
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
            "-kernel", str(self.elf),
        ]

    def start(self) -> serial.SerialBase:
        """Start QEMU and return a connected link (QEMU waits for it before running)."""
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(self.command(self.port), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            preexec_fn=_die_with_parent)
            _running.add(self)
            link = self._connect()
            if link is not None:
                return link
            self.stop()
        raise UserError(f"QEMU did not start for board {self.board.name}: {self._stderr()}", hint=QEMU_HINT)

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

    def _stderr(self) -> str:
        if self.process is None or self.process.stderr is None or self.process.poll() is None:
            return "no output"
        return self.process.stderr.read().decode(errors="replace").strip()[-800:] or "no output"

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
    for qemu in list(_running):
        qemu.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_sigterm)

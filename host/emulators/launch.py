"""Open a board: boot a firmware ELF on an emulated one (the launcher is chosen by the board
file's `[emulator] kind`, in one table, `LAUNCHERS`), or connect to the flashed board over its link.

Imports: host.core, host.link, host.emulators.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from host.core.boards import Board, load_board
from host.core.errors import UserError
from host.core.paths import DEFAULT_BOARD
from host.emulators.cycles import CyclePlugin, CyclesUnavailable
from host.emulators.qemu import QemuProcess
from host.emulators.renode import RenodeProcess
from host.link.device import LINK_ENV, Device, attach_owned, connect
from host.link.images import FlashedImage, read_flashed
from host.link.labgrid import acquired_place  # labgrid itself is imported only when a place is acquired
from host.link.probe import find_serial_port

# kind -> (display name, launcher(board, elf, cpus, cycle plugin)); Renode is not bound to cores and
# counts no cycles.
Launcher = Callable[[Board, Path, "set[int] | None", "CyclePlugin | None"], QemuProcess]


def _renode(board: Board, elf: Path, cpus: set[int] | None, plugin: CyclePlugin | None) -> QemuProcess:
    if plugin is not None:
        raise CyclesUnavailable(f"board {board.name} runs in Renode: cycles are counted in QEMU only")
    return RenodeProcess(board, elf)


LAUNCHERS: dict[str, tuple[str, Launcher]] = {
    "qemu": ("QEMU", lambda board, elf, cpus, plugin: QemuProcess(board, elf, cpus=cpus, plugin=plugin)),
    "renode": ("Renode", _renode),
}


def require_emulated(spec: Board) -> None:
    """A board that is not emulated is reached over its link, never booted here."""
    if not spec.emulated:
        raise UserError(f"board {spec.name} is not emulated: connect to it with a link URL",
                        hint="give its link: --port rfc2217://HOST:PORT (or /dev/ttyACM0), --place NAME (a labgrid "
                        f"place), or {LINK_ENV}=URL; see docs/boards.md")


@contextmanager
def boot_elf(spec: Board, elf: Path, model_sha256: bytes, timeout_s: float = 30.0,
             window: int = 1, cpus: set[int] | None = None, plugin: CyclePlugin | None = None) -> Iterator[Device]:
    """Run a firmware ELF on an emulated board; the emulator always stops on exit.  QEMU is
    bound to `cpus` (None: one core, round-robin; empty: not bound); Renode is not bound.
    `plugin`: QEMU's cycle plugin (host.emulators.cycles), whose counts the caller reads."""
    require_emulated(spec)
    name, launch = LAUNCHERS[spec.emulator_kind]
    with launch(spec, elf, cpus, plugin) as emulator, attach_owned(
            spec, emulator.start(), model_sha256, timeout_s, window, describe=f"board {spec.name} ({name})") as device:
        yield device


@contextmanager
def open_device(board: str | None = None, expected_sha256: bytes | None = None,
                timeout_s: float = 30.0, url: str | None = None, window: int = 1) -> Iterator[Device]:
    """Boot (emulated) or connect to the flashed board and handshake.

    `url` (or $SLINGSHOT_LINK) connects to a board already running the firmware over that
    link instead of starting an emulator: `socket://`, `rfc2217://` or a serial device path.
    """
    board_name = board or DEFAULT_BOARD
    spec = load_board(board_name)
    image = read_flashed(board_name)
    if expected_sha256 is not None:
        require_model(image, expected_sha256)
    require_protocol_mode(image)
    url = url or os.environ.get(LINK_ENV) or None
    if url is None and not spec.emulated:
        url = image.port or find_serial_port(spec)
    if url is not None:
        with connect(spec, url, image.model_sha256, timeout_s, window) as device:
            yield device
        return
    with boot_elf(spec, image.elf, image.model_sha256, timeout_s, window) as device:
        yield device


def require_model(image: FlashedImage, model_sha256: bytes) -> None:
    """The flashed firmware runs the model asked for (its .tflite's sha256)."""
    if image.model_sha256 != model_sha256:
        raise UserError(f"the model flashed on {image.board} ({image.model_path}) is not the model you asked for",
                        hint="run `make flash MODEL=<your model>` first, or pass --model of the flashed one")


def check_one_link(place: str | None, port: str | None) -> None:
    """A command's --place and --port are two ways to name one link: at most one is given."""
    if place is not None and port is not None:
        raise UserError("--place and --port both name the board's link", hint="give one of them")


def require_protocol_mode(image: FlashedImage) -> None:
    """The flashed firmware speaks slingshot's protocol, not the MLPerf Tiny mode's EEMBC text one."""
    if image.mode == "mlperf":
        raise UserError(f"the firmware flashed on {image.board} is the MLPerf Tiny mode build: it speaks the "
                        "EEMBC text protocol, not slingshot's (docs/mlperf.md)",
                        hint=f"run `make flash BOARD={image.board}` without MLPERF=1 first")


def cycles_over_link(option: str) -> UserError:
    """--cycles with a board behind a link: QEMU's cycle plugin counts only in an emulator booted here."""
    return UserError(f"--cycles counts in QEMU booted here, not on a board behind {option}",
                     hint=f"drop --cycles, or drop {option} to run on the emulated board")


@contextmanager
def board_link(place: str | None = None, port: str | None = None) -> Iterator[str | None]:
    """The link of a command's `--place NAME` or `--port URL`, else $SLINGSHOT_LINK, else None (boot
    an emulator). A labgrid place (host.link.labgrid, imported only then) is acquired for the duration
    and released on exit, Ctrl-C or error. The URL is also put in $SLINGSHOT_LINK meanwhile, so that
    every `open_device` of this process (the device backends, the pool) connects to it."""
    check_one_link(place, port)
    if place is None:
        url = port or os.environ.get(LINK_ENV) or None
        with _link_env(url):
            yield url
        return
    with acquired_place(place) as link, _link_env(link.url):
        print(f"place    labgrid place {place} on {link.coordinator}: serial port {link.url}", file=sys.stderr)
        yield link.url


@contextmanager
def _link_env(url: str | None) -> Iterator[None]:
    previous = os.environ.get(LINK_ENV)
    if url is not None:
        os.environ[LINK_ENV] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LINK_ENV, None)
        else:
            os.environ[LINK_ENV] = previous

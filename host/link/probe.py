"""Real boards: program the firmware through a debug probe and find the board's serial port.

Two flash methods (the board file's `[flash] method`):

* `pyocd` — pyOCD over CMSIS-DAP / ST-LINK: the probe is chosen (one connected, or `--probe UID`),
  the target's CMSIS pack is installed on first use as pyOCD does (`pyocd pack install <target>`,
  cmsis-pack-manager's cache), the ELF is programmed and the target reset so it runs.
* `mass_storage` — copy firmware.bin/.hex to the probe's USB drive (Mbed/DAPLink or ST-LINK's
  "NODE_<BOARD>" volume; found by its label and its MBED.HTM/DETAILS.TXT, or given with --drive).

The serial port is found by the USB VID:PID of the board file (`[uart] usb`), matched to the probe
by serial number when there are several, or given with --port (any pyserial URL or device path).

Every failure is a UserError naming what is missing and how to fix it. Nothing here can run without
hardware; tests/link/test_real_boards.py drives these functions with a fake pyOCD, a temporary directory
posing as the drive and fake list_ports results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from host.core.boards import Board
from host.core.errors import UserError

PYOCD_HINT = ("install pyOCD: pip install pyocd (it brings cmsis-pack-manager for the target packs), "
              "or copy the image to the probe's USB drive: [flash] method = \"mass_storage\"")
DRIVE_ENV = "SLINGSHOT_DRIVE"
DRIVE_MARKERS = ("MBED.HTM", "DETAILS.TXT")


@dataclass(frozen=True)
class ProbeInfo:
    unique_id: str
    description: str


class PyOcdBackend(Protocol):
    """What we need from pyOCD (real: PyOcd below; tests: a fake)."""

    def list_probes(self) -> list[ProbeInfo]: ...

    def target_available(self, target: str) -> bool: ...

    def install_target(self, target: str) -> None: ...

    def program(self, unique_id: str, target: str, image: Path) -> None: ...


class PyOcd:
    """pyOCD's Python API (pyocd >= 0.34)."""

    def __init__(self) -> None:
        try:
            import pyocd  # noqa: F401
        except ImportError:
            raise UserError("pyOCD is not installed: cannot program the board", hint=PYOCD_HINT) from None

    def list_probes(self) -> list[ProbeInfo]:
        from pyocd.core.helpers import ConnectHelper

        try:
            probes = ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)
        except Exception as err:  # noqa: BLE001 - USB back ends raise many types (libusb missing, permissions)
            raise UserError(f"pyOCD could not list the debug probes: {err}",
                            hint="check USB permissions (udev rules for ST-LINK/CMSIS-DAP: see pyOCD's docs)") \
                from None
        return [ProbeInfo(str(p.unique_id), str(p.description)) for p in probes]

    def target_available(self, target: str) -> bool:
        from pyocd.target import TARGET

        if target.lower() in TARGET:
            return True
        try:
            from pyocd.target.pack.pack_target import ManagedPacks

            return any(dev.part_number.lower() == target.lower() for dev in ManagedPacks.get_installed_targets())
        except Exception:  # noqa: BLE001 - an unreadable pack cache counts as not installed
            return False

    def install_target(self, target: str) -> None:
        result = subprocess.run([sys.executable, "-m", "pyocd", "pack", "install", target],
                                capture_output=True, text=True)
        if result.returncode != 0 or not self.target_available(target):
            raise UserError(f"pyOCD could not install the CMSIS pack for target '{target}': "
                            f"{(result.stderr or result.stdout).strip()[-400:] or 'no pack provides it'}",
                            hint=f"needs the network once; or run `pyocd pack install {target}` yourself "
                                 "(`pyocd pack find <part>` lists the names)")

    def program(self, unique_id: str, target: str, image: Path) -> None:
        from pyocd.core.helpers import ConnectHelper
        from pyocd.flash.file_programmer import FileProgrammer

        try:
            session = ConnectHelper.session_with_chosen_probe(unique_id=unique_id, target_override=target,
                                                              blocking=False, connect_mode="under-reset")
            if session is None:
                raise UserError(f"debug probe {unique_id} is gone", hint="plug the board in again")
            with session:
                FileProgrammer(session).program(str(image))
                session.target.reset()
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - pyOCD's transfer/flash errors: report, no traceback
            raise UserError(f"pyOCD failed to program {image.name} with probe {unique_id}: {err}",
                            hint="check the cable and the target name in the board file; "
                                 "`pyocd flash -t <target> firmware.elf` shows pyOCD's own log") from None


def choose_probe(probes: Sequence[ProbeInfo], wanted: str | None, board: Board) -> ProbeInfo:
    if wanted is not None:
        matches = [p for p in probes if p.unique_id == wanted or p.unique_id.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        raise UserError(f"no single debug probe matches '{wanted}'" if matches or probes else
                        f"debug probe '{wanted}' not found: no probe is connected",
                        hint=_probe_list(probes) if probes else "plug the board's USB (ST-LINK) connector in")
    if not probes:
        raise UserError(f"no debug probe found for board {board.name}",
                        hint="plug the board's USB (ST-LINK) connector in; check `pyocd list` and USB permissions")
    if len(probes) > 1:
        raise UserError(f"{len(probes)} debug probes are connected: choose one with --probe UID",
                        hint=_probe_list(probes))
    return probes[0]


def _probe_list(probes: Sequence[ProbeInfo]) -> str:
    return "connected: " + "; ".join(f"{p.unique_id} ({p.description})" for p in probes)


def flash_pyocd(board: Board, image: Path, probe_id: str | None = None,
                backend: PyOcdBackend | None = None) -> ProbeInfo:
    """Program `image` (the ELF) into the board through pyOCD and reset it; returns the probe used."""
    target = board.probe_target
    if target is None:
        raise UserError(f"board {board.name}: [flash] target is missing (the pyOCD target name)")
    pyocd = backend or PyOcd()
    probe = choose_probe(pyocd.list_probes(), probe_id, board)
    if not pyocd.target_available(target):
        print(f"pyOCD    installing the CMSIS pack for {target} (once)")
        pyocd.install_target(target)
    pyocd.program(probe.unique_id, target, image)
    return probe


# ---- Mbed / DAPLink / ST-LINK mass-storage drives -----------------------------------------------------


def mount_points() -> list[Path]:
    """Mounted volumes: /proc/mounts (Linux), then the usual automount folders (Linux, macOS)."""
    points: list[Path] = []
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] in ("vfat", "msdos", "fat", "exfat", "fuseblk"):
                points.append(Path(fields[1].replace("\\040", " ")))
    except OSError:
        pass
    user = os.environ.get("USER", "")
    for root in (Path("/media") / user, Path("/run/media") / user, Path("/media"), Path("/Volumes")):
        if root.is_dir():
            points += [p for p in sorted(root.iterdir()) if p.is_dir()]
    return list(dict.fromkeys(points))


def find_drive(board: Board, drive: Path | None = None, candidates: Iterable[Path] | None = None) -> Path:
    """The probe's drive: `drive` (or $SLINGSHOT_DRIVE) if given, else the mounted volume with MBED.HTM
    or DETAILS.TXT whose label (folder name) is one of the board file's `drive_labels`."""
    drive = drive or (Path(os.environ[DRIVE_ENV]) if os.environ.get(DRIVE_ENV) else None)
    if drive is not None:
        if not drive.is_dir():
            raise UserError(f"drive {drive} is not a mounted folder",
                            hint="check the path (--drive or $SLINGSHOT_DRIVE)")
        return drive
    labels = [str(v).upper() for v in board.flash_method.get("drive_labels", [])]
    found = [p for p in (mount_points() if candidates is None else candidates)
             if p.is_dir() and any((p / m).exists() for m in DRIVE_MARKERS)]
    matching = [p for p in found if p.name.upper() in labels] if labels else found
    if len(matching) == 1:
        return matching[0]
    wanted = " or ".join(labels) if labels else "an Mbed/DAPLink drive"
    if not matching:
        others = f"; drives found: {', '.join(map(str, found))}" if found else ""
        raise UserError(f"the probe's USB drive ({wanted}) was not found{others}",
                        hint="plug the board in and let the drive mount, or give it: --drive /media/$USER/NODE_...")
    raise UserError(f"several drives look like {wanted}: {', '.join(map(str, matching))}",
                    hint="choose one with --drive PATH")


def flash_mass_storage(board: Board, image: Path, drive: Path | None = None,
                       candidates: Iterable[Path] | None = None) -> Path:
    """Copy the .bin/.hex to the probe's drive (the probe programs the target and resets it)."""
    target_dir = find_drive(board, drive, candidates)
    destination = target_dir / image.name
    try:
        with image.open("rb") as src, destination.open("wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as err:
        raise UserError(f"could not copy {image.name} to {target_dir}: {err}",
                        hint="is the drive read-only or full? unplug and plug the board in again") from None
    fail = target_dir / "FAIL.TXT"
    if fail.exists():
        raise UserError(f"the probe refused the image: {fail.read_text(errors='replace').strip()[:300]}",
                        hint="check the board file's flash origin and format")
    return destination


# ---- serial port ------------------------------------------------------------------------------------


def find_serial_port(board: Board, probe_serial: str | None = None, ports: Sequence[object] | None = None) -> str:
    """The device path of the board's USB serial port, by the board file's `[uart] usb` VID:PID
    (pyserial's serial.tools.list_ports); with several, the one whose serial number is the probe's."""
    if not board.usb_ids:
        raise UserError(f"board {board.name} has no [uart] usb ids: give the port",
                        hint="--port /dev/ttyACM0 (or SLINGSHOT_LINK=/dev/ttyACM0)")
    if ports is None:
        from serial.tools import list_ports

        ports = list_ports.comports()
    matching = [p for p in ports if (getattr(p, "vid", None), getattr(p, "pid", None)) in board.usb_ids]
    if probe_serial is not None and len(matching) > 1:
        matching = [p for p in matching if getattr(p, "serial_number", None) == probe_serial] or matching
    ids = ", ".join(f"{v:04X}:{p:04X}" for v, p in board.usb_ids)
    if not matching:
        raise UserError(f"no serial port of board {board.name} (USB {ids}) found",
                        hint="plug the board in, or give the port: --port /dev/ttyACM0 "
                             "(or SLINGSHOT_LINK=/dev/ttyACM0); `python -m serial.tools.list_ports -v` lists them")
    if len(matching) > 1:
        listed = ", ".join(f"{p.device} (serial {getattr(p, 'serial_number', '?')})" for p in matching)  # type: ignore[attr-defined]
        raise UserError(f"several serial ports match board {board.name} (USB {ids}): {listed}",
                        hint="choose one: --port PORT (or SLINGSHOT_LINK=PORT)")
    return str(matching[0].device)  # type: ignore[attr-defined]


# ---- detection: which boards are plugged in (python -m host.flash --list) ----------------------------


@dataclass(frozen=True)
class DetectedBoard:
    """A board connected to this machine: what it is, its serial port and probe drive, and the board
    files it can be (`boards`)."""

    description: str
    serial_number: str
    serial_port: str | None
    mount_points: tuple[Path, ...]
    boards: tuple[str, ...]
    via: str                     # "mbed-tools" or "pyserial"


def detect_boards(boards: Sequence[Board], devices: object | None = None,
                  ports: Sequence[object] | None = None) -> list[DetectedBoard]:
    """The connected boards. mbed-tools' device detection when it is installed (`pip install
    'slingshot[boards]'`: the probe's drive, its serial port and the board it identifies, matched to
    our board files by name or drive label); otherwise pyserial's ports matched by `[uart] usb`.
    `devices` (mbed-tools' ConnectedDevices) and `ports` stand in for the machine in tests."""
    if devices is None and ports is None:
        try:
            from mbed_tools.devices import get_connected_devices
        except ImportError:
            devices = None
        else:
            try:
                devices = get_connected_devices()
            except Exception as error:  # mbed-tools' own lookup errors (board database, permissions)
                raise UserError(f"mbed-tools could not list the connected devices: {error}",
                                hint="check USB permissions; `mbedtools detect` shows the same") from None
    if devices is not None:
        found = [*getattr(devices, "identified_devices", []), *getattr(devices, "unidentified_devices", [])]
        return [_from_mbed(device, boards) for device in found]
    if ports is None:
        from serial.tools import list_ports

        ports = list_ports.comports()
    detected = []
    for port in ports:
        usb = (getattr(port, "vid", None), getattr(port, "pid", None))
        names = tuple(b.name for b in boards if usb in b.usb_ids)
        if names:
            detected.append(DetectedBoard(str(getattr(port, "description", "") or "USB serial"),
                                          str(getattr(port, "serial_number", "") or ""), str(port.device),  # type: ignore[attr-defined]
                                          (), names, "pyserial"))
    return detected


def _from_mbed(device: object, boards: Sequence[Board]) -> DetectedBoard:
    board = getattr(device, "mbed_board", None)
    board_type = str(getattr(board, "board_type", "") or "")
    mounts = tuple(Path(p) for p in getattr(device, "mount_points", ()))
    labels = {p.name for p in mounts}

    def normal(text: str) -> str:
        return text.lower().replace("_", "-")

    names = tuple(b.name for b in boards
                  if (board_type and normal(b.name) == normal(board_type))
                  or labels & set(b.flash_method.get("drive_labels", [])))
    description = " ".join(x for x in (board_type, str(getattr(board, "board_name", "") or "")) if x) or "unidentified"
    return DetectedBoard(description, str(getattr(device, "serial_number", "")), getattr(device, "serial_port", None),
                         mounts, names, "mbed-tools")

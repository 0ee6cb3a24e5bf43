"""Boards on other machines: a labgrid place (https://labgrid.org) as the link to a board.

A lab shares its boards through labgrid: a coordinator (`labgrid-coordinator`), exporters on the
machines the boards are plugged into (`labgrid-exporter`, which serves local serial ports through
ser2net as RFC 2217), and places that a client acquires. `acquired_place(name)` acquires the place
on the coordinator (`$LG_COORDINATOR`, default 127.0.0.1:20408), yields its serial port as a link
URL (`rfc2217://host:port`, or `socket://` for a raw TCP port) with the other resources of the
place, and releases the place on exit, Ctrl-C or error.

Sessions are short: one to acquire (and read the resources), one to release, so nothing needs the
coordinator while the board runs. labgrid is imported here only, and only when a place is used
(`pip install 'slingshot[lab]'`).

Imports: host.core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
from argparse import Namespace
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from host.core.errors import UserError

COORDINATOR_ENV = "LG_COORDINATOR"
DEFAULT_COORDINATOR = "127.0.0.1:20408"
SERIAL_CLASS = "NetworkSerialPort"
STORAGE_CLASSES = ("NetworkUSBMassStorage", "USBMassStorage")   # a probe's drive (DAPLink, ST-LINK), as exported
WRITE_TIMEOUT_S = 180.0
T = TypeVar("T")


@dataclass(frozen=True)
class PlaceLink:
    """An acquired place: its serial port as a pyserial URL, and every resource (class -> params)."""

    name: str
    coordinator: str
    url: str
    speed: int
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)


def coordinator_address(coordinator: str | None = None) -> str:
    return coordinator or os.environ.get(COORDINATOR_ENV) or DEFAULT_COORDINATOR


def serial_url(params: dict[str, Any]) -> str:
    """The pyserial URL of a labgrid NetworkSerialPort (`protocol` rfc2217, the default, or raw).
    ser2net does not answer RFC 2217 SET_CONTROL: `ign_set_control`, as labgrid's own SerialDriver."""
    if params.get("protocol") == "raw":
        return f"socket://{params['host']}:{params['port']}"
    return f"rfc2217://{params['host']}:{params['port']}?ign_set_control"


@contextmanager
def acquired_place(name: str, coordinator: str | None = None, timeout_s: float = 10.0) -> Iterator[PlaceLink]:
    """Acquire the labgrid place `name`, yield its link, release it on exit (also on Ctrl-C or error)."""
    address = coordinator_address(coordinator)
    place = _run(lambda session: _acquire(session, name, address), address, timeout_s)
    try:
        yield place
    finally:
        try:
            _run(lambda session: _release(session, name), address, timeout_s)
        except Exception as error:  # never hide the run's own outcome
            print(f"warning: labgrid place {name} was not released ({error}); "
                  f"release it with: labgrid-client -x {address} -p {name} release", file=sys.stderr)


def write_to_probe_drive(place: PlaceLink, image: Path, timeout_s: float = WRITE_TIMEOUT_S) -> str:
    """Program the board of an acquired place by copying `image` (firmware.bin or .hex) onto its probe's
    USB drive with labgrid's own client: `labgrid-client write-files --partition 0` binds labgrid's
    USBStorageDriver to the place's (Network)USBMassStorage, which mounts the drive on the exporter's machine
    (through SSH when it is another machine) and copies the file; the probe programs the target and resets
    it. Returns the storage resource's class."""
    storage = probe_drive(place)
    program = shutil.which("labgrid-client")
    if program is None:
        raise UserError("flashing through a labgrid place needs labgrid-client, which is not on the PATH",
                        hint="pip install 'slingshot[lab]' (or pip install labgrid)")
    command = [program, "-x", place.coordinator, "-p", place.name, "write-files", "--partition", "0", str(image)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"labgrid did not finish writing {image.name} to place '{place.name}' within "
                        f"{timeout_s:.0f} s", hint="check the probe's drive on the exporter's machine") from None
    if result.returncode != 0:
        said = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise UserError(f"labgrid could not write {image.name} to the probe drive of place '{place.name}': "
                        f"{said[-1] if said else f'labgrid-client exited with {result.returncode}'}",
                        hint="the client needs SSH access to a remote exporter's machine, and udisks2 there "
                        "(labgrid's USBStorageDriver); `" + " ".join(command[1:]) + "` shows the same")
    return storage


def probe_drive(place: PlaceLink) -> str:
    """The class of the place's probe drive resource; a clear error when it has none."""
    storage = [cls for cls in STORAGE_CLASSES if cls in place.resources]
    if not storage:
        classes = ", ".join(sorted(place.resources)) or "none"
        raise UserError(f"labgrid place '{place.name}' has no probe drive to flash through "
                        f"(NetworkUSBMassStorage; it has: {classes})",
                        hint=f"export the probe's drive on the exporter (USBMassStorage) and labgrid-client -x "
                        f"{place.coordinator} -p {place.name} add-match EXPORTER/GROUP/NetworkUSBMassStorage; "
                        "or flash on the board's machine with make flash (docs/boards.md)")
    return storage[0]


# ------------------------------------------------------------------ sessions


def _client_module() -> Any:
    try:
        from labgrid.remote import client  # the package labgrid, not this module (absolute import)
    except ImportError:
        raise UserError("--place needs labgrid, which is not installed",
                        hint="pip install 'slingshot[lab]' (or pip install labgrid)") from None
    return client


def _run(work: Callable[[Any], Awaitable[T]], address: str, timeout_s: float) -> T:
    """Open a client session on the coordinator, run `work(session)`, close it; all within timeout_s."""
    client = _client_module()
    from labgrid.util.proxy import proxymanager

    target = proxymanager.get_grpc_address(address, default_port=20408)
    unreachable = UserError(f"the labgrid coordinator at {address} does not answer",
                            hint=f"start labgrid-coordinator there, or set {COORDINATOR_ENV}=HOST:PORT "
                            "to the lab's coordinator (docs/boards.md, \"Shared boards through labgrid\")")

    async def session_work() -> T:
        loop = asyncio.get_running_loop()
        session = client.ClientSession(target, loop, args=Namespace(place=None, allow_unmatched=False, kick=False))
        try:
            try:
                await asyncio.wait_for(session.start(), timeout_s)
            except (TimeoutError, client.Error):
                raise unreachable from None
            return await asyncio.wait_for(work(session), timeout_s)
        except TimeoutError:
            raise unreachable from None
        except client.Error as error:
            raise UserError(f"labgrid: {error}") from None
        finally:
            await _close(session)

    loop = asyncio.new_event_loop()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # labgrid logs a dead coordinator itself; we say it once, as an error
    try:
        return loop.run_until_complete(session_work())
    finally:
        logging.disable(previous)
        loop.close()


async def _close(session: Any) -> None:
    try:
        await asyncio.wait_for(session.stop(), 5)
    except (Exception, asyncio.CancelledError):  # a session that never started has no stream to stop
        if getattr(session, "pump_task", None) is not None:
            session.pump_task.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(session.close(), 5)


def _place(session: Any, name: str, address: str) -> Any:
    place = session.places.get(name)
    if place is None:
        known = ", ".join(sorted(session.places)) or "none"
        raise UserError(f"there is no labgrid place '{name}' on the coordinator at {address} (places: {known})",
                        hint=f"create it: labgrid-client -x {address} -p {name} create; then add-match "
                        "EXPORTER/GROUP/NetworkSerialPort (docs/boards.md)")
    return place


async def _acquire(session: Any, name: str, address: str) -> PlaceLink:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

    client = _client_module()
    place = _place(session, name, address)
    me = f"{session.gethostname()}/{session.getuser()}"
    if place.acquired:
        hint = (f"release it with: labgrid-client -x {address} -p {name} release" if place.acquired == me else
                f"wait until {place.acquired} releases it, or choose another place "
                f"(labgrid-client -x {address} places)")
        raise UserError(f"labgrid place '{name}' is taken: acquired by {place.acquired}", hint=hint)
    try:
        session.check_matches(place)
    except client.Error:
        raise UserError(f"labgrid place '{name}': its resources are not exported (is the exporter gone?)",
                        hint=f"start labgrid-exporter on the board's machine; labgrid-client -x {address} "
                        "resources lists what is exported") from None
    try:
        await session.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=name))
    except Exception as error:  # grpc.aio.AioRpcError
        details = error.details() if hasattr(error, "details") else str(error)
        raise UserError(f"labgrid place '{name}' could not be acquired: {details}",
                        hint="it may have been taken just now; try again, or choose another place") from None
    try:
        await session.sync_with_coordinator()
        return _link(session, session.places[name], address)
    except BaseException:
        await _release(session, name)
        raise


def _link(session: Any, place: Any, address: str) -> PlaceLink:
    client = _client_module()
    try:
        resources = session.get_target_resources(place)
    except client.Error:
        raise UserError(f"labgrid place '{place.name}' has resources whose exporter is gone",
                        hint="restart labgrid-exporter on the board's machine") from None
    serial = sorted((key, entry) for key, entry in resources.items() if entry.cls == SERIAL_CLASS)
    if not serial:
        classes = ", ".join(sorted(entry.cls for entry in resources.values())) or "none"
        raise UserError(f"labgrid place '{place.name}' has no serial port ({SERIAL_CLASS}; it has: {classes})",
                        hint=f"export the board's serial port (RawSerialPort or USBSerialPort) and "
                        f"labgrid-client -x {address} -p {place.name} add-match EXPORTER/GROUP/{SERIAL_CLASS}")
    (_, port_name), entry = serial[0]
    if not entry.avail:
        raise UserError(f"labgrid place '{place.name}': serial port {port_name} is not available on its exporter "
                        "(board unplugged?)", hint="check the board's USB cable on the exporter's machine")
    params = dict(entry.params)
    if params.get("extra", {}).get("proxy_required"):
        raise UserError(f"labgrid place '{place.name}': its exporter is isolated (reachable through SSH only)",
                        hint="run the exporter without --isolated, or run slingshot on the exporter's network")
    return PlaceLink(name=place.name, coordinator=address, url=serial_url(params), speed=int(params.get("speed", 0)),
                     resources={cls: dict(e.params) for (_, cls), e in sorted(resources.items())})


async def _release(session: Any, name: str) -> None:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

    place = session.places.get(name)
    if place is None or not place.acquired:
        return
    if place.acquired != f"{session.gethostname()}/{session.getuser()}":
        return  # somebody else's now: not ours to release
    await session.stub.ReleasePlace(pb2.ReleasePlaceRequest(placename=name))
    await session.sync_with_coordinator()

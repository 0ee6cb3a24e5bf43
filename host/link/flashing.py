"""Put a model's firmware on a board: build it, program a real board (pyOCD or the probe's USB
drive, or a labgrid place's probe drive) and record the ELF, its manifest and the serial port in
build/flash/<board>/, where host.emulators.launch.open_device finds them. An emulated board is
"flashed" by that record alone.

Imports: host.core, host.compiler, host.engine, host.link.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from host.compiler import CompiledModel, compile_tflite
from host.core.boards import Board, load_board
from host.core.errors import UserError
from host.core.files import directory_lock, write_text_whole, write_whole
from host.core.paths import ROOT
from host.engine.build import FirmwareImage, build_firmware, export_image
from host.link import images
from host.link import probe as probes
from host.link.labgrid import PlaceLink, acquired_place, probe_drive, write_to_probe_drive


def install(image: FirmwareImage, model: CompiledModel, model_path: Path, board: Board,
            extra: dict | None = None) -> Path:
    """Put the ELF and its manifest where the device layer looks (build/flash/<board>/)."""
    target = images.flash_dir(board.name)
    with directory_lock(target):   # the ELF and its manifest of one process, whoever else flashes the board
        write_whole(target / "firmware.elf", lambda partial: shutil.copyfile(image.elf, partial))
        _write_manifest(image, model, model_path, board, target, extra)
    return target


def _write_manifest(image: FirmwareImage, model: CompiledModel, model_path: Path, board: Board, target: Path,
                    extra: dict | None) -> None:
    manifest = {
        "board": board.name,
        "model_path": _display(model_path),
        "model_name": model.name,
        "model_sha256": model.sha256.hex(),
        "elf_sha256": hashlib.sha256((target / "firmware.elf").read_bytes()).hexdigest(),
        "flash_bytes": image.flash_bytes,
        "ram_bytes": image.ram_bytes,
        "arena_bytes": model.arena_bytes,
        "weights_bytes": model.weights_bytes,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    write_text_whole(target / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _display(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def flash(model_path: Path, board_name: str, mlperf: bool = False, mlperf_model_id: str | None = None,
          probe: str | None = None, port: str | None = None,
          drive: Path | None = None, preprocess: str | None = None,
          input_range: tuple[float, float] = (0.0, 1.0),
          place: str | None = None) -> tuple[FirmwareImage, CompiledModel, Path]:
    """Build the model's firmware for the board and put it there: `place`, a labgrid place whose probe drive
    takes the image (acquired, and checked to have that drive, before anything is built)."""
    board = load_board(board_name)
    model = compile_tflite(model_path)  # clear errors for missing / non-TFLite / unsupported models
    extra: dict = {"mode": "mlperf" if mlperf else "protocol", "flash_method": board.method}
    if preprocess:
        extra["preprocess"] = preprocess
    with acquired_place(place) if place is not None else contextlib.nullcontext() as link:
        if link is not None:
            probe_drive(link)
        image = build_firmware(model, board, mlperf=mlperf, mlperf_model_id=mlperf_model_id,
                               preprocess=preprocess, input_range=input_range)
        if link is not None:
            extra.update(program_place(image, board, link))
        elif board.method != "emulator":
            extra.update(program(image, board, probe, port, drive))
    return image, model, install(image, model, model_path, board, extra)


def program_place(image: FirmwareImage, board: Board, place: PlaceLink) -> dict:
    """Program the board of an acquired labgrid place through its probe's drive; the manifest records the
    place and its serial link."""
    file = export_image(image, str(board.flash_method.get("format", "bin")))
    storage = write_to_probe_drive(place, file)
    print(f"copied   {file.name} to the probe drive of labgrid place {place.name} ({storage}); the probe programs "
          "the target and resets it")
    print(f"port     {place.url} (the place's serial port: --place {place.name} with host.check and host.evaluate)")
    return {"place": place.name, "coordinator": place.coordinator, "port": place.url}


def program(image: FirmwareImage, board: Board, probe: str | None, port: str | None,
            drive: Path | None) -> dict:
    """Put the image on a real board (pyOCD or the probe's drive); find its serial port. Returns
    what the manifest records: the probe or drive used and the port (None when it was not found)."""
    done: dict = {}
    probe_serial = None
    if board.method == "pyocd":
        used = probes.flash_pyocd(board, image.elf, probe)
        probe_serial = used.unique_id
        done["probe"] = used.unique_id
        print(f"pyOCD    programmed {board.probe_target} through {used.description} ({used.unique_id})")
    else:
        file = export_image(image, str(board.flash_method.get("format", "bin")))
        copied = probes.flash_mass_storage(board, file, drive)
        done["drive"] = str(copied.parent)
        print(f"copied   {file.name} to {copied.parent} (the probe programs the target and resets it)")
    if port is None:
        try:
            port = probes.find_serial_port(board, probe_serial)
        except UserError as err:
            print(f"warning  {err.message}; host.link.device will look again (or give --port / SLINGSHOT_LINK)",
                  file=sys.stderr)
    done["port"] = port
    if port is not None:
        print(f"port     {port} at {board.uart_baud} baud")
    return done

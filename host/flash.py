"""`python -m host.flash` (what `make flash` runs): model → firmware → board.

Compiles the .tflite model, builds the firmware for the board and flashes it.
For an emulated board "flashing" installs the ELF and a manifest in
build/flash/<board>/, where host.evaluate and host.check find it. A real board
is programmed with pyOCD or through its probe's USB drive (the board file's
[flash] method; host/probe.py), then the ELF, the manifest and the serial port
are recorded in build/flash/<board>/ the same way.
Prints flash and RAM use read from the ELF against the board's limits.

`--mlperf` (or `make flash MLPERF=1`) builds the MLPerf Tiny compatibility mode
(docs/mlperf.md) instead of the framed protocol.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from host.boards import Board, load_board
from host.build import FirmwareImage, build_firmware, export_image
from host.compiler import CompiledModel, compile_tflite
from host.errors import UserError, run_cli
from host.paths import DEFAULT_BOARD, DEFAULT_MODEL, ROOT

MLPERF_ENV, MLPERF_MODEL_ENV = "MLPERF", "MLPERF_MODEL"   # make flash MLPERF=1 [MLPERF_MODEL=kws01]
PREPROCESS_ENV, PREPROCESS_RANGE_ENV = "PREPROCESS", "PREPROCESS_RANGE"   # make flash PREPROCESS=squeeze:4


def install(image: FirmwareImage, model: CompiledModel, model_path: Path, board: Board,
            extra: dict | None = None) -> Path:
    """Put the ELF and its manifest where the device layer looks (build/flash/<board>/)."""
    from host.device import flash_dir

    target = flash_dir(board.name)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.elf, target / "firmware.elf.tmp")
    (target / "firmware.elf.tmp").replace(target / "firmware.elf")
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
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def _display(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def flash(model_path: Path, board_name: str, mlperf: bool = False, mlperf_model_id: str | None = None,
          probe: str | None = None, port: str | None = None,
          drive: Path | None = None, preprocess: str | None = None,
          input_range: tuple[float, float] = (0.0, 1.0)) -> tuple[FirmwareImage, CompiledModel, Path]:
    board = load_board(board_name)
    model = compile_tflite(model_path)  # clear errors for missing / non-TFLite / unsupported models
    image = build_firmware(model, board, mlperf=mlperf, mlperf_model_id=mlperf_model_id,
                           preprocess=preprocess, input_range=input_range)
    extra: dict = {"mode": "mlperf" if mlperf else "protocol", "flash_method": board.method}
    if preprocess:
        extra["preprocess"] = preprocess
    if board.method != "emulator":
        extra.update(program(image, board, probe, port, drive))
    return image, model, install(image, model, model_path, board, extra)


def program(image: FirmwareImage, board: Board, probe: str | None, port: str | None,
            drive: Path | None) -> dict:
    """Put the image on a real board (pyOCD or the probe's drive); find its serial port. Returns
    what the manifest records: the probe or drive used and the port (None when it was not found)."""
    from host import probe as probes

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
            print(f"warning  {err.message}; host.device will look again (or give --port / SLINGSHOT_LINK)",
                  file=sys.stderr)
    done["port"] = port
    if port is not None:
        print(f"port     {port} at {board.uart_baud} baud")
    return done


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.flash", description=__doc__.split("\n\n")[0])
    p.add_argument("--board", default=DEFAULT_BOARD, help="board name, a folder in boards/ (default: %(default)s)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="int8/int16 .tflite (default: %(default)s)")
    p.add_argument("--mlperf", action="store_true", default=os.environ.get(MLPERF_ENV, "0") not in ("", "0"),
                   help=f"build the MLPerf Tiny compatibility mode (docs/mlperf.md; also {MLPERF_ENV}=1)")
    p.add_argument("--mlperf-model", default=os.environ.get(MLPERF_MODEL_ENV) or None, metavar="ID",
                   help="what profile%% reports as m-model-[ID], e.g. kws01 (default: the model's name)")
    p.add_argument("--probe", metavar="UID", help="real boards, pyOCD: the debug probe's unique id (or a prefix)")
    p.add_argument("--port", metavar="PORT", help="real boards: the serial port (device path or pyserial URL) "
                                                   "instead of finding it by USB VID:PID")
    p.add_argument("--drive", type=Path, metavar="PATH", help="real boards, mass_storage: the probe's mounted drive")
    p.add_argument("--preprocess", default=os.environ.get(PREPROCESS_ENV) or None, metavar="STAGE",
                   help="input pre-processing stage on the chip: squeeze:BITS or median:WINDOW "
                        f"(also {PREPROCESS_ENV}=; docs/defenses.md)")
    p.add_argument("--preprocess-range", default=os.environ.get(PREPROCESS_RANGE_ENV) or "0,1", metavar="LO,HI",
                   help="the model input's float range, where squeezing puts its levels (default 0,1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    from host.check import _parse_range

    image, model, target = flash(args.model, args.board, args.mlperf, args.mlperf_model, args.probe, args.port,
                                 args.drive, args.preprocess, _parse_range(args.preprocess_range))
    print(f"model    {args.model}: {len(model.ops)} ops, arena {model.arena_bytes:,} B, "
          f"weights {model.weights_bytes:,} B")
    for line in image.usage_lines():
        print(line)
    print(f"         flash = weights {model.weights_bytes:,} + code and tables "
          f"{image.flash_bytes - model.weights_bytes:,}; RAM is the peak (statics, arena, stack: no heap)")
    print(f"flashed  {image.board.name} ({image.board.description.split(':')[0]}): {target / 'firmware.elf'} "
          f"in {time.monotonic() - started:.1f} s" + (" [MLPerf Tiny mode]" if args.mlperf else ""))
    if args.preprocess:
        print(f"stage    {args.preprocess} on the input before every inference; INFER reports its ticks apart "
              "(docs/protocol.md)")
        print("next     python -m host.defenses.chip_cost, or a study with on_chip = true (docs/defenses.md)")
        return 0
    print("next     the MLPerf Tiny runner, see docs/mlperf.md" if args.mlperf else "next     python -m host.evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

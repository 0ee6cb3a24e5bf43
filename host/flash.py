"""`python -m host.flash` (what `make flash` runs): model → firmware → board.

Compiles the .tflite model, builds the firmware for the board and flashes it.
For an emulated board "flashing" installs the ELF and a manifest in
build/flash/<board>/, where host.evaluate and host.check find it. A real board
is programmed with pyOCD or through its probe's USB drive (the board file's
[flash] method; host/link/probe.py), then the ELF, the manifest and the serial port
are recorded in build/flash/<board>/ the same way.
Prints flash and RAM use read from the ELF against the board's limits.

`--mlperf` (or `make flash MLPERF=1`) builds the MLPerf Tiny compatibility mode
(docs/mlperf.md) instead of the framed protocol.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from host.backends.inputs import parse_range
from host.core.boards import list_boards, load_board
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL
from host.emulators.cycles import CyclesUnavailable, build_plugin
from host.link.flashing import flash
from host.link.probe import detect_boards

MLPERF_ENV, MLPERF_MODEL_ENV = "MLPERF", "MLPERF_MODEL"   # make flash MLPERF=1 [MLPERF_MODEL=kws01]
PREPROCESS_ENV, PREPROCESS_RANGE_ENV = "PREPROCESS", "PREPROCESS_RANGE"   # make flash PREPROCESS=squeeze:4


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
    p.add_argument("--place", metavar="NAME",
                   help="real boards in a lab: program the board of this labgrid place through its probe's drive "
                        "(coordinator: $LG_COORDINATOR; pip install 'slingshot[lab]'; docs/boards.md)")
    p.add_argument("--list", action="store_true",
                   help="list the real boards connected to this machine (mbed-tools' detection with "
                   "pip install 'slingshot[boards]', else the serial ports of the board files' USB ids) and exit")
    p.add_argument("--preprocess", default=os.environ.get(PREPROCESS_ENV) or None, metavar="STAGE",
                   help="input pre-processing stage on the chip: squeeze:BITS or median:WINDOW "
                        f"(also {PREPROCESS_ENV}=; docs/defenses.md)")
    p.add_argument("--preprocess-range", default=os.environ.get(PREPROCESS_RANGE_ENV) or "0,1", metavar="LO,HI",
                   help="the model input's float range, where squeezing puts its levels (default 0,1)")
    return p


def list_connected() -> int:
    """--list: one line per connected board, with the board files it matches."""
    real = [b for b in (load_board(name) for name in list_boards(every=True)) if not b.emulated]
    found = detect_boards(real)
    via = found[0].via if found else None
    if not found:
        print("no board connected (plug one in: its probe's USB connector); boards/ has real boards: "
              + ", ".join(b.name for b in real))
        return 0
    for board in found:
        drives = ", ".join(str(p) for p in board.mount_points) or "–"
        match = ", ".join(board.boards) or "no board file (add one: docs/boards.md)"
        print(f"{board.description:24s} serial {board.serial_number or '–':26s} port {board.serial_port or '–':14s} "
              f"drive {drives:20s} board {match}")
    print(f"(detected with {via})")
    return 0


def check_board_options(args: argparse.Namespace) -> None:
    """--probe, --drive and --port before anything is built or pyOCD is needed: an option the board's
    flash method does not use is an error, not ignored; a local --port must exist."""
    board = load_board(args.board)
    if args.place is not None:
        given = [f"--{name}" for name in ("probe", "port", "drive") if getattr(args, name) is not None]
        if given:
            raise UserError(f"--place and {', '.join(given)}: the place gives the board's probe and serial port",
                            hint="drop " + ", ".join(given))
        if board.method == "emulator":
            raise UserError(f"--place: board {board.name} is emulated; a labgrid place holds a real board",
                            hint="give the place's board with --board (docs/boards.md, \"Real boards\")")
        return
    if board.method == "emulator":
        given = [f"--{name}" for name in ("probe", "port", "drive") if getattr(args, name) is not None]
        if given:
            raise UserError(f"{', '.join(given)}: board {board.name} is emulated, there is nothing to program",
                            hint="these options are for real boards (docs/boards.md, \"Real boards\")")
        return
    if args.drive is not None and board.method != "mass_storage":
        raise UserError(f"--drive is for the mass_storage flash method; board {board.name} is programmed with "
                        f"{board.method}", hint="drop --drive (choose the probe with --probe UID)")
    if args.probe is not None and board.method != "pyocd":
        raise UserError(f"--probe is for the pyocd flash method; board {board.name} is programmed with "
                        f"{board.method}", hint="drop --probe (give the drive with --drive PATH)")
    if args.port is not None:
        check_port(args.port)


def check_port(port: str) -> None:
    """A --port that cannot be a serial link fails before programming (a URL's server is tried later)."""
    if "://" in port:
        scheme = port.split("://", 1)[0]
        if scheme not in ("socket", "rfc2217", "loop", "spy", "alt", "hwgrep"):
            raise UserError(f"--port {port}: unknown link scheme '{scheme}'",
                            hint="rfc2217://HOST:PORT, socket://HOST:PORT or a device path such as /dev/ttyACM0")
    elif not Path(port).exists():
        raise UserError(f"--port {port}: no such serial port",
                        hint="is the board plugged in? `python -m serial.tools.list_ports -v` lists the ports")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        return list_connected()
    check_board_options(args)
    started = time.monotonic()

    preprocess_range = parse_range(args.preprocess_range, "--preprocess-range")
    image, model, target = flash(args.model, args.board, args.mlperf, args.mlperf_model, args.probe, args.port,
                                 args.drive, args.preprocess, preprocess_range, args.place)
    print(f"model    {args.model}: {len(model.ops)} ops, arena {model.arena_bytes:,} B, "
          f"weights {model.weights_bytes:,} B")
    for line in image.usage_lines():
        print(line)
    copies = (f" + the DSP kernels' precomputed weights and requantization words {image.kernel_weights_bytes:,}"
              if image.kernel_weights_bytes else "")
    print(f"         flash = weights {model.weights_bytes:,}{copies} + code and tables "
          f"{image.flash_bytes - model.weights_bytes - image.kernel_weights_bytes:,}; "
          "RAM is the peak (statics, arena, stack: no heap)")
    print(f"flashed  {image.board.name} ({image.board.description.split(':')[0]}): {target / 'firmware.elf'} "
          f"in {time.monotonic() - started:.1f} s" + (" [MLPerf Tiny mode]" if args.mlperf else ""))
    if image.board.emulator_kind == "qemu":
        prepare_cycle_plugin()
    if args.preprocess:
        print(f"stage    {args.preprocess} on the input before every inference; INFER reports its ticks apart "
              "(docs/protocol.md)")
        print("next     python -m host.defenses.chip_cost, or a study with on_chip = true (docs/defenses.md)")
        return 0
    print("next     the MLPerf Tiny runner, see docs/mlperf.md" if args.mlperf else "next     python -m host.evaluate")
    return 0


def prepare_cycle_plugin() -> None:
    """Build QEMU's cycle plugin with the firmware (cached; `host.check --cycles` loads it). Flashing
    does not need it: a plugin that cannot be built is a warning here."""
    try:
        build_plugin()
    except CyclesUnavailable as err:
        print(f"warning: {err.message.splitlines()[0]} (only `--cycles` needs it)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_cli(main))

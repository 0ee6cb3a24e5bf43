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
from host.core.errors import run_cli
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL
from host.emulators.cycles import CyclesUnavailable, build_plugin
from host.link.flashing import flash

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
    p.add_argument("--preprocess", default=os.environ.get(PREPROCESS_ENV) or None, metavar="STAGE",
                   help="input pre-processing stage on the chip: squeeze:BITS or median:WINDOW "
                        f"(also {PREPROCESS_ENV}=; docs/defenses.md)")
    p.add_argument("--preprocess-range", default=os.environ.get(PREPROCESS_RANGE_ENV) or "0,1", metavar="LO,HI",
                   help="the model input's float range, where squeezing puts its levels (default 0,1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()

    image, model, target = flash(args.model, args.board, args.mlperf, args.mlperf_model, args.probe, args.port,
                                 args.drive, args.preprocess, parse_range(args.preprocess_range))
    print(f"model    {args.model}: {len(model.ops)} ops, arena {model.arena_bytes:,} B, "
          f"weights {model.weights_bytes:,} B")
    for line in image.usage_lines():
        print(line)
    print(f"         flash = weights {model.weights_bytes:,} + code and tables "
          f"{image.flash_bytes - model.weights_bytes:,}; RAM is the peak (statics, arena, stack: no heap)")
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

"""host.check on the chip: build the model's firmware, boot it, compare with the reference.

The image is built in build/<board>/<model>/ (the flashed image in
build/flash/ is left alone), booted in the board's emulator and fed every input.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

from host.boards import load_board
from host.build import build_firmware
from host.compiler import CompiledModel


def run_on_chip(args: argparse.Namespace, model: CompiledModel, inputs: Iterator[list[np.ndarray]],
                count: int):  # noqa: ANN201  (same tuple as host.check.check plus the target name)
    from host.check import check
    from host.device import boot_elf

    board = load_board(args.board)
    image = build_firmware(model, board)
    where = f"emulated by {board.emulator['kind']}" if board.emulated else "hardware"
    target = (f"{board.name} ({board.cpu}, {where}); firmware flash {image.flash_bytes:,} B, "
              f"RAM {image.ram_bytes:,} B")
    with boot_elf(board, image.elf, model.sha256) as device:

        def run(sample: list[np.ndarray]) -> tuple[list[np.ndarray], int | None]:
            outputs, result = device.infer_arrays(*sample)
            return outputs, result.instructions

        exact, total, first, first_inputs, costs = check(args.model, run, model, inputs, count)
        profile = device.profile() if getattr(args, "profile", False) else None
    if profile is not None:
        print_profile(model, profile, board.instructions_per_tick)
    return exact, total, first, first_inputs, costs, target


def print_profile(model: CompiledModel, ticks: list[int], per_tick: int | None) -> None:
    """Ticks per op of the last inference, largest share first marked."""
    total = sum(ticks) or 1
    unit = "instructions" if per_tick else "ticks"
    scale = per_tick or 1
    print(f"profile  per op, last inference ({unit}):")
    for index, (op, t) in enumerate(zip(model.ops, ticks, strict=False)):
        print(f"  {index:3d} {op:22s} {t * scale:>14,} {100.0 * t / total:6.1f} %")

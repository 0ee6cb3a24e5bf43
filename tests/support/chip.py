"""Run a .tflite model as firmware on an emulated board and compare every output with TFLite Micro."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from host.compiler import CompiledModel
from host.compiler.compile import compile_bytes
from host.core.boards import load_board
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter
from tests.engine.test_kernels_native import random_input


def assert_bit_exact_on_chip(board_name: str, out_dir: Path, data: bytes, label: str, rng: np.random.Generator,
                             model: CompiledModel | None = None, inputs: int = 3) -> None:
    """Build, boot, run `inputs` random inputs; fail with the first differing element."""
    board = load_board(board_name)
    model = model or compile_bytes(data, name="chip_model")
    image = build_firmware(model, board, out_dir)
    reference = ReferenceInterpreter(data)
    with boot_elf(board, image.elf, model.sha256, timeout_s=60) as device:
        for k in range(inputs):
            xs = [random_input(rng, t.dtype, t.shape) for t in model.inputs]
            ours, _ = device.infer_arrays(*xs)
            for i, (a, b) in enumerate(zip(ours, reference.run(*xs), strict=True)):
                if a.tobytes() != b.tobytes():
                    a_bits, b_bits = (a.view(np.uint32), b.view(np.uint32)) if a.dtype == np.float32 else (a, b)
                    where = tuple(int(v) for v in np.argwhere(a_bits != b_bits.reshape(a.shape))[0])
                    pytest.fail(f"{board_name} {label} input {k} output {i}: first difference at {where}: "
                                f"chip {a[where]}, TFLM {b.reshape(a.shape)[where]}")


# The Cortex-M7 board (mps2-an500) runs the same ARMv7-M DSP kernels as the M4 (mps2-an386): in
# the default suite the kernel tests run on the M4 and the M55; `make test-slow` adds the M7.
M7_BOARD = "mps2-an500"


def default_suite_boards(boards: Iterable[str]) -> list:
    """pytest parameters for `boards`, the M7 one marked slow."""
    return [pytest.param(b, marks=pytest.mark.slow) if b == M7_BOARD else b for b in boards]

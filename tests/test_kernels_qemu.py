"""A sample of the randomized single-op and multi-op models, built as firmware and run on the
emulated Cortex-M4: the cross-compiled engine must match TFLite Micro exactly as the host build does
(tests/test_kernels_native.py runs many more seeds host-natively)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from host.boards import load_board
from host.build import build_firmware
from host.compiler.compile import compile_bytes
from host.device import boot_elf
from host.paths import DEFAULT_BOARD
from host.reference import ReferenceInterpreter
from tests.support.tflite_builder import GENERATORS, random_multi_op
from tests.test_kernels_native import random_input

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

INPUTS_PER_MODEL = 3


def assert_bit_exact_on_chip(data: bytes, rng: np.random.Generator, label: str, out_dir) -> None:  # noqa: ANN001
    model = compile_bytes(data, name=label)
    board = load_board(DEFAULT_BOARD)
    image = build_firmware(model, board, out_dir)
    reference = ReferenceInterpreter(data)
    with boot_elf(board, image.elf, model.sha256, timeout_s=20) as device:
        for k in range(INPUTS_PER_MODEL):
            xs = [random_input(rng, t.dtype, t.shape) for t in model.inputs]
            ours, _ = device.infer_arrays(*xs)
            golden = reference.run(*xs)
            for i, (a, b) in enumerate(zip(ours, golden, strict=True)):
                if a.tobytes() != b.tobytes():
                    a_bits, b_bits = (a.view(np.uint32), b.view(np.uint32)) if a.dtype == np.float32 else (a, b)
                    where = tuple(int(v) for v in np.argwhere(a_bits != b_bits.reshape(a.shape))[0])
                    pytest.fail(f"{label} input {k} output {i}: first difference at {where}: "
                                f"chip {a[where]}, TFLM {b.reshape(a.shape)[where]}")


@pytest.mark.parametrize("op", sorted(GENERATORS))
def test_single_op_on_chip(op: str, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng([7, sum(op.encode())])
    assert_bit_exact_on_chip(GENERATORS[op](rng), rng, f"{op}_chip", tmp_path)


@pytest.mark.parametrize("seed", range(3))
def test_multi_op_on_chip(seed: int, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng([seed, 77])
    assert_bit_exact_on_chip(random_multi_op(rng), rng, f"multi_chip{seed}", tmp_path)

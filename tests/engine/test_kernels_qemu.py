"""A sample of the randomized single-op and multi-op models, built as firmware and run on the
emulated Cortex-M4: the cross-compiled engine must match TFLite Micro exactly as the host build does
(tests/engine/test_kernels_native.py runs many more seeds host-natively)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from host.core.paths import DEFAULT_BOARD
from tests.support.chip import assert_bit_exact_on_chip
from tests.support.tflite_builder import GENERATORS, random_multi_op

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

@pytest.mark.parametrize("op", sorted(GENERATORS))
def test_single_op_on_chip(op: str, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng([7, sum(op.encode())])
    assert_bit_exact_on_chip(DEFAULT_BOARD, tmp_path, GENERATORS[op](rng), f"{op}_chip", rng)


@pytest.mark.parametrize("seed", range(3))
def test_multi_op_on_chip(seed: int, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng([seed, 77])
    assert_bit_exact_on_chip(DEFAULT_BOARD, tmp_path, random_multi_op(rng), f"multi_chip{seed}", rng)

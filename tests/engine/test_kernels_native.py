"""Bit-exactness of every engine kernel against the TFLite Micro interpreter,
on randomized single-op and multi-op models, through the host-native build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.compiler.compile import compile_bytes
from host.engine.native import NativeModel
from host.engine.reference import ReferenceInterpreter
from host.tflite.reader import parse_model
from tests.support.tflite_builder import GENERATORS, random_conv, random_fully_connected, random_multi_op

SEEDS_PER_OP = 25
INPUTS_PER_MODEL = 4


def random_input(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "float32":
        return (rng.standard_normal(shape) * rng.uniform(0.1, 30.0)).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)


def assert_bit_exact(data: bytes, rng: np.random.Generator, label: str) -> None:
    model = compile_bytes(data, name=label)
    native = NativeModel(model)
    reference = ReferenceInterpreter(data)
    for k in range(INPUTS_PER_MODEL):
        xs = [random_input(rng, info.dtype, info.shape) for info in model.inputs]
        ours, golden = native.run(*xs)[0], reference.run(*xs)[0]
        if ours.dtype == np.float32:  # compare float bits, not values
            ours, golden = ours.view(np.uint32), golden.view(np.uint32)
        if not np.array_equal(ours, golden):
            where = tuple(np.argwhere(ours != golden)[0])
            pytest.fail(f"{label} input {k}: first difference at {where}: ours {ours[where]}, TFLM {golden[where]}")


@pytest.mark.parametrize("seed", range(SEEDS_PER_OP))
@pytest.mark.parametrize("op", sorted(GENERATORS))
def test_single_op_bit_exact(op: str, seed: int) -> None:
    rng = np.random.default_rng([seed, sum(op.encode())])
    assert_bit_exact(GENERATORS[op](rng), rng, f"{op}_seed{seed}")


@pytest.mark.parametrize("seed", range(SEEDS_PER_OP))
def test_multi_op_bit_exact(seed: int) -> None:
    rng = np.random.default_rng([seed, 99])
    assert_bit_exact(random_multi_op(rng), rng, f"multi_seed{seed}")


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("op", ["CONV_2D", "FULLY_CONNECTED"])
def test_int16_without_bias_uses_64bit_path(op: str, seed: int) -> None:
    """The accumulator width for bias-less 16x8 ops is easy to get wrong and only
    shows on rounding ties: many models, many inputs."""
    rng = np.random.default_rng([seed, 16])
    make = random_conv if op == "CONV_2D" else random_fully_connected
    for _ in range(50):
        data = make(rng, dtype="int16")
        if parse_model(data).subgraphs[0].operators[0].inputs[2] < 0:
            break
    else:
        pytest.skip("generator produced no bias-less model")
    model, reference = NativeModel(compile_bytes(data)), ReferenceInterpreter(data)
    for _ in range(20):
        x = random_input(rng, "int16", model.model.inputs[0].shape)
        assert np.array_equal(model.run(x)[0], reference.run(x)[0])


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_conv_with_long_runs_is_exact_at_extreme_inputs(dtype: str) -> None:
    """The portable CONV_2D sums a filter row as one run (int16x8: int32 runs of 256 products joining an
    int64 total). 1x1 filters over 700 channels of weights +-127, and inputs of full scale matching the
    first filter's signs, make a 700-product run overflow int32 (700 * 127 * 32767 > 2^31): a run too
    long, or an accumulator too narrow, changes the output."""
    rng = np.random.default_rng([7, 700])
    data = random_conv(rng, dtype=dtype, in_c=700, kernel=(1, 1), extreme_weights=True)
    model, reference = NativeModel(compile_bytes(data)), ReferenceInterpreter(data)
    info, shape = np.iinfo(dtype), model.model.inputs[0].shape
    first_filter = parse_model(data).subgraphs[0].tensors[1].array().reshape(-1, 700)[0]
    matched = np.broadcast_to(np.where(first_filter > 0, info.max, info.min).astype(dtype), shape)
    for x in (matched, np.full(shape, info.max, dtype), random_input(rng, dtype, shape)):
        assert np.array_equal(model.run(x)[0], reference.run(x)[0])


BUILD_AT_ONCE = """
import sys, time
from pathlib import Path
import host.engine.native as native
from host.compiler.compile import compile_file
from host.core.paths import DEFAULT_MODEL
native.NATIVE_DIR = Path(sys.argv[1])
while time.time() < float(sys.argv[2]):   # both processes start building at the same moment
    time.sleep(0.001)
native.kernel_library()
native.NativeModel(compile_file(DEFAULT_MODEL))
"""


def test_processes_building_the_same_library_at_once_both_succeed(tmp_path: Path) -> None:
    """Two workers of a fresh checkout build the host-native engine at the same time: each writes its own
    temporary files (they once shared one name, and one worker's rename took the other's file)."""
    import subprocess
    import sys
    import time

    from host.core.paths import ROOT

    start = f"{time.time() + 3.0}"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_AT_ONCE, str(tmp_path), start], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not list(tmp_path.rglob("*.tmp")), sorted(tmp_path.rglob("*.tmp"))

"""Scratch sizes: the compiler's one Python function per op (host/compiler/ops/*.py) gives, for every
optimized kernel of the op's row, what the kernel's own C function tm_<op>_<feature>_scratch_bytes
returns (compiled for the host, called through ctypes), over random dims, params and types that reach
every path's limits; and every C scratch function has its Python counterpart."""

from __future__ import annotations

import ctypes
import re
import subprocess
from collections.abc import Callable

import numpy as np
import pytest

from host.compiler.kernel_table import kernel_table
from host.compiler.ops.add import add_scratch_bytes
from host.compiler.ops.conv import ConvDims, conv_2d_scratch_bytes, depthwise_conv_2d_scratch_bytes
from host.compiler.ops.fully_connected import FcDims, fully_connected_scratch_bytes
from host.compiler.scratch import NEXT
from host.compiler.types import DTYPE_CODES
from host.engine.native import kernel_library
from tests.engine.test_kernels_flat import PARAMS, ConvDimsC, FcDimsC, shape_of

CASES = 400
DTYPES = ("int8", "int16", "float32")

# The op's one Python scratch function, by kernel table row.
PYTHON_SCRATCH: dict[str, Callable[..., int]] = {
    "CONV_2D": conv_2d_scratch_bytes,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d_scratch_bytes,
    "FULLY_CONNECTED": fully_connected_scratch_bytes,
    "ADD": add_scratch_bytes,
}


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    return kernel_library()


def _c_scratch(lib: ctypes.CDLL, name: str, kernel: str) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    fn = getattr(lib, f"tm_{name}_{kernel}_scratch_bytes")
    fn.restype = ctypes.c_int32
    return fn


def _conv_case(rng: np.random.Generator, depthwise: bool) -> tuple[dict[str, int], ConvDims, str]:
    in_c = int(rng.choice([1, 3, 4, 8, 13, 16, 17, 32, 64, 128, 129, 256, 257, 300]))
    f_h, f_w = (int(v) for v in rng.integers(1, 8, size=2))
    if rng.random() < 0.25:
        f_h = f_w = 1   # the 1x1 paths
    multiplier = int(rng.choice([1, 1, 1, 2, 3])) if depthwise else 1
    if depthwise:
        out_c, f_c = in_c * multiplier, in_c * multiplier
    else:
        out_c = int(rng.choice([1, 2, 3, 8, 15, 16, 64, 65, 128, 256]))
        f_c = in_c if rng.random() < 0.85 else max(1, in_c // int(rng.choice([2, 3])))
    stride_h, stride_w = (int(v) for v in rng.integers(1, 4, size=2))
    if not depthwise and rng.random() < 0.25:   # the Winograd path's 3x3 stride-1 layers (and its limits)
        f_h = f_w = 3
        stride_h = stride_w = 1
        in_c = f_c = int(rng.choice([4, 8, 64, 128, 132, 6]))
        out_c = int(rng.choice([2, 16, 64, 66, 3]))
    in_h, in_w = (int(v) for v in rng.integers(1, 60, size=2))
    out_h, out_w = max(1, -(-in_h // stride_h)), max(1, -(-in_w // stride_w))
    if rng.random() < 0.3:
        out_h, out_w = (int(v) for v in rng.integers(1, 40, size=2))
    full = rng.random() < 0.6
    fields = {
        "stride_h": stride_h, "stride_w": stride_w, "dilation_h": 1, "dilation_w": 1,
        "pad_h": int(rng.integers(0, 3)) if rng.random() < 0.5 else 0,
        "pad_w": int(rng.integers(0, 3)) if rng.random() < 0.5 else 0,
        "depth_multiplier": multiplier, "n_multipliers": out_c, "acc64": 0,
        "input_offset": 0 if rng.random() < 0.4 else int(rng.integers(-127, 129)),
        "output_offset": int(rng.integers(-128, 128)),
        "act_min": -128 if full else int(rng.integers(-128, 0)), "act_max": 127 if full else int(rng.integers(0, 127)),
    }
    dims = ConvDims(int(rng.integers(1, 3)), in_h, in_w, in_c, f_h, f_w, f_c, out_h, out_w, out_c)
    return fields, dims, str(rng.choice(DTYPES, p=[0.6, 0.3, 0.1]))


def _params(params_type: str, fields: dict[str, int]) -> ctypes.Structure:
    params = PARAMS[params_type]()
    for name, value in fields.items():
        setattr(params, name, value)
    return params


@pytest.mark.parametrize("kernel", ["dsp", "mve"])
@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_conv_scratch_python_equals_c(lib: ctypes.CDLL, op: str, kernel: str) -> None:
    rng = np.random.default_rng([sum(op.encode()), sum(kernel.encode())])
    c_fn = _c_scratch(lib, kernel_table()[op].name, kernel)
    seen = set()
    for _ in range(CASES):
        fields, dims, dtype = _conv_case(rng, depthwise=op == "DEPTHWISE_CONV_2D")
        ours = PYTHON_SCRATCH[op](kernel, fields, dims, dtype)
        theirs = c_fn(ctypes.byref(_params("tm_conv_params_t", fields)), ctypes.byref(ConvDimsC(*dims.values())),
                      DTYPE_CODES[dtype])
        assert ours == theirs, f"{op} {kernel} {dims} {fields} {dtype}: Python {ours}, C {theirs}"
        seen.add(ours)
    assert NEXT in seen and len(seen) >= 2, f"the cases reach too few paths: {sorted(seen)}"


@pytest.mark.parametrize("kernel", ["dsp", "mve"])
def test_fully_connected_scratch_python_equals_c(lib: ctypes.CDLL, kernel: str) -> None:
    rng = np.random.default_rng([3, sum(kernel.encode())])
    c_fn = _c_scratch(lib, "fully_connected", kernel)
    for _ in range(CASES):
        dims = FcDims(int(rng.integers(1, 4)), int(rng.choice([1, 7, 64, 508, 1023, 1024, 1025, 2000])),
                      int(rng.integers(1, 300)))
        fields = {"input_offset": int(rng.integers(-128, 128)), "filter_offset": 0 if rng.random() < 0.8 else 3,
                  "output_offset": 0, "act_min": -128, "act_max": 127, "n_multipliers": 1, "acc64": 0}
        dtype = str(rng.choice(DTYPES, p=[0.6, 0.3, 0.1]))
        ours = fully_connected_scratch_bytes(kernel, fields, dims, dtype)
        theirs = c_fn(ctypes.byref(_params("tm_fc_params_t", fields)), ctypes.byref(FcDimsC(*dims.values())),
                      DTYPE_CODES[dtype])
        assert ours == theirs, f"FULLY_CONNECTED {kernel} {dims} {fields} {dtype}: Python {ours}, C {theirs}"


@pytest.mark.parametrize("kernel", ["dsp", "mve"])
def test_add_scratch_python_equals_c(lib: ctypes.CDLL, kernel: str) -> None:
    rng = np.random.default_rng([4, sum(kernel.encode())])
    c_fn = _c_scratch(lib, "add", kernel)
    for _ in range(CASES):
        out = tuple(int(v) for v in rng.integers(1, 12, size=int(rng.integers(1, 5))))
        in1 = out if rng.random() < 0.7 else tuple(1 if rng.random() < 0.5 else d for d in out)
        in2 = out if rng.random() < 0.7 else out[-1:]
        dtype = str(rng.choice(DTYPES, p=[0.6, 0.3, 0.1]))
        ours = add_scratch_bytes(kernel, in1, in2, out, dtype)
        theirs = c_fn(*(ctypes.byref(shape_of(s)) for s in (in1, in2, out)), DTYPE_CODES[dtype])
        assert ours == theirs, f"ADD {kernel} {in1} {in2} {out} {dtype}: Python {ours}, C {theirs}"


def test_every_c_scratch_function_has_its_python_function(lib: ctypes.CDLL) -> None:
    """A kernel that holds scratch defines tm_<name>_<feature>_scratch_bytes; the compiler must compute
    the same for that op and feature (and no Python function stands for a kernel the table lacks)."""
    names = subprocess.run(["nm", "--defined-only", lib._name], capture_output=True, text=True, check=True).stdout
    defined = set(re.findall(r" T tm_(\w+?)_(mve|dsp|fpu)_scratch_bytes$", names, re.M))
    assert defined, "no scratch function found in the kernel library"
    rows = {row.name: row for row in kernel_table().values()}
    for name, feature in defined:
        row = rows[name]
        assert row.kind in PYTHON_SCRATCH, f"tm_{name}_{feature}_scratch_bytes has no Python function"
        assert row.types[feature], f"tm_{name}_{feature}_scratch_bytes: the table gives {row.kind} no {feature} kernel"
    for kind in PYTHON_SCRATCH:
        row = kernel_table()[kind]
        for feature, types in row.types.items():
            if types:
                assert (row.name, feature) in defined, f"{kind}'s {feature} kernel defines no scratch function"

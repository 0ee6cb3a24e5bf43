"""The one kernel table (firmware/engine/tm_kernel_table.h): the compiler reads it as the C compiler
does, and the kernel each board's build runs for each op (and the one an optimized kernel hands an op
on to) is the table's choice for that board's CPU features, as the cross-compiler resolves it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from host.compiler.kernel_table import FEATURES, PORTABLE, TYPE_TOKENS, kernel_table
from host.core.boards import load_board
from host.engine.build import cflags, cpu_features
from host.engine.native import CFLAGS

ENGINE = Path(__file__).resolve().parents[2] / "firmware" / "engine"
BOARDS = {"mps2-an386": ("dsp", "fpu"), "mps2-an500": ("dsp", "fpu"), "mps3-an547": ("mve", "dsp", "fpu")}
needs_arm_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                   reason="needs gcc-arm-none-eabi (make deps)")

# Each row's masks, as the C compiler evaluates them.
PRINT_ROWS = """
#include <stdio.h>
#include "tm_kernels.h"
#define PRINT_ROW(KIND, name, scratch, mve, dsp, fpu) \\
    printf("%s %s %u %u %u\\n", #KIND, #name, (unsigned)(mve), (unsigned)(dsp), (unsigned)(fpu));
int main(void) {
    TM_KERNEL_TABLE(PRINT_ROW)
    return 0;
}
"""
# Each row's selected kernel, and the kernel below each feature's, as initialized pointers.
SELECTIONS = """
#include "tm_kernels.h"
#define SELECTED(KIND, name, scratch, mve, dsp, fpu)                                   \\
    tm_kernel_fn const tm_run_##name = TM_SELECTED_KERNEL(name, mve, dsp, fpu);        \\
    tm_kernel_fn const tm_below_mve_##name = TM_PICK_FROM_DSP(name, dsp, fpu);         \\
    tm_kernel_fn const tm_below_dsp_##name = TM_PICK_FROM_FPU(name, fpu);
TM_KERNEL_TABLE(SELECTED)
"""
TYPE_BITS = {"int8": 1 << 0, "int16": 1 << 1, "float32": 1 << 3}   # 1 << tm_dtype_t


def test_python_reads_the_table_as_the_c_compiler_does(tmp_path: Path) -> None:
    src, exe = tmp_path / "rows.c", tmp_path / "rows"
    src.write_text(PRINT_ROWS)
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    subprocess.run([cc, *CFLAGS, str(src), "-o", str(exe)], check=True)
    rows = [line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                    check=True).stdout.splitlines()]
    table = kernel_table()
    assert [kind for kind, *_ in rows] == list(table), "rows and their order"
    for kind, name, *masks in rows:
        assert table[kind].name == name
        for feature, mask in zip(FEATURES, masks, strict=True):
            assert sum(TYPE_BITS[t] for t in table[kind].types[feature]) == int(mask), (kind, feature)
    assert set(TYPE_BITS) == set(TYPE_TOKENS.values())


def _selections(board_name: str, tmp_path: Path) -> dict[str, str]:
    """symbol (tm_run_<name>, tm_below_<feature>_<name>) -> the kernel it points at, for the board's build."""
    src = tmp_path / "selections.c"
    src.write_text(SELECTIONS)
    flags = [f for f in cflags(load_board(board_name)) if f != "-g"]
    asm = subprocess.run(["arm-none-eabi-gcc", *flags, "-S", "-o", "-", str(src)], capture_output=True, text=True,
                         check=True).stdout
    return dict(re.findall(r"^(tm_\w+):\n\s*\.word\s+(\w+)", asm, re.M))


def _kernel(name: str, feature: str) -> str:
    return f"tm_kernel_{name}" if feature == PORTABLE else f"tm_kernel_{name}_{feature}"


@needs_arm_gcc
@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_each_board_runs_the_tables_kernel(board_name: str, tmp_path: Path) -> None:
    features = cpu_features(load_board(board_name))
    assert features == BOARDS[board_name]
    chosen = _selections(board_name, tmp_path)
    for row in kernel_table().values():
        chain = row.chain(features)
        assert chosen[f"tm_run_{row.name}"] == _kernel(row.name, chain[0]), row.kind
        for feature, below in zip(chain, chain[1:], strict=False):
            if feature == "fpu":   # the last optimized column: below it, always the portable kernel
                continue
            assert chosen[f"tm_below_{feature}_{row.name}"] == _kernel(row.name, below), (row.kind, feature)


@needs_arm_gcc
def test_the_boards_keep_the_kernels_they_were_measured_with(tmp_path: Path) -> None:
    """The kernels docs/performance.md's instruction counts were measured with: Helium first on the M55
    (int8 and int16x8 CONV_2D), the DSP kernel below it, DSP on the M4, the FPU's QUANTIZE, portable
    SOFTMAX."""
    m4, m55 = _selections("mps2-an386", tmp_path), _selections("mps3-an547", tmp_path)
    assert m4["tm_run_conv_2d"] == "tm_kernel_conv_2d_dsp" and m55["tm_run_conv_2d"] == "tm_kernel_conv_2d_mve"
    assert m55["tm_below_mve_conv_2d"] == "tm_kernel_conv_2d_dsp"
    assert m4["tm_below_dsp_conv_2d"] == "tm_kernel_conv_2d"
    assert m4["tm_run_quantize"] == m55["tm_run_quantize"] == "tm_kernel_quantize_fpu"
    assert m4["tm_run_softmax"] == m55["tm_run_softmax"] == "tm_kernel_softmax"
    table = kernel_table()
    assert table["CONV_2D"].takes("dsp", "int16") and table["CONV_2D"].takes("mve", "int16")


@needs_arm_gcc
def test_portable_builds_run_the_portable_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TM_KERNELS", "portable")
    assert cpu_features(load_board("mps3-an547")) == ()
    chosen = _selections("mps3-an547", tmp_path)
    for row in kernel_table().values():
        assert chosen[f"tm_run_{row.name}"] == f"tm_kernel_{row.name}"

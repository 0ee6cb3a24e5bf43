"""The firmware's kernel table (firmware/engine/tm_kernel_table.h), read for the compiler's scratch sizes.

The C header is the one place that decides which kernel backs each op: per op, and per CPU feature
(Helium, the DSP extension, a single-precision FPU), the types of op the optimized kernel takes.
This module only reads it; tests/engine/test_kernel_table.py checks the reading against the C compiler's.

    python -m host.compiler.kernel_table mve dsp fpu    # which kernel runs each op on such a core
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from host.core.paths import FIRMWARE_DIR

TABLE_HEADER = FIRMWARE_DIR / "engine" / "tm_kernel_table.h"
FEATURES = ("mve", "dsp", "fpu")   # the table's feature columns, most specific first
PORTABLE = "portable"
TYPE_TOKENS = {"TM_I8": "int8", "TM_I16": "int16", "TM_F32": "float32"}

_ROW = re.compile(r"X\(\s*(\w+),\s*(\w+),\s*(\w+),\s*([^,]+?),\s*([^,]+?),\s*([^,)]+?)\s*\)")


@dataclass(frozen=True)
class KernelRow:
    kind: str                                   # the op, as in TM_OP_<kind>: "CONV_2D"
    name: str                                   # its kernels' name: tm_kernel_<name>[_<feature>]
    types: dict[str, frozenset[str]]            # feature -> the op types its kernel takes (empty: none)

    def takes(self, feature: str, dtype: str) -> bool:
        return dtype in self.types[feature]

    def chain(self, features: tuple[str, ...] | list[str]) -> list[str]:
        """The kernels that may run this op on a core with `features`, in the order an op is handed
        down: the optimized ones whose column is not empty, most specific first, then the portable."""
        return [f for f in FEATURES if f in features and self.types[f]] + [PORTABLE]


def _types(column: str) -> frozenset[str]:
    tokens = [t.strip() for t in column.split("|")]
    if tokens == ["0"]:
        return frozenset()
    unknown = [t for t in tokens if t not in TYPE_TOKENS]
    if unknown:
        raise ValueError(f"{TABLE_HEADER.name}: unknown type {unknown[0]!r} in column {column!r}")
    return frozenset(TYPE_TOKENS[t] for t in tokens)


@cache
def kernel_table() -> dict[str, KernelRow]:
    """The table's rows by op kind."""
    text = TABLE_HEADER.read_text()
    start = text.index("#define TM_KERNEL_TABLE(X)")
    end = text.index("\n\n", start)
    rows = {}
    for kind, name, _scratch, *columns in _ROW.findall(text[start:end]):
        rows[kind] = KernelRow(kind, name, {f: _types(c) for f, c in zip(FEATURES, columns, strict=True)})
    return rows


def row_of(lowered_kind: str) -> KernelRow:
    """The row of a lowered op kind ("TM_OP_CONV_2D")."""
    return kernel_table()[lowered_kind.removeprefix("TM_OP_")]


def describe(features: tuple[str, ...] | list[str]) -> list[str]:
    """One line per op: the kernels an op goes through on a core with `features`, in hand-on order."""
    lines = []
    for row in kernel_table().values():
        types = ", ".join(f"{f} {'/'.join(sorted(row.types[f]))}" for f in row.chain(features) if f != PORTABLE)
        lines.append(f"{row.kind:18} {' -> '.join(row.chain(features)):24} {types}")
    return lines

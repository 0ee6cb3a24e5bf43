"""Scratch memory: the working buffers a kernel holds while its op runs (CMSIS-NN's get_buffer_size).

Each kernel that holds scratch has a C function tm_<op>_<feature>_scratch_bytes(params, dims, type)
next to its buffers (firmware/engine/ops_<feature>/); the op's lowering (host/compiler/ops/<op>.py)
computes the same with one Python function per op, for every optimized kernel of its row in the
kernel table, and tests/engine/test_kernel_scratch.py checks both agree.  A kernel that hands an op to the
next one of its row answers NEXT; portable kernels hold none.

The scratch lives on the stack, one op at a time (no statics, no heap): the arena does not change
with the kernels, and the peak over the ops (planner.plan_scratch) is what a core's stack must
hold besides the frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from host.compiler.kernel_table import FEATURES, PORTABLE, KernelRow

NEXT = -1   # TM_SCRATCH_NEXT


@dataclass(frozen=True)
class OpScratch:
    kind: str                                                  # the kernel table's op: "CONV_2D"
    by_kernel: dict[str, int] = field(default_factory=dict)    # feature -> bytes, or NEXT

    def bytes_on(self, row: KernelRow, features: tuple[str, ...] | list[str]) -> int:
        """Bytes of the kernel that runs the op on a core with `features` (the first of the row's
        chain that does not hand it on)."""
        for kernel in row.chain(features):
            if kernel == PORTABLE:
                return 0
            held = self.by_kernel.get(kernel, 0)
            if held != NEXT:
                return held
        return 0


def per_kernel(row: KernelRow, scratch_of: Callable[[str], int]) -> dict[str, int]:
    """`scratch_of(feature)` for each feature whose kernel the row lists."""
    return {f: scratch_of(f) for f in FEATURES if row.types[f]}

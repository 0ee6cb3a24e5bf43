"""Static arena plan from tensor lifetimes (greedy by size, like TFLM's planner), and the scratch plan.

Each non-constant tensor is a buffer live from the op that writes it (or the
start, for model inputs) to the last op that reads it (or the end, for model
outputs).  Tensors an op aliases (RESHAPE) share one buffer.  Buffers are
placed largest first at the lowest offset that overlaps no placed buffer whose
lifetime intersects.

Scratch is not in the arena: a kernel holds it on the stack while its op runs
(host/compiler/scratch.py), so the plan is the largest over the ops for the
kernels a core runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from host.compiler.kernel_table import kernel_table
from host.compiler.scratch import OpScratch

ALIGN = 16


@dataclass
class Buffer:
    tensors: list[int]
    size: int
    first: int
    last: int
    offset: int = -1


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def plan_arena(
    sizes: dict[int, int],
    op_io: list[tuple[list[int], list[int]]],
    graph_inputs: list[int],
    graph_outputs: list[int],
    aliases: list[tuple[int, int]],
) -> tuple[dict[int, int], int]:
    """Returns ({tensor: arena offset}, arena bytes) for the tensors in `sizes`."""
    groups = _UnionFind()
    for a, b in aliases:
        groups.union(a, b)
    end = len(op_io)
    spans: dict[int, list[int]] = {}
    for t in sizes:
        spans.setdefault(groups.find(t), [end + 1, -2])

    def touch(t: int, when: int) -> None:
        if t in sizes:
            span = spans[groups.find(t)]
            span[0], span[1] = min(span[0], when), max(span[1], when)

    for i, (ins, outs) in enumerate(op_io):
        for t in ins + outs:
            touch(t, i)
    for t in graph_inputs:
        touch(t, -1)
    for t in graph_outputs:
        touch(t, end)

    buffers = {root: Buffer([], 0, span[0], span[1]) for root, span in spans.items()}
    for t, size in sizes.items():
        buf = buffers[groups.find(t)]
        buf.tensors.append(t)
        buf.size = max(buf.size, _align(size))

    placed: list[Buffer] = []
    for buf in sorted(buffers.values(), key=lambda b: (-b.size, b.first)):
        buf.offset = _lowest_free_offset(buf, placed)
        placed.append(buf)
    offsets = {t: buf.offset for buf in placed for t in buf.tensors}
    total = max((b.offset + b.size for b in placed), default=0)
    return offsets, total


def _lowest_free_offset(buf: Buffer, placed: list[Buffer]) -> int:
    live = sorted(
        (p for p in placed if p.first <= buf.last and buf.first <= p.last),
        key=lambda p: p.offset,
    )
    offset = 0
    for p in live:
        if offset + buf.size <= p.offset:
            break
        offset = max(offset, p.offset + p.size)
    return offset


def plan_without_reuse(sizes: dict[int, int]) -> tuple[dict[int, int], int]:
    """Every tensor at its own offset: nothing is overwritten (debug builds)."""
    offsets, total = {}, 0
    for t in sorted(sizes):
        offsets[t] = total
        total += _align(sizes[t])
    return offsets, total


def plan_scratch(ops: list[OpScratch], features: tuple[str, ...] | list[str]) -> tuple[int, int]:
    """(bytes, op index) of the op whose kernel holds the most scratch on a core with `features`
    ("mve", "dsp", "fpu"; () for the portable kernels); (0, -1) when none holds any."""
    table = kernel_table()
    best = (0, -1)
    for index, op in enumerate(ops):
        held = op.bytes_on(table[op.kind], features)
        if held > best[0]:
            best = (held, index)
    return best

"""Cycle models of CPUs: boards/cpus/<cpu>.toml, a cost per instruction timing class.

The QEMU cycle plugin (host.emulators.cycles) counts the executed instructions of a window by
timing class, the registers LDM/STM move, and the data accesses and fetched bytes per memory
region. A CPU's table turns those counts into estimated cycles: each class costs a constant, a
range (SDIV 2..12) or a constant plus pipeline refills ("1+P"), and every access to a region
with wait states (the board file's `[memory.<name>] wait_states`) costs that many more. The
estimate is a pair: low (P and every range at its low end) and high (at the high end).

A CPU without a table (Cortex-M7, Cortex-M55: their TRMs publish no per-instruction timings)
has no model: `timing_for` returns None and callers report instructions only.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from host.core.boards import Board
from host.core.errors import UserError
from host.core.paths import BOARDS_DIR

CPUS_DIR = BOARDS_DIR / "cpus"
_COST = re.compile(r"^\s*(\d+)\s*(?:\.\.\s*(\d+))?\s*(?:\+\s*(\d*)\s*P)?\s*$")
# Counters that are not instructions: registers moved, accesses and fetches per region, penalties.
_NOT_INSTRUCTIONS = re.compile(r"(_regs$|_penalty$|\.)")


def is_instruction_counter(name: str) -> bool:
    return not _NOT_INSTRUCTIONS.search(name)


@dataclass(frozen=True)
class Cost:
    """Cycles of one counted event: `low`..`high` plus `refills` × P."""

    low: int
    high: int
    refills: int = 0

    @classmethod
    def parse(cls, text: object, where: str) -> Cost:
        match = _COST.match(text) if isinstance(text, str) else None
        if match is None:
            raise UserError(f"{where}: a cost is \"C\", \"C+P\" or \"A..B\", got {text!r}",
                            hint="see docs/performance.md")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        refills = 0 if match.group(3) is None else int(match.group(3) or 1)
        if high < low:
            raise UserError(f"{where}: range {text!r} runs backwards")
        return cls(low, high, refills)


@dataclass(frozen=True)
class CycleEstimate:
    """Estimated cycles of a window, low and high, and its instructions."""

    low: int
    high: int
    instructions: int
    refill: tuple[int, int]

    def cpi(self) -> tuple[float, float]:
        n = self.instructions or 1
        return self.low / n, self.high / n

    def milliseconds(self, clock_hz: int) -> tuple[float, float]:
        return 1e3 * self.low / clock_hz, 1e3 * self.high / clock_hz

    def describe(self) -> str:
        p_low, p_high = self.refill
        return f"{self.low:,}–{self.high:,} (P = {p_low}..{p_high})"


@dataclass(frozen=True)
class CpuTiming:
    cpu: str
    name: str
    source: str
    refill: tuple[int, int]
    costs: dict[str, Cost]
    path: Path

    def estimate(self, counts: Mapping[str, int], regions: Mapping[str, int] | None = None) -> CycleEstimate:
        """Cycles of a window's counts; `regions` maps a memory region's name to its wait states."""
        low = high = 0
        for name, count in counts.items():
            if not count:
                continue
            region_name = name.partition(".")[2]
            if region_name:
                extra = self._wait_state_cycles(name, count, (regions or {}).get(region_name, 0))
                low, high = low + extra, high + extra
                continue
            cost = self.costs.get(name)
            if cost is None:
                raise UserError(f"{self.path}: no cost for the plugin's counter '{name}'",
                                hint="every timing class of firmware/tools/qemu_cycles/thumb_timing.h needs a row")
            low += count * (cost.low + cost.refills * self.refill[0])
            high += count * (cost.high + cost.refills * self.refill[1])
        instructions = sum(n for name, n in counts.items() if is_instruction_counter(name))
        return CycleEstimate(low, high, instructions, self.refill)

    @staticmethod
    def _wait_state_cycles(counter: str, count: int, wait_states: int) -> int:
        if counter.startswith("fetch_bytes."):
            return wait_states * math.ceil(count / 4)  # one fetch per 32-bit word
        return wait_states * count  # read.<region>, write.<region>


def timing_for(board: Board) -> CpuTiming | None:
    """The board's CPU model (boards/cpus/<cpu>.toml), or None if that CPU has none."""
    path = CPUS_DIR / f"{board.cpu}.toml"
    return load_timing(path, board.cpu) if path.is_file() else None


def wait_states(board: Board) -> dict[str, int]:
    return {region.name: region.wait_states for region in board.all_regions}


def load_timing(path: Path, cpu: str) -> CpuTiming:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err})", hint="see docs/performance.md") from None
    refill = data.get("pipeline_refill", [1, 1])
    if (not isinstance(refill, list) or len(refill) != 2 or not all(isinstance(p, int) and p >= 0 for p in refill)
            or refill[0] > refill[1]):
        raise UserError(f"{path}: pipeline_refill must be [low, high], got {refill!r}")
    table = data.get("cycles")
    if not isinstance(table, dict) or not table:
        raise UserError(f"{path}: missing the [cycles] table")
    costs = {name: Cost.parse(text, f"{path}: cycles.{name}") for name, text in table.items()}
    return CpuTiming(cpu, str(data.get("name", cpu)), str(data.get("source", "")), (refill[0], refill[1]), costs,
                     path)

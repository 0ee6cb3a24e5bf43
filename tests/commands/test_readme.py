"""README.md's Quick start shows what the commands print today.

Its two sample outputs (the indented blocks of the "## Quick start" section: the one starting with
`model` is `make flash`'s, the one starting with `attack` is `python -m host.evaluate --num 50`'s) are
compared with a fresh run of the same commands: flash, RAM, ops, arena and weight bytes line for line,
every row of the evaluate table column for column. Not compared: the flash time ("in 2.3 s"), the
firmware path's prefix, the results directory, and the instruction medians beyond one SysTick tick
(40 instructions on mps2-an386: an inference's tick count can differ by one between runs, see
tests/study/test_resume.py). One QEMU boot, about 20 s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from host.core.paths import ROOT

README = ROOT / "README.md"
BOARD, MODEL = "mps2-an386", "models/digits_cnn_int8.tflite"   # what `make flash` passes by default
TICK = 40
# The evaluate table's medians: each count is read in whole SysTick ticks from a start phase that the emulator's
# idle time moves, and a median of 50 is the mean of two of them: runs differ by up to two ticks (60 instructions
# seen, 2026-12-07).
MEDIAN_SLACK = 2 * TICK
HAS_TOOLS = shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None
needs_tools = pytest.mark.skipif(not HAS_TOOLS, reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")


def quick_start_blocks() -> list[list[str]]:
    """The indented (4-space) blocks of README.md's Quick start section, each a list of lines."""
    text = README.read_text(encoding="utf-8")
    assert "\n## Quick start" in text, "README.md has no '## Quick start' section"
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in section.splitlines():
        if line.startswith("    "):
            current.append(line[4:].rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def readme_block(first_word: str) -> list[str]:
    found = [b for b in quick_start_blocks() if b[0].split()[0] == first_word]
    assert len(found) == 1, f"README.md's Quick start: {len(found)} sample blocks starting with '{first_word}'"
    return found[0]


def run(module: str, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_the_quick_start_has_both_samples() -> None:
    flash, table = readme_block("model"), readme_block("attack")
    assert flash[0].startswith(f"model    {MODEL}: ") and any(line.startswith("flash ") for line in flash)
    assert table[-2].startswith("chip vs reference: ") and table[-1].startswith("results: ")
    assert columns(table[0])[-1] == "median instr" and len(table) > 4


@pytest.fixture(scope="module")
def flash_output() -> list[str]:
    """`make flash` (without its dependency step): the default model on the default board."""
    if not HAS_TOOLS:
        pytest.skip("needs qemu-system-arm and gcc-arm-none-eabi (make deps)")
    return run("host.flash", "--board", BOARD, "--model", MODEL)


def without_timing_and_path(line: str) -> str:
    """The `flashed` line without its time and the checkout's directory."""
    line = re.sub(r" in [\d.]+ s$", "", line)
    return re.sub(r"\S*(build/flash/)", r"\1", line)


@needs_tools
def test_make_flash_prints_what_the_readme_shows(flash_output: list[str]) -> None:
    shown = readme_block("model")
    assert [without_timing_and_path(line) for line in flash_output] == [
        without_timing_and_path(line) for line in shown]


@needs_tools
@pytest.mark.qemu
def test_evaluate_num_50_prints_what_the_readme_shows(flash_output: list[str], tmp_path: Path) -> None:
    shown = readme_block("attack")
    printed = run("host.evaluate", "--num", "50", "--no-progress", "--out", str(tmp_path))
    start = next(i for i, line in enumerate(printed) if line.startswith("attack "))
    printed = printed[start:]
    assert len(printed) == len(shown), "\n".join(printed)
    *rows, agreement, results = printed
    *shown_rows, shown_agreement, shown_results = shown
    assert columns(rows[0]) == columns(shown_rows[0]) and columns(rows[1]) == columns(shown_rows[1])  # header
    for got, want in zip(rows[2:], shown_rows[2:], strict=True):
        got_cols, want_cols = columns(got), columns(want)
        assert got_cols[:-1] == want_cols[:-1], f"printed:\n{got}\nREADME:\n{want}"
        got_instr, want_instr = (int(c[-1].replace(",", "")) for c in (got_cols, want_cols))
        assert abs(got_instr - want_instr) <= MEDIAN_SLACK, f"printed:\n{got}\nREADME:\n{want}"
    assert agreement == shown_agreement
    suffix = " (metrics.json, report.md, predictions.npz, gallery.npz, report.html)"
    assert results.startswith("results: ") and results.endswith(suffix)
    assert shown_results.startswith("results: results/") and shown_results.endswith(suffix)

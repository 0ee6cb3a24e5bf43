"""CPU cycle models (host.core.timing): the cost syntax, the estimate's arithmetic, and bad tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.core.boards import load_board
from host.core.errors import UserError
from host.core.timing import Cost, is_instruction_counter, load_timing, timing_for


def test_cost_syntax() -> None:
    assert Cost.parse("1", "x") == Cost(1, 1, 0)
    assert Cost.parse("2+P", "x") == Cost(2, 2, 1)
    assert Cost.parse("1 + 2P", "x") == Cost(1, 1, 2)
    assert Cost.parse("2..12", "x") == Cost(2, 12, 0)
    for bad in ("", "P", "two", "12..2", 3):
        with pytest.raises(UserError):
            Cost.parse(bad, "boards/cpus/x.toml: cycles.alu")


def test_estimate_is_low_and_high_with_refills_ranges_and_wait_states(tmp_path: Path) -> None:
    table = tmp_path / "cpu.toml"
    table.write_text('pipeline_refill = [1, 3]\n[cycles]\nalu = "1"\nbranch = "1+P"\ndiv = "2..12"\n'
                     'load_multiple = "1"\nload_multiple_regs = "1"\nunaligned_penalty = "1"\n')
    timing = load_timing(table, "cpu")
    counts = {"alu": 10, "branch": 2, "div": 1, "load_multiple": 1, "load_multiple_regs": 4, "unaligned_penalty": 3,
              "read.flash": 5, "write.ram": 2, "fetch_bytes.flash": 30}
    estimate = timing.estimate(counts, {"flash": 2, "ram": 0})
    waits = 2 * 5 + 2 * 8   # 5 reads and ceil(30 / 4) = 8 fetched words in flash, 2 wait states each
    assert estimate.low == 10 + 2 * 2 + 2 + 1 + 4 + 3 + waits
    assert estimate.high == 10 + 2 * 4 + 12 + 1 + 4 + 3 + waits
    assert estimate.instructions == 10 + 2 + 1 + 1
    with pytest.raises(UserError, match="no cost for the plugin's counter 'store'"):
        timing.estimate({"store": 1})


def test_counters_that_are_not_instructions() -> None:
    assert is_instruction_counter("load_multiple") and is_instruction_counter("branch_cond_taken")
    for name in ("load_multiple_regs", "read.ram", "fetch_bytes.flash", "unaligned_penalty",
                 "address_dependency_penalty"):
        assert not is_instruction_counter(name)


def test_which_boards_have_a_model() -> None:
    m4 = timing_for(load_board("mps2-an386"))
    assert m4 is not None and m4.refill == (1, 3) and m4.costs["div"] == Cost(2, 12, 0)
    assert timing_for(load_board("netduinoplus2")) is not None
    assert timing_for(load_board("mps2-an500")) is None and timing_for(load_board("mps3-an547")) is None


def test_bad_tables_name_the_file(tmp_path: Path) -> None:
    table = tmp_path / "cpu.toml"
    table.write_text("pipeline_refill = [3, 1]\n[cycles]\nalu = \"1\"\n")
    with pytest.raises(UserError, match="pipeline_refill"):
        load_timing(table, "cpu")
    table.write_text("name = 'x'\n")
    with pytest.raises(UserError, match="missing the \\[cycles\\] table"):
        load_timing(table, "cpu")

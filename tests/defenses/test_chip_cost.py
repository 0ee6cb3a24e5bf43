"""`python -m host.defenses.chip_cost` at its boundary: bad boards and inputs are one error before any
output or build (the measurement on the chip itself: test_preprocess_chip.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL
from host.defenses import chip_cost


def _must_not_measure(*args: object, **kwargs: object) -> None:
    raise AssertionError("chip_cost went on to build and boot")


@pytest.mark.parametrize(("argv", "message"), [
    (["--board", "bogus"], "unknown board 'bogus'"),
    (["--board", "nucleo-f446re"], "board nucleo-f446re is not emulated: chip_cost boots the firmware in an emulator"),
    (["--inputs", "digits:0"], "bad --inputs 'digits:0'"),
    (["--inputs", "digits:abc"], "bad --inputs 'digits:abc'"),
    (["--inputs", "digits:-3"], "bad --inputs 'digits:-3'"),
    (["--inputs", "digits:3", "--num", "-1"], "bad --num -1"),
    (["--inputs", "{four}", "--num", "0"], "bad --num 0"),
    (["--inputs", "{empty}"], "bad --inputs '.*empty.npz': array 'x' holds no samples"),
])
def test_bad_board_or_inputs_fail_before_any_output(argv: list[str], message: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "four.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 8, 8, 1), np.float32))
    monkeypatch.setattr(chip_cost, "measure", _must_not_measure)
    argv = [a.format(four=tmp_path / "four.npz", empty=tmp_path / "empty.npz") for a in argv]
    with pytest.raises(UserError, match=message):
        chip_cost.main(["--model", str(DEFAULT_MODEL), "--stages", "squeeze:4", *argv])
    assert capsys.readouterr().out == ""  # not even the table header


def test_digits_inputs_are_the_first_n_of_the_test_split() -> None:
    batch = chip_cost.load_batch("digits:3", DEFAULT_MODEL, 0, (0.0, 1.0), None)
    assert batch.shape == (3, 8, 8, 1) and batch.dtype == np.int8


def test_help_says_the_default_inputs() -> None:
    assert "random:N (default random:10)" in " ".join(chip_cost.build_parser().format_help().split())

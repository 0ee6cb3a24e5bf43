"""host.bench_cluster: `simulate`'s list scheduling on a tiny synthetic journal, and `--help`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.bench_cluster import critical_path, main, read_journal, simulate, units_from
from host.study.journal import DB_NAME, Journal
from host.study.units import ChipRun, Crafted, HostRun

ATTACK = "attack-00-pgd-eps0"


def _journal(run_dir: Path, seconds: dict[str, float]) -> None:
    journal = Journal.start(run_dir / DB_NAME, "fingerprint", ["test"], resume=False)
    x = np.zeros((2, 4), np.float32)
    pred = {"float32": np.zeros(2, np.int64)}
    counts = np.full(2, -1, np.int64)
    try:
        for key, s in seconds.items():
            kind = key.split("/", 1)[0]
            result = (Crafted(x) if kind == "craft" else HostRun(pred, {}) if kind == "host"
                      else ChipRun(np.zeros((2, 1), np.uint8), counts, counts, counts) if kind == "chip" else b"model")
            journal.put(key, result, s, "test:1")
        journal.finish()
    finally:
        journal.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    # clean host 3 s; the attack's craft 2 s, then its host 1 s and chip 1 s (both need the craft)
    _journal(tmp_path, {"host/clean/0": 3.0, f"craft/{ATTACK}/0": 2.0, f"host/{ATTACK}/0": 1.0,
                        f"chip/int8/{ATTACK}/0": 1.0})
    return tmp_path


def test_simulate_makespan_on_one_and_two_workers(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = units_from(read_journal(run_dir)[0])
    assert [u.key for u in units] == ["host/clean/0", f"craft/{ATTACK}/0", f"host/{ATTACK}/0",
                                      f"chip/int8/{ATTACK}/0"]
    assert units[2].deps == (f"craft/{ATTACK}/0",) and units[3].deps == (f"craft/{ATTACK}/0",)
    assert simulate(units, 1, overhead=0).makespan == pytest.approx(7.0)
    # w0: clean host 0-3, chip 3-4; w1: craft 0-2, attack host 2-3
    assert simulate(units, 2, overhead=0).makespan == pytest.approx(4.0)
    assert simulate(units, 8, overhead=0).makespan == pytest.approx(3.0)
    # 0.5 s per unit: w0 clean 0-3.5, chip 3.5-5; w1 craft 0-2.5, host 2.5-3.5
    assert simulate(units, 1, overhead=0.5).makespan == pytest.approx(9.0)
    assert simulate(units, 2, overhead=0.5).makespan == pytest.approx(5.0)
    assert critical_path(units, overhead=0)[0] == pytest.approx(3.0)

    assert main(["simulate", str(run_dir), "--workers", "1,2", "--overhead", "0"]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 7.0 | 1.00× | 100% |" in out
    assert "| 2 | 4.0 | 1.75× | 88% |" in out


def test_sub_study_units_wait_for_their_training(tmp_path: Path) -> None:
    sub = "defense-pgd-at:clean"
    _journal(tmp_path, {"host/clean/0": 1.0, "train/pgd-at": 5.0, f"host/{sub}/0": 1.0, f"chip/int8/{sub}/0": 2.0})
    units = units_from(read_journal(tmp_path)[0])
    assert [u.key for u in units] == ["train/pgd-at", "host/clean/0", f"host/{sub}/0", f"chip/int8/{sub}/0"]
    assert units[2].deps == ("train/pgd-at",)
    # w0: train 0-5, sub chip 5-7; w1: clean 0-1, then idle until the training is done, sub host 5-6
    assert simulate(units, 2, overhead=0).makespan == pytest.approx(7.0)
    assert critical_path(units, overhead=0)[0] == pytest.approx(7.0)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "simulate" in out


def test_unsharded_units_of_a_study_and_its_sub_study(tmp_path: Path) -> None:
    # the journal of a run with a defended sub-study and QAT: gradient and qat units have no shard
    sub = "defense-pgd-at:"
    _journal(tmp_path, {"qat/w2a2": 4.0, "host/clean/0": 1.0, "gradient/misalignment": 2.0,
                        "train/pgd-at": 3.0, f"host/{sub}clean/0": 1.0, f"gradient/{sub}misalignment": 2.0})
    units = {u.key: u for u in units_from(read_journal(tmp_path)[0])}
    assert units["host/clean/0"].deps == ("qat/w2a2",) and units["gradient/misalignment"].deps == ("qat/w2a2",)
    assert units[f"gradient/{sub}misalignment"].deps == ("train/pgd-at",)
    assert units[f"gradient/{sub}misalignment"].scope == sub
    assert units["qat/w2a2"].deps == () and units["train/pgd-at"].deps == ()
    # w0: train 0-3, sub host 3-4, clean 4-5, sub gradient 5-7; w1: qat 0-4, gradient 4-6
    assert simulate(list(units.values()), 2, overhead=0).makespan == pytest.approx(7.0)

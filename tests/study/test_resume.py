"""Crash and resume of `python -m host.evaluate`, and the device pool.

A small real run (24 digits × clean, FGSM, PGD-4 = 72 chip inferences on QEMU) is the
baseline. Killing QEMU at seeded random points, killing the host (SIGKILL) and resuming, or
sharing the inputs over two emulators must give the same results: metrics.json (except the
run/timing block), predictions.npz and every stored output byte, with no inference missing or
duplicated in results.sqlite. The on-chip cost counter is the exception: an inference's SysTick
count can differ by ±1 tick between any two runs (the SysTick phase at the start of the
inference), so instruction medians are compared within one tick.

The pool and the database are also tested without QEMU (a fake backend that fails on cue).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from host.backends.backend import Inference
from host.backends.pool import BackendPool, PoolError
from host.core.paths import ROOT
from host.link.messages import DeviceError
from host.study.store import EvaluationRecord, ResultsDB

NUM = 24
SMALL = ["--num", str(NUM), "--eps", "0.1", "--attacks", "fgsm,pgd", "--attack-param", "pgd.max_iter=4",
         "--no-progress"]
TOTAL = 3 * NUM                  # chip inferences of SMALL
TICK = 40                        # instructions per SysTick tick on mps2-an386

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")


@pytest.fixture(scope="module", autouse=True)
def flashed_default_board() -> None:
    """The runs below evaluate the flashed board: flash the default model (a no-op when current)."""
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        return
    proc = subprocess.run([sys.executable, "-m", "host.flash"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- helpers


def evaluate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "host.evaluate", *args]


def run_module(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(evaluate_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def chip_rows(db_path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(db_path, timeout=1)) as db:
            return int(db.execute("SELECT COUNT(*) FROM inferences WHERE backend = 'chip'").fetchone()[0])
    except sqlite3.Error:
        return 0


def qemu_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == pid and comm.startswith("qemu-system"):
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def run_with_kills(out: Path, run_id: str, targets: list[int], *extra: str, kill_host: bool = False,
                   rng: np.random.Generator | None = None, timeout: float = 300,
                   seen: list[int] | None = None) -> subprocess.CompletedProcess:
    """Run SMALL; each time the database holds `target` chip rows, SIGKILL one emulator (or the host;
    its emulators' pids then go to `seen`)."""
    proc = subprocess.Popen(evaluate_cmd(*SMALL, "--out", str(out), "--run-id", run_id, *extra), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = out / run_id / "results.sqlite"
    pending = sorted(targets)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and pending and time.monotonic() < deadline:
            if db.exists() and chip_rows(db) >= pending[0]:
                if kill_host:
                    if seen is not None:
                        seen += qemu_children(proc.pid)
                    proc.send_signal(signal.SIGKILL)
                else:
                    qemus = qemu_children(proc.pid)
                    if qemus:
                        os.kill(qemus[int(rng.integers(len(qemus))) if rng is not None else 0], signal.SIGKILL)
                pending.pop(0)
            time.sleep(0.005)
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def metrics(run_dir: Path) -> dict:
    doc = json.loads((run_dir / "metrics.json").read_text())
    doc.pop("run")
    return doc


def assert_same_results(run_dir: Path, baseline: Path) -> None:
    """Equal results; instruction/tick medians within one tick (see the module docstring)."""
    got, want = metrics(run_dir), metrics(baseline)
    # Another engineer may re-flash the board between two runs of this module (each run pins its
    # own firmware): outputs must still agree byte for byte, costs only on the same firmware.
    same_firmware = got["config"].pop("firmware_sha256") == want["config"].pop("firmware_sha256")
    for a, b in zip(got["evaluations"], want["evaluations"], strict=True):
        a_instr, b_instr = a.pop("instructions_median"), b.pop("instructions_median")
        a_ticks, b_ticks = a.pop("ticks_median"), b.pop("ticks_median")
        if same_firmware:
            assert abs(a_instr - b_instr) <= TICK and abs(a_ticks - b_ticks) <= 1
    assert got == want
    preds, base = np.load(run_dir / "predictions.npz"), np.load(baseline / "predictions.npz")
    assert sorted(preds.files) == sorted(base.files)
    assert all(np.array_equal(preds[k], base[k]) for k in preds.files)

    def report(path: Path) -> str:
        text = re.sub(r"\d+ inferences in [\d.]+ s", "", (path / "report.md").read_text())
        text = re.sub(r"`[^`]*`$", "", text, count=1, flags=re.MULTILINE)            # the run id in the title
        return re.sub(r"\| [\d,]+ \|$", "| N |", text, flags=re.MULTILINE)          # median instructions

    assert report(run_dir) == report(baseline)
    mine, theirs = db_rows(run_dir), db_rows(baseline)
    assert mine.keys() == theirs.keys()
    for key, (output, ticks) in mine.items():
        assert output == theirs[key][0], key
        if ticks is not None and same_firmware:
            assert abs(ticks - theirs[key][1]) <= 1, key


def db_rows(run_dir: Path) -> dict[tuple[str, int, str], tuple[bytes, int | None]]:
    with contextlib.closing(sqlite3.connect(run_dir / "results.sqlite")) as db:
        rows = db.execute("SELECT eval_key, sample, backend, output, ticks FROM inferences").fetchall()
    return {(k, s, b): (bytes(o), t) for k, s, b, o, t in rows}


def assert_complete_db(run_dir: Path) -> None:
    """One row per evaluation × sample × backend: nothing missing, nothing twice; the run is finished."""
    with contextlib.closing(sqlite3.connect(run_dir / "results.sqlite")) as db:
        duplicates = db.execute("SELECT eval_key, sample, backend, COUNT(*) FROM inferences "
                                "GROUP BY eval_key, sample, backend HAVING COUNT(*) > 1").fetchall()
        per = dict(db.execute("SELECT backend, COUNT(*) FROM inferences GROUP BY backend").fetchall())
        keys = [k for (k,) in db.execute("SELECT key FROM evaluations ORDER BY position")]
        samples = {(k, b): sorted(s for (s,) in db.execute(
            "SELECT sample FROM inferences WHERE eval_key = ? AND backend = ?", (k, b)))
            for k in keys for b in ("float", "reference", "chip")}
        status = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0]
    assert duplicates == []
    assert keys == ["clean", "fgsm_eps0.1", "pgd_eps0.1"]
    assert per == {"float": TOTAL, "reference": TOTAL, "chip": TOTAL}
    assert all(s == list(range(NUM)) for s in samples.values())
    assert status == "finished"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    proc = run_module(*SMALL, "--out", str(out), "--run-id", "base")
    assert proc.returncode == 0, proc.stderr
    assert_complete_db(out / "base")
    # The real chip (QEMU) against TFLite Micro: every one of the 72 outputs byte for byte.
    assert f"chip vs reference: bit-exact ({TOTAL}/{TOTAL} identical)" in proc.stdout, proc.stdout
    doc = json.loads((out / "base/metrics.json").read_text())
    assert doc["config"]["backend"] == "device" and doc["summary"]["bit_exact"]
    assert doc["summary"]["inferences"] == TOTAL and doc["summary"]["mismatched_inferences"] == 0
    return out / "base"


# ---------------------------------------------------------------- real runs (QEMU)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("devices", [1, 2])
def test_emulator_killed_at_random_points(baseline: Path, tmp_path: Path, devices: int) -> None:
    rng = np.random.default_rng(20261124 + devices)
    targets = sorted(int(t) for t in rng.choice(np.arange(4, TOTAL - 8), size=3, replace=False))
    proc = run_with_kills(tmp_path, "killed", targets, "--devices", str(devices), rng=rng)
    assert proc.returncode == 0, proc.stderr
    restarts = proc.stderr.count("restarting it")
    assert 1 <= restarts <= 3, proc.stderr
    assert "Traceback" not in proc.stderr
    run = json.loads((tmp_path / "killed/metrics.json").read_text())["run"]
    assert run["device_restarts"] == restarts and run["devices"] == devices
    assert_same_results(tmp_path / "killed", baseline)
    assert_complete_db(tmp_path / "killed")


@needs_qemu
@pytest.mark.qemu
def test_host_killed_then_resumed(baseline: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    target = int(rng.integers(5, TOTAL - 10))
    emulators: list[int] = []
    proc = run_with_kills(tmp_path, "host", [target], "--devices", "2", kill_host=True, seen=emulators)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    assert len(emulators) == 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in emulators) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in emulators)  # no orphan emulators: they die with the host
    kept = chip_rows(tmp_path / "host/results.sqlite")
    assert target <= kept < TOTAL
    assert not (tmp_path / "host/metrics.json").exists()

    resumed = run_module("--resume", "host", "--out", str(tmp_path), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run host: {kept} chip inference(s) already" in resumed.stderr
    assert_same_results(tmp_path / "host", baseline)
    assert_complete_db(tmp_path / "host")
    run = json.loads((tmp_path / "host/metrics.json").read_text())["run"]
    assert run["sessions"] == 2 and run["argv"][:len(SMALL)] == SMALL and run["devices"] == 1
    assert sum(run["inferences_per_device"]) == TOTAL - kept  # the resumed session ran only what was missing


@needs_qemu
@pytest.mark.qemu
def test_restart_budget_then_resume(baseline: Path, tmp_path: Path) -> None:
    """Past --max-restarts the run stops with one clear error, keeps its rows and can be resumed."""
    proc = run_with_kills(tmp_path, "budget", [6, 20], "--max-restarts", "1")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "failed again after 1 emulator restart" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"--resume budget --out {tmp_path}" in proc.stderr
    assert 20 <= chip_rows(tmp_path / "budget/results.sqlite") < TOTAL

    resumed = run_module("--resume", "budget", "--out", str(tmp_path), "--no-progress", "--devices", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(tmp_path / "budget", baseline)
    assert_complete_db(tmp_path / "budget")


@needs_qemu
@pytest.mark.qemu
def test_two_devices_identical_to_one(baseline: Path, tmp_path: Path) -> None:
    proc = run_module(*SMALL, "--out", str(tmp_path), "--run-id", "pool", "--devices", "2", "--window", "2")
    assert proc.returncode == 0, proc.stderr
    assert_same_results(tmp_path / "pool", baseline)
    run = json.loads((tmp_path / "pool/metrics.json").read_text())["run"]
    assert run["devices"] == 2 and sum(run["inferences_per_device"]) == TOTAL
    assert min(run["inferences_per_device"]) > 0


# ---------------------------------------------------------------- --resume errors


def test_resume_unknown_run(tmp_path: Path) -> None:
    proc = run_module("--resume", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: --resume nope: no such run in {tmp_path}" in proc.stderr
    (tmp_path / "old").mkdir()
    proc = run_module("--resume", "old", "--out", str(tmp_path))
    assert "error: --resume old: " in proc.stderr and "has no results.sqlite" in proc.stderr


@needs_qemu
def test_resume_finished_run_and_reuse_of_its_id(baseline: Path) -> None:
    proc = run_module("--resume", "base", "--out", str(baseline.parent))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: --resume base: this run is already finished" in proc.stderr
    proc = run_module(*SMALL, "--out", str(baseline.parent), "--run-id", "base")
    assert proc.returncode == 2 and "error: run 'base' already exists" in proc.stderr
    assert "--resume base" in proc.stderr


def test_resume_conflicting_options(tmp_path: Path) -> None:
    config = {"model": "models/digits_cnn_int8.tflite", "float_model": "models/digits_cnn.keras"}
    from host import evaluate

    args = evaluate.build_parser().parse_args([*SMALL, "--backend", "reference"])
    stored = evaluate.config_json(evaluate.config_from_args(args))
    assert {k: stored[k] for k in config} == config
    db = ResultsDB.create(tmp_path / "r" / "results.sqlite", stored, SMALL)
    db.close()
    for extra, message in [(["--eps", "0.2"], "eps: run has [0.1], given [0.2]"),
                           (["--num", "5"], "num: run has 24, given 5"),
                           (["--attacks", "fgsm"], "--resume r: --attacks conflict(s) with the run's options"),
                           (["--attacks", "fgsm,pgd", "--seed", "3"], "seed: run has 0, given 3"),
                           (["--backend", "device"], "backend: run has 'reference'"),
                           (["--run-id", "other"], "--run-id other conflicts with --resume r")]:
        proc = run_module("--resume", "r", "--out", str(tmp_path), *extra)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr, proc.stderr
    # the same values spelled again are not a conflict: the run goes on and finishes. (On the reference
    # backend the "chip" is TFLite Micro itself, so its agreement with the reference proves nothing; what
    # this run guarantees is a complete, finished database and metrics. The chip's own bit-exactness is
    # checked on QEMU by the `baseline` fixture.)
    proc = run_module("--resume", "r", "--out", str(tmp_path), "--eps", "0.1", "--num", "24", "--backend",
                      "reference", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "resuming run r: 0 chip inference(s) already" in proc.stderr, proc.stderr
    assert_complete_db(tmp_path / "r")
    doc = json.loads((tmp_path / "r/metrics.json").read_text())
    assert doc["config"]["backend"] == "reference" and doc["summary"]["inferences"] == TOTAL
    assert [(e["attack"], e["eps"], e["n"]) for e in doc["evaluations"]] == [
        ("clean", 0.0, NUM), ("fgsm", 0.1, NUM), ("pgd", 0.1, NUM)]


def test_resume_detects_different_crafted_inputs(tmp_path: Path) -> None:
    """A resumed run re-crafts an unfinished evaluation and refuses to go on if it differs."""
    from host import evaluate

    args = evaluate.build_parser().parse_args(["--num", str(NUM), "--attacks", "fgsm", "--backend", "reference"])
    db = ResultsDB.create(tmp_path / "r" / "results.sqlite", evaluate.config_json(evaluate.config_from_args(args)),
                          [])
    db.add_evaluation(EvaluationRecord("clean", 0, "clean", 0.0, {}, NUM, "0" * 64, "0" * 64, 0.0, 0.0), b"")
    db.close()
    proc = run_module("--resume", "r", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "the inputs re-crafted for clean differ from the stored ones" in proc.stderr


# ---------------------------------------------------------------- the pool and the database, no QEMU


class FlakyBackend:
    """Doubles every input byte; raises DeviceError at the given global call numbers."""

    name = "flaky"
    description = "flaky test backend"

    def __init__(self, state: dict) -> None:
        self.state = state

    def run(self, x_q: np.ndarray) -> Inference:
        with self.state["lock"]:
            self.state["calls"] += 1
            call = self.state["calls"]
        if call in self.state["fail_at"]:
            raise DeviceError(f"simulated link loss at call {call}")
        return Inference(bytes((2 * np.asarray(x_q, dtype=np.int64) % 256).astype(np.uint8)), call, call)


def flaky_opener(state: dict):  # noqa: ANN201
    @contextlib.contextmanager
    def opener(slot: int) -> Iterator[FlakyBackend]:
        state["opened"] += 1
        yield FlakyBackend(state)

    return opener


def _state(fail_at: set[int]) -> dict:
    import threading

    return {"lock": threading.Lock(), "calls": 0, "fail_at": fail_at, "opened": 0}


@pytest.mark.parametrize("devices", [1, 3])
def test_pool_restarts_and_loses_nothing(devices: int) -> None:
    state = _state({5, 17, 18})
    items = [(i, np.full(4, i, dtype=np.int8)) for i in range(60)]
    got: dict[int, bytes] = {}
    with BackendPool(flaky_opener(state), devices=devices, max_restarts=3, log=lambda m: None) as pool:
        for batch in pool.run(items):
            for index, result in batch:
                assert index not in got
                got[index] = result.output
        assert pool.restarts == 3 and sum(pool.done_by) == 60
    assert sorted(got) == list(range(60))
    assert all(got[i] == bytes([(2 * i) % 256] * 4) for i in got)
    assert state["opened"] == devices + 3


def test_pool_gives_up_after_the_budget() -> None:
    state = _state({3, 4, 5})
    items = [(i, np.zeros(2, dtype=np.int8)) for i in range(20)]
    got = []
    with pytest.raises(PoolError, match="failed again after 2 emulator restart"), \
            BackendPool(flaky_opener(state), devices=1, max_restarts=2, log=lambda m: None) as pool:
        for batch in pool.run(items):
            got += [i for i, _ in batch]
    assert got == [0, 1]


def test_database_refuses_duplicates(tmp_path: Path) -> None:
    db = ResultsDB.create(tmp_path / "x" / "results.sqlite", {"a": 1}, ["--num", "1"])
    db.add_evaluation(EvaluationRecord("clean", 0, "clean", 0.0, {}, 2, "a", "b", 0.0, 0.0), b"\0\0")
    db.add("clean", [(0, "chip", b"\1", 3, 120)])
    with pytest.raises(sqlite3.IntegrityError):
        db.add("clean", [(1, "chip", b"\2", 3, 120), (0, "chip", b"\1", 3, 120)])
    assert db.done("clean", "chip") == {0}  # the failed batch left nothing behind
    db.close()
    again = ResultsDB.open(tmp_path / "x" / "results.sqlite")
    assert again.config == {"a": 1} and again.argv == ["--num", "1"] and not again.finished
    assert again.rows("clean", "chip")[0].instructions == 120


@needs_qemu
def test_resume_refuses_other_firmware(tmp_path: Path) -> None:
    """The board was re-flashed since the run started: a resumed run must not mix firmwares."""
    from host import evaluate

    args = evaluate.build_parser().parse_args(SMALL)
    db = ResultsDB.create(tmp_path / "r" / "results.sqlite", evaluate.config_json(evaluate.config_from_args(args)),
                          SMALL)
    db.set_meta("firmware_sha256", "ab" * 32)
    db.close()
    proc = run_module("--resume", "r", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: the board's firmware changed since the run started" in proc.stderr
    assert "tensorflow" not in proc.stderr.lower()

"""Crash and resume of `python -m host.evaluate`, and the device pool.

A small real flag run (60 digits × clean, FGSM, PGD-4 = 180 chip inferences on QEMU, planned as
units of 50 inputs: 2 shards per set, 6 chip units, 17 units with the gradient one) on the default executor (a
Dask LocalCluster, one worker process per core, each booting its own QEMU) is the baseline.
Killing QEMU (a descendant of the client: it runs in a worker process) at seeded points, killing
the client (SIGKILL) and resuming, or running on two workers or serially in one process must
give the same results: metrics.json (except the run/timing fields), predictions.npz, report.md
and every journaled chip output byte, with every planned unit in results.sqlite exactly once.
The on-chip cost counter is the exception: an inference's SysTick count can differ by ±1 tick
between any two runs (the SysTick phase at the start of the inference), so instruction and
tick medians are compared within one tick.

The pool, the journal and the resume checks are also tested without QEMU (a fake backend that
fails on cue; a journal written directly).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from host.core.errors import UserError
from host.core.paths import ROOT
from host.link.messages import DeviceError
from host.study.journal import Journal, experiment_fingerprint
from host.study.units import ChipRun

NUM = 60
SHARD = 50                       # inputs per unit of a flag run
SMALL = ["--num", str(NUM), "--eps", "0.1", "--attacks", "fgsm,pgd", "--attack-param", "pgd.max_iter=4",
         "--no-progress"]
SETS = ("clean", "attack-00-fgsm-eps0", "attack-01-pgd-eps0")
STARTS = tuple(range(0, NUM, SHARD))
PLANNED = sorted([*(f"craft/{s}/{a}" for s in SETS[1:] for a in STARTS),
                  *(f"host/{s}/{a}" for s in SETS for a in STARTS),
                  *(f"chip/int8/{s}/{a}" for s in SETS for a in STARTS), "gradient/misalignment"])
CHIP_UNITS = len(SETS) * len(STARTS)
TOTAL = 3 * NUM                  # chip inferences of SMALL
TICK = 40                        # instructions per SysTick tick on mps2-an386

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")


pytestmark = pytest.mark.usefixtures("flashed_default_board")   # the runs below evaluate the flashed board


# ---------------------------------------------------------------- helpers


def evaluate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "host.evaluate", *args]


def run_module(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(evaluate_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def journal_units(run_dir: Path) -> dict[str, bytes]:
    """key -> result (.npz bytes) of every journaled unit, read-only (the client may be writing)."""
    path = run_dir / "results.sqlite"
    if not path.is_file():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return {key: bytes(result) for key, result in db.execute("SELECT key, result FROM units")}
    except sqlite3.Error:
        return {}


def journal_meta(run_dir: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(f"file:{run_dir / 'results.sqlite'}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())


def chip_units_done(run_dir: Path) -> int:
    return sum(key.startswith("chip/") for key in journal_units(run_dir))


def assert_complete_journal(run_dir: Path) -> None:
    """Every planned unit journaled exactly once, nothing else; the run is finished."""
    path = run_dir / "results.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        keys = sorted(k for (k,) in db.execute("SELECT key FROM units"))
        kinds = {k: kind for k, kind in db.execute("SELECT key, kind FROM units")}
    assert keys == PLANNED
    assert all(kinds[k] == k.split("/", 1)[0] for k in keys)
    assert journal_meta(run_dir)["status"] == "finished"


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid` (children of any of its threads: QEMU is started by a worker
    process's pool thread), depth first."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in map(int, children.read_text().split()):
                    if child not in found:
                        found.append(child)
                        stack.append(child)
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def qemu_descendants(pid: int) -> list[int]:
    return sorted(p for p in descendants(pid) if comm(p).startswith("qemu-system") and alive(p))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def run_with_kills(out: Path, run_id: str, points: list[int], *extra: str, timeout: float = 400,
                   killed: list[list[int]] | None = None) -> subprocess.CompletedProcess:
    """Run SMALL; each time the journal holds `point` chip units, SIGKILL every QEMU then running
    (one per worker that booted its board), so that the next chip unit on any of them fails."""
    proc = subprocess.Popen(evaluate_cmd(*SMALL, "--out", str(out), "--run-id", run_id, *extra), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    pending = sorted(points)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and pending and time.monotonic() < deadline:
            if chip_units_done(out / run_id) >= pending[0]:
                qemus = qemu_descendants(proc.pid)
                if qemus:   # else: no board booted yet; kill the first one that is
                    for pid in qemus:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    if killed is not None:
                        killed.append(qemus)
                    pending.pop(0)
            time.sleep(0.005)
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def normalized(doc: dict) -> dict:
    """metrics.json without what differs between two runs of the same study: the run block, the
    per-evaluation seconds and the cost medians (compared separately, within one tick)."""
    doc = json.loads(json.dumps(doc))
    doc.pop("run")
    for evaluation in doc["evaluations"]:
        evaluation.pop("seconds", None)
        evaluation.pop("instructions_median")
        evaluation.pop("ticks_median")
        for model in evaluation.get("models", {}).values():
            model.pop("instructions_median", None)
    return doc


def assert_same_results(run_dir: Path, baseline: Path) -> None:
    """Equal results; instruction/tick medians within one tick (see the module docstring)."""
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, baseline))
    for a, b in zip(got["evaluations"], want["evaluations"], strict=True):
        assert abs(a["instructions_median"] - b["instructions_median"]) <= TICK
        assert abs(a["ticks_median"] - b["ticks_median"]) <= 1
    # NaN (an undefined cosine) is not equal to itself: compare the JSON text
    assert json.dumps(normalized(got), sort_keys=True) == json.dumps(normalized(want), sort_keys=True)
    preds, base = np.load(run_dir / "predictions.npz"), np.load(baseline / "predictions.npz")
    assert sorted(preds.files) == sorted(base.files)
    assert all(np.array_equal(preds[k], base[k]) for k in preds.files)

    def report(path: Path) -> str:
        text = re.sub(r"run `[^`]*`", "run", (path / "report.md").read_text())
        text = re.sub(r"wall time [\d.]+ s", "", text)
        return re.sub(r"\| [\d,]+ \|$", "| N |", text, flags=re.MULTILINE)          # median instructions

    assert report(run_dir) == report(baseline)
    mine, theirs = chip_results(run_dir), chip_results(baseline)
    assert mine.keys() == theirs.keys()
    for key, run in mine.items():
        assert run.output.tobytes() == theirs[key].output.tobytes(), key
        assert np.all(np.abs(run.ticks - theirs[key].ticks) <= 1), key


def chip_results(run_dir: Path) -> dict[str, ChipRun]:
    from host.study.units import from_npz

    return {k: from_npz("chip", v) for k, v in journal_units(run_dir).items() if k.startswith("chip/")}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    proc = run_module(*SMALL, "--out", str(out), "--run-id", "base")
    assert proc.returncode == 0, proc.stderr
    assert_complete_journal(out / "base")
    # The real chip (QEMU) against TFLite Micro: every one of the 180 outputs byte for byte.
    assert f"chip vs reference: bit-exact ({TOTAL}/{TOTAL} identical)" in proc.stdout, proc.stdout
    doc = json.loads((out / "base/metrics.json").read_text())
    assert doc["config"]["backend"] == "device" and doc["summary"]["bit_exact"]
    assert doc["summary"]["inferences"] == TOTAL and doc["summary"]["mismatched_inferences"] == 0
    assert doc["run"]["units"] == doc["run"]["units_run"] == len(PLANNED) and doc["run"]["sessions"] == 1
    assert doc["run"]["executor"].startswith("Dask LocalCluster") and doc["run"]["workers"] >= 1
    return out / "base"


# ---------------------------------------------------------------- real runs (QEMU)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("where", [("--workers", "1"), pytest.param(("--devices", "2"), marks=pytest.mark.slow)],
                         ids=["workers1", "devices2"])
def test_emulator_killed_at_random_points(baseline: Path, tmp_path: Path, where: tuple[str, str]) -> None:
    rng = np.random.default_rng(20261124 + int(where[1]))
    points = sorted(int(p) for p in rng.choice(np.arange(1, CHIP_UNITS - 1), size=2, replace=False))
    kills: list[list[int]] = []
    proc = run_with_kills(tmp_path, "killed", points, *where, killed=kills)
    assert proc.returncode == 0, (kills, proc.stderr)
    assert len(kills) == len(points), kills
    restarts = proc.stderr.count("restarting it")
    killed = sum(map(len, kills))
    # every kill is of a board that a later chip unit of its worker finds dead (one worker: each
    # kill; two workers: at least one of them, the other worker may have no chip unit left)
    assert 1 <= restarts <= killed, (kills, proc.stderr)
    if where == ("--workers", "1"):
        assert restarts == killed, (kills, proc.stderr)
    assert "Traceback" not in proc.stderr
    run = json.loads((tmp_path / "killed/metrics.json").read_text())["run"]
    assert run["workers"] == int(where[1]) and run["units_run"] == len(PLANNED)
    assert_same_results(tmp_path / "killed", baseline)
    assert_complete_journal(tmp_path / "killed")


@needs_qemu
@pytest.mark.qemu
def test_host_killed_then_resumed(baseline: Path, tmp_path: Path) -> None:
    """SIGKILL of the client: its workers and their emulators go with it, the journal keeps every
    unit it committed, and --resume runs only the others."""
    rng = np.random.default_rng(7)
    target = int(rng.integers(3, len(PLANNED) - 4))
    proc = subprocess.Popen(evaluate_cmd(*SMALL, "--out", str(tmp_path), "--run-id", "host", "--workers", "2"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    run_dir = tmp_path / "host"
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and len(journal_units(run_dir)) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        tree = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)    # the client only: what it started must not outlive it
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
        assert any(comm(p).startswith("qemu-system") for p in tree), [comm(p) for p in tree]
        deadline = time.monotonic() + 15
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [(p, comm(p)) for p in tree if alive(p)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)   # whatever is left of the run's session
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert orphans == []   # no orphan workers or emulators: they die with the client
    kept = journal_units(run_dir)
    assert target <= len(kept) < len(PLANNED)
    assert not (run_dir / "metrics.json").exists()

    resumed = run_module("--resume", "host", "--out", str(tmp_path), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(run_dir, baseline)
    assert_complete_journal(run_dir)
    after = journal_units(run_dir)
    assert all(after[key] == value for key, value in kept.items())   # journaled units are never redone
    run = json.loads((run_dir / "metrics.json").read_text())["run"]
    assert run["sessions"] == 2 and journal_meta(run_dir)["sessions"] == "2"
    assert run["argv"][:len(SMALL)] == SMALL
    assert run["units"] == len(PLANNED) and run["units_run"] == len(PLANNED) - len(kept)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_restart_budget_then_resume(baseline: Path, tmp_path: Path) -> None:
    """Past --max-restarts the run stops with one clear error, keeps its units and can be resumed."""
    proc = run_with_kills(tmp_path, "budget", [1, 2], "--max-restarts", "1", "--workers", "1")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "failed again after 1 emulator restart" in errors[0], proc.stderr
    assert f"--resume budget --out {tmp_path}" in proc.stderr
    assert 2 <= chip_units_done(tmp_path / "budget") < CHIP_UNITS
    assert journal_meta(tmp_path / "budget")["status"] == "running"

    resumed = run_module("--resume", "budget", "--out", str(tmp_path), "--no-progress", "--devices", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(tmp_path / "budget", baseline)
    assert_complete_journal(tmp_path / "budget")
    # the stop is a user error, not a crash: no traceback (neither ours nor a Dask worker's log)
    assert "Traceback" not in proc.stderr, proc.stderr


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_two_devices_identical_to_one(baseline: Path, tmp_path: Path) -> None:
    """Two workers (each its own QEMU), and every unit serially in this process: the baseline's results."""
    proc = run_module(*SMALL, "--out", str(tmp_path), "--run-id", "pool", "--devices", "2", "--window", "2")
    assert proc.returncode == 0, proc.stderr
    assert_same_results(tmp_path / "pool", baseline)
    run = json.loads((tmp_path / "pool/metrics.json").read_text())["run"]
    assert run["workers"] == 2 and run["units_run"] == len(PLANNED)
    with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'pool/results.sqlite'}?mode=ro", uri=True)) as db:
        assert len({w for (w,) in db.execute("SELECT worker FROM units")}) == 2   # both workers ran units

    proc = run_module(*SMALL, "--out", str(tmp_path), "--run-id", "serial", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert_same_results(tmp_path / "serial", baseline)
    run = json.loads((tmp_path / "serial/metrics.json").read_text())["run"]
    assert run["executor"] == "this process (serial, no Dask)" and run["units_run"] == len(PLANNED)


# ---------------------------------------------------------------- --resume errors


def test_resume_unknown_run(tmp_path: Path) -> None:
    proc = run_module("--resume", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: --resume nope: no run journal at {tmp_path / 'nope' / 'results.sqlite'}" in proc.stderr
    (tmp_path / "old").mkdir()
    proc = run_module("--resume", "old", "--out", str(tmp_path))
    assert proc.returncode == 2 and "error: --resume old: no run journal at" in proc.stderr


@needs_qemu
def test_resume_finished_run_and_reuse_of_its_id(baseline: Path) -> None:
    proc = run_module("--resume", "base", "--out", str(baseline.parent), "--workers", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: --resume: the run in {baseline} is already finished" in proc.stderr
    proc = run_module(*SMALL, "--out", str(baseline.parent), "--run-id", "base")
    assert proc.returncode == 2 and f"error: run 'base' already exists in {baseline.parent}" in proc.stderr
    assert "--resume base" in proc.stderr
    assert_complete_journal(baseline)   # untouched
    assert journal_meta(baseline)["sessions"] == "1"


def test_resume_conflicting_options(tmp_path: Path) -> None:
    """A resumed run keeps the options it started with: one that changes its work is refused."""
    journal = Journal.start(tmp_path / "r" / "results.sqlite", "0" * 64, [*SMALL, "--backend", "reference"],
                            resume=False)
    journal.close()
    for extra, named in [(["--num", "5"], "--num"),
                         (["--eps", "0.1"], "--eps"),          # even the run's own value: it is read back
                         (["--attacks", "fgsm", "--seed", "3"], "--attacks, --seed"),
                         (["--backend", "device"], "--backend"),
                         (["--dataset", "x.npz"], "--dataset"),
                         (["--cycles"], "--cycles"),           # counting cycles or not is the run's own too
                         (["--run-id", "other"], "--run-id")]:
        proc = run_module("--resume", "r", "--out", str(tmp_path), *extra)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"error: --resume r: {named} would change the run" in proc.stderr, proc.stderr
        assert "keeps its own options" in proc.stderr
    assert Journal.stored_argv(tmp_path / "r" / "results.sqlite", "r") == [*SMALL, "--backend", "reference"]


def test_resume_refuses_changed_files(tmp_path: Path) -> None:
    """The dataset (or the flashed firmware, below) changed since the run started: a resumed run
    must not mix its journaled units with new ones. Where/how options may be given."""
    from host import evaluate
    from host.core.data import digits_test_set

    digits = digits_test_set()
    data = tmp_path / "digits.npz"
    np.savez(data, x=digits.x[:20], y=digits.y[:20])
    argv = ["--num", "8", "--attacks", "none", "--backend", "reference", "--dataset", str(data), "--no-progress",
            "--out", str(tmp_path), "--run-id", "r"]
    experiment = evaluate.experiment_from_args(evaluate.build_parser().parse_args(argv))[0]
    journal = Journal.start(tmp_path / "r" / "results.sqlite", experiment_fingerprint(experiment), argv, resume=False)
    journal.close()
    np.savez(data, x=digits.x[1:21], y=digits.y[1:21])
    assert experiment_fingerprint(experiment) != journal_meta(tmp_path / "r")["fingerprint"]
    proc = run_module("--resume", "r", "--out", str(tmp_path), "--workers", "0", "--window", "2",
                      "--max-restarts", "5", "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "changed since the run" in proc.stderr and "error: --resume: " in proc.stderr, proc.stderr
    assert journal_meta(tmp_path / "r")["sessions"] == "1"


@needs_qemu
def test_flag_run_fingerprints_the_flashed_firmware(tmp_path: Path) -> None:
    """A board re-flashed since the run started changes the fingerprint a resume checks."""
    from host import evaluate
    from host.link.images import read_flashed

    experiment = evaluate.experiment_from_args(evaluate.build_parser().parse_args(SMALL))[0]
    assert experiment.chip_firmware == read_flashed("mps2-an386").elf
    firmware = tmp_path / "firmware.elf"
    shutil.copyfile(experiment.chip_firmware, firmware)
    moved = dataclasses.replace(experiment, chip_firmware=firmware)
    before = experiment_fingerprint(moved)
    assert experiment_fingerprint(moved) == before
    firmware.write_bytes(firmware.read_bytes() + b"\0")
    assert experiment_fingerprint(moved) != before


# ---------------------------------------------------------------- the pool and the journal, no QEMU


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


def test_journal_refuses_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "x" / "results.sqlite"
    journal = Journal.start(path, "f" * 64, ["--num", "1"], resume=False)
    run = ChipRun(np.array([[1, 2]], np.uint8), np.array([120]), np.array([3]), np.array([-1]))
    journal.put("chip/int8/clean/0", run, 0.5, "w")
    with pytest.raises(sqlite3.IntegrityError):
        journal.put("chip/int8/clean/0", run, 0.5, "w")
    assert journal.done_keys() == {"chip/int8/clean/0"}
    journal.close()
    with pytest.raises(UserError, match="already holds a run"):
        Journal.start(path, "f" * 64, ["--num", "1"], resume=False)
    with pytest.raises(UserError, match="changed since the run"):
        Journal.start(path, "e" * 64, [], resume=True)
    again = Journal.start(path, "f" * 64, [], resume=True)
    try:
        assert again.sessions == 2 and again.meta("status") == "running"
        assert Journal.stored_argv(path, "x") == ["--num", "1"]
        back = again.get("chip/int8/clean/0")
        assert back.output.tobytes() == b"\1\2" and back.instructions.tolist() == [120]
        again.finish()
    finally:
        again.close()
    with pytest.raises(UserError, match="already finished"):
        Journal.start(path, "f" * 64, [], resume=True)


def test_a_resumed_run_reads_its_trained_models_back(tmp_path: Path) -> None:
    """A trained defense's and a quantization-aware trained width's bytes come back from the journal as they
    went in (a resumed bit-width sweep read its QAT units back as an unknown kind until 2026-12-06)."""
    journal = Journal.start(tmp_path / "results.sqlite", "f" * 64, [], resume=False)
    try:
        for key in ("train/pgd-at", "qat/sim:w2a2e8-qat"):
            journal.put(key, key.encode() + bytes(range(256)), 1.0, "w")
            assert journal.get(key) == key.encode() + bytes(range(256))
    finally:
        journal.close()


def test_resuming_a_study_without_its_config_says_how(tmp_path: Path) -> None:
    """It said the config, models or dataset had changed: the run was a study, resumed with --config."""
    journal = Journal.start(tmp_path / "r" / "results.sqlite", "0" * 64,
                            ["--config", "configs/digits-quick.toml", "--quick"], resume=False)
    journal.close()
    proc = run_module("--resume", "r", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: --resume r: the run is a study, started with --config configs/digits-quick.toml --quick" \
        in proc.stderr, proc.stderr
    assert f"--config configs/digits-quick.toml --quick --resume r --out {tmp_path}" in proc.stderr

"""A study on real processes (docs/cluster.md): `python -m host.evaluate --config` on a Dask cluster
started by tests/support/dask_cluster.py, on a LocalCluster, and serially (`--workers 0`, the reference).

* a worker SIGKILLed mid-run (with the QEMU it booted): the run still finishes, with the serial
  run's units (same keys, no duplicates) and identical results;
* the client SIGKILLed mid-run (with its LocalCluster and QEMU): `--resume` computes only the
  missing units, keeps the journaled ones byte for byte, and ends with the serial run's results;
* a real board that no worker offers, and a scheduler that does not answer: one `error:` line,
  no traceback, no run directory.

Chip units boot QEMU (mps2-an386); the units' worker cache (firmware ELFs) is a per-test directory
($SLINGSHOT_WORKER_CACHE), so the QEMU processes of a test are recognised by that path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.support.dask_cluster import REPO, dask_cli, dask_processes

QEMU = "qemu-system-arm"
needs_dask = pytest.mark.skipif(dask_cli() is None, reason="no `dask` command (pip install distributed)")
needs_qemu = pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"no {QEMU} (make deps)")
RUN_TIMEOUT = 420          # seconds for one `python -m host.evaluate` run

CONFIG = """\
[experiment]
name = "cluster-test"
seed = 0

[model]
float = "{models}/digits_cnn.keras"
int8 = "{models}/digits_cnn_int8.tflite"
precisions = {precisions}

[dataset]
path = "builtin:digits-test"
num = 40
input_range = [0.0, 1.0]

[dataset.representative]
path = "builtin:digits-train"
num = 50

[chip]
board = "{board}"
precisions = {chip_precisions}

[cluster]
shard = 10

[[attack]]
name = "fgsm"
eps = [0.1, 0.2]

[[attack]]
name = "pgd"
eps = [0.1]
max_iter = 5
"""

# 4 sets (clean, fgsm × 2, pgd) × 4 shards: 16 host units, 12 craft units, 16 chip units per precision
UNITS = {"craft": 12, "host": 16, "chip": 32, "gradient": 1}


def write_config(directory: Path, board: str = "mps2-an386",
                 precisions: tuple[str, ...] = ("float32", "int16x8", "int8"),
                 chip_precisions: tuple[str, ...] = ("int8", "int16x8")) -> Path:
    path = directory / "study.toml"
    path.write_text(CONFIG.format(models=REPO / "models", board=board, precisions=json.dumps(list(precisions)),
                                  chip_precisions=json.dumps(list(chip_precisions))))
    return path


def environment(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    env["SLINGSHOT_WORKER_CACHE"] = str(cache)
    return env


def evaluate(config: Path, out: Path, run_id: str, *extra: str, cache: Path, timeout: float = RUN_TIMEOUT,
             resume: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m host.evaluate --config … --out … --run-id/--resume …` to completion."""
    proc = start(config, out, run_id, *extra, cache=cache, resume=resume)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stdout, stderr = proc.communicate()
        pytest.fail(f"host.evaluate took over {timeout} s\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def start(config: Path, out: Path, run_id: str, *extra: str, cache: Path,
          resume: bool = False) -> subprocess.Popen[str]:
    """The same, started in a session of its own (so its process group holds all it starts)."""
    args = [sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(out), "--no-progress",
            "--resume" if resume else "--run-id", run_id, *extra]
    return subprocess.Popen(args, cwd=REPO, env=environment(cache), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def succeeded(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def failed_cleanly(done: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line of a run that failed as a user error."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# ---------------------------------------------------------------- the journal


def read_rows(db: Path) -> dict[str, tuple]:
    """key -> (kind, seconds, worker, result) of every journaled unit, read-only (the client may be writing)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
        rows = connection.execute("SELECT key, kind, seconds, worker, result FROM units").fetchall()
    connection.close()
    return {key: tuple(rest) for key, *rest in rows}


def journal_count(db: Path) -> Counter[str]:
    """Units per kind in the journal so far (empty while it does not exist yet)."""
    if not db.is_file():
        return Counter()
    try:
        return Counter(row[0] for row in read_rows(db).values())
    except sqlite3.Error:        # being created
        return Counter()


def wait_for_units(db: Path, proc: subprocess.Popen[str], enough, timeout: float = 300) -> Counter[str]:
    """Poll the journal until `enough(counts)`; fail if the run ends (or times out) first."""
    deadline = time.monotonic() + timeout
    while True:
        counts = journal_count(db)
        if enough(counts):
            return counts
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before the journal held enough units: "
                        f"{dict(counts)}\n{stdout}\n{stderr}")
        if time.monotonic() > deadline:
            kill_group(proc)
            pytest.fail(f"the journal holds only {dict(counts)} after {timeout} s")
        time.sleep(0.2)


def npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def assert_same_results(rows: dict[str, tuple], reference: dict[str, tuple]) -> None:
    """Same unit keys and kinds as the serial run, and identical results (a chip's instruction and
    tick counts may differ by a SysTick tick between runs, so only its output bytes are compared)."""
    assert sorted(rows) == sorted(reference)
    assert Counter(r[0] for r in rows.values()) == Counter(r[0] for r in reference.values()) == Counter(UNITS)
    for key, (kind, _, _, result) in rows.items():
        got, want = npz(result), npz(reference[key][3])
        if kind == "chip":
            assert got["output"].dtype == want["output"].dtype == np.uint8, key
            assert got["output"].tobytes() == want["output"].tobytes(), key
            assert got["instructions"].shape == want["instructions"].shape, key
            continue
        assert sorted(got) == sorted(want), key
        for name in want:
            assert got[name].dtype == want[name].dtype, (key, name)
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{key}: {name}")


def accuracies(metrics_path: Path) -> dict[tuple, float | None]:
    document = json.loads(metrics_path.read_text())
    return {(e["attack"], e["eps"], model): m["accuracy"]
            for e in document["evaluations"] for model, m in e["models"].items()}


def qemu_of(cache: Path) -> list[psutil.Process]:
    """Running QEMU processes booted from an ELF in `cache` (this test's)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == QEMU and any(str(cache) in arg for arg in p.info["cmdline"] or []) \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


# ---------------------------------------------------------------- the serial reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study run serially (`--workers 0`): its journal rows and its metrics.json."""
    if shutil.which(QEMU) is None:
        pytest.skip(f"no {QEMU} (make deps)")
    tmp = tmp_path_factory.mktemp("serial")
    config = write_config(tmp)
    done = evaluate(config, tmp / "out", "serial", "--workers", "0", cache=tmp / "cache")
    succeeded(done)
    run = tmp / "out" / "serial"
    return {"rows": read_rows(run / "results.sqlite"), "metrics": run / "metrics.json"}


# ---------------------------------------------------------------- tests


@pytest.mark.slow
@needs_dask
@needs_qemu
def test_a_study_on_a_real_dask_cluster_survives_a_killed_worker(tmp_path, reference) -> None:
    config, out, cache = write_config(tmp_path), tmp_path / "out", tmp_path / "cache"
    db = out / "d" / "results.sqlite"
    with dask_processes(tmp_path / "cluster", workers=2, env={"SLINGSHOT_WORKER_CACHE": str(cache)}) as cluster:
        proc = start(config, out, "d", "--scheduler", cluster.address, cache=cache)
        try:
            counts = wait_for_units(db, proc, lambda c: c["chip"] >= 2 and sum(c.values()) >= 10)
            # the victim: a worker that ran a chip unit, so it holds a booted QEMU
            pids = {int(row[2].rsplit(":", 1)[1]) for row in read_rows(db).values() if row[0] == "chip"}
            victim = next(i for i, w in enumerate(cluster.workers) if w.pid in pids)
            booted = [c for c in psutil.Process(cluster.workers[victim].pid).children(recursive=True)
                      if c.name() == QEMU]
            assert booted, "the worker that ran a chip unit has no QEMU child"
            assert sum(counts.values()) < sum(UNITS.values()), "the run finished before a worker could be killed"
            cluster.kill_worker(victim)               # raises if the worker or its QEMU survives
            assert not [p.pid for p in booted if _alive(p)]
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                kill_group(proc)
                proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    succeeded(done)
    rows = read_rows(db)
    assert_same_results(rows, reference["rows"])
    survivor = next(w.pid for i, w in enumerate(cluster.workers) if i != victim)
    assert any(int(r[2].rsplit(":", 1)[1]) == survivor for r in rows.values())
    assert accuracies(out / "d" / "metrics.json") == accuracies(reference["metrics"])


@pytest.mark.slow
@needs_qemu
def test_a_killed_client_resumes_with_only_the_missing_units(tmp_path, reference) -> None:
    pytest.importorskip("distributed")
    config, out, cache = write_config(tmp_path), tmp_path / "out", tmp_path / "cache"
    db = out / "r" / "results.sqlite"
    proc = start(config, out, "r", "--workers", "2", cache=cache)
    try:
        wait_for_units(db, proc, lambda c: c["chip"] >= 2 and sum(c.values()) >= 10)
        group = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert qemu_of(cache), "no QEMU running for the run's chip units"
        kill_group(proc)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            kill_group(proc)
        proc.communicate()
    # the client, its LocalCluster's processes and their QEMU all die with the process group
    deadline = time.monotonic() + 10
    while (qemu_of(cache) or any(_alive(p) for p in group)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not qemu_of(cache), [p.info["cmdline"] for p in qemu_of(cache)]
    assert not [p.pid for p in group if _alive(p)]

    journaled = read_rows(db)                  # what the killed client had committed
    assert 0 < len(journaled) < sum(UNITS.values())
    done = evaluate(config, out, "r", "--workers", "2", cache=cache, resume=True)
    succeeded(done)
    rows = read_rows(db)
    assert {key: rows[key] for key in journaled} == journaled       # byte for byte, seconds and worker too
    assert_same_results(rows, reference["rows"])
    document = json.loads((out / "r" / "metrics.json").read_text())
    assert document["run"]["units"] == sum(UNITS.values())
    assert document["run"]["units_run"] == sum(UNITS.values()) - len(journaled)
    assert accuracies(out / "r" / "metrics.json") == accuracies(reference["metrics"])
    assert not qemu_of(cache)



@needs_qemu
@needs_dask
def test_ctrl_c_in_the_terminal_stops_a_local_cluster_run_cleanly(tmp_path) -> None:
    """Ctrl-C signals the terminal's whole process group: its LocalCluster workers printed KeyboardInterrupt
    tracebacks, and QEMU died under a chip unit (the worker then restarted it) while the command stopped."""
    config, out, cache = write_config(tmp_path, precisions=("float32", "int8"), chip_precisions=("int8",)), \
        tmp_path / "out", tmp_path / "cache"
    args = [sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(out), "--no-progress",
            "--run-id", "c", "--workers", "1"]
    proc = subprocess.Popen(args, cwd=REPO, env=environment(cache), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,   # a terminal's job:
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C not ignored
    try:
        wait_for_units(out / "c" / "results.sqlite", proc, lambda c: c["chip"] >= 1)
        assert qemu_of(cache), "no QEMU running for the run's chip units"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "restarting it" not in stderr, stderr
    assert "continue with: python -m host.evaluate" in stderr, stderr
    deadline = time.monotonic() + 10
    while qemu_of(cache) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not qemu_of(cache)

@needs_dask
def test_a_board_no_worker_offers_fails_before_any_run_directory(tmp_path) -> None:
    config = write_config(tmp_path, board="nucleo-l4r5zi", precisions=("float32", "int8"), chip_precisions=("int8",))
    out = tmp_path / "out"
    with dask_processes(tmp_path / "cluster", workers=1) as cluster:
        done = evaluate(config, out, "b", "--scheduler", cluster.address, cache=tmp_path / "cache", timeout=180)
    error = failed_cleanly(done)
    assert "nucleo-l4r5zi" in error and cluster.address in error, error
    assert '--resources "nucleo-l4r5zi=1"' in done.stderr, done.stderr     # the fix
    assert not (out / "b").exists()


def test_a_worker_that_cannot_start_qemu_fails_before_any_run_directory(tmp_path) -> None:
    config = write_config(tmp_path, precisions=("float32", "int8"), chip_precisions=("int8",))
    out = tmp_path / "out"
    no_qemu = {"PATH": str(Path(sys.executable).parent)}     # Python and dask only: no qemu-system-arm
    with dask_processes(tmp_path / "cluster", workers=2, worker_env={1: no_qemu}) as cluster:
        done = evaluate(config, out, "q", "--scheduler", cluster.address, cache=tmp_path / "cache", timeout=180)
    error = failed_cleanly(done)
    assert "cannot start qemu-system-arm" in error, error
    assert "qemu-system-arm" in done.stderr and "make deps" in done.stderr, done.stderr     # the fix
    assert not (out / "q").exists()


def test_a_scheduler_that_does_not_answer_is_one_error_line(tmp_path) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]               # closed again: nothing listens there
    address = f"tcp://127.0.0.1:{port}"
    config = write_config(tmp_path, precisions=("float32", "int8"), chip_precisions=("int8",))
    out = tmp_path / "out"

    malformed = evaluate(config, out, "m", "--scheduler", address.removeprefix("tcp://"), cache=tmp_path / "cache",
                         timeout=120)
    assert "not a Dask scheduler address" in failed_cleanly(malformed)
    done = evaluate(config, out, "n", "--scheduler", address, cache=tmp_path / "cache", timeout=120)
    error = failed_cleanly(done)
    assert address in error and "does not answer" in error, error
    assert not out.exists()


# A `dask scheduler` in a Python that has distributed but not this checkout: site-packages appended to the path
# without its .pth files (python -S), so the editable install of slingshot is not there.
NO_SLINGSHOT_SCHEDULER = """\
import sys, sysconfig
sys.path.append(sysconfig.get_paths()["purelib"])
from distributed.cli.dask_scheduler import main
sys.argv = ["dask-scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--dashboard-address", "127.0.0.1:0", "--scheduler-file", sys.argv[1]]
main()
"""


@needs_dask
def test_a_scheduler_that_cannot_import_slingshot_is_one_error_line(tmp_path) -> None:
    """Dask's scheduler unpickles the units: without slingshot it failed the first unit with Dask's traceback."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(tmp_path / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen([sys.executable, "-S", "-c", NO_SLINGSHOT_SCHEDULER, str(scheduler_file)],
                                     cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and scheduler.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)   # the file may be written, not yet complete
        address = json.loads(scheduler_file.read_text())["address"]
        config = write_config(tmp_path, precisions=("float32", "int8"), chip_precisions=("int8",))
        done = evaluate(config, tmp_path / "out", "s", "--scheduler", address, cache=tmp_path / "cache", timeout=120)
    finally:
        kill_group(scheduler)
    error = failed_cleanly(done)
    assert f"the Dask scheduler at {address} cannot import slingshot" in error, error
    assert "No module named 'host'" in error and "pip install -e ." in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

"""A real Dask cluster on localhost for tests: a `dask scheduler` and N `dask worker` processes.

    with dask_processes(tmp_path, workers=2, resources={1: "nucleo-l4r5zi=1"},
                        worker_env={1: {"SLINGSHOT_BOARD_PORTS": "nucleo-l4r5zi=/dev/ttyACM0"}}) as cluster:
        with distributed.Client(cluster.address) as client:
            ...
            cluster.kill_worker(0)          # SIGKILL the worker and everything it started

Each process is started through the `dask` command line (the one next to this Python, else the
one on PATH) in its own session (process group), so `kill_worker` kills the worker and the
children it started (e.g. QEMU) and no nanny restarts it. Workers run with `--nworkers 1
--nthreads 1 --no-nanny`, one thread for OpenMP/TensorFlow, and `/work/main` (the checkout) on
PYTHONPATH. Logs go to `<tmp>/dask-logs/`; their tails are printed when startup or the body fails.
Teardown terminates everything, kills leftovers and fails when a process it started survives.

The probe functions below (`worker_identity`, `slow_identity`) are defined here, not in a test
module, because workers import a submitted function's module by name: `tests.support.dask_cluster`
is importable from the checkout, a pytest test module (imported by its basename) is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]

#: set in every worker's environment (before `env` and `worker_env`)
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


def dask_cli() -> str | None:
    """The `dask` command of this Python's environment, else the one on PATH, else None."""
    beside = Path(sys.executable).parent / "dask"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("dask")


@dataclass
class DaskProcesses:
    """The running cluster, as yielded by `dask_processes`."""

    address: str                              # tcp://127.0.0.1:PORT
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]           # index i is the worker named w{i}
    names: list[str]
    log_dir: Path
    _seen: dict[int, psutil.Process] = field(default_factory=dict, repr=False)

    def log(self, name: str) -> Path:
        """The log file of `scheduler` or `w{i}`."""
        return self.log_dir / f"{name}.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of every log, for a failure message."""
        parts = []
        for name in ["scheduler", *self.names]:
            path = self.log(name)
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            parts.append(f"----- {path} (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(parts)

    def worker_addresses(self, client) -> dict[str, str]:
        """Worker name (`w0`, …) → its address, from the scheduler."""
        info = client.run_on_scheduler(_worker_names)
        return {name: addr for addr, name in info.items()}

    def kill_worker(self, i: int, timeout: float = 10.0) -> None:
        """SIGKILL worker `i`, its process group and every descendant it started; wait until all are gone."""
        proc = self.workers[i]
        procs = self._tree(proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)     # start_new_session: pgid == pid
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait(timeout=timeout)
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        if alive:
            raise RuntimeError(f"w{i}: still alive after SIGKILL: {[p.pid for p in alive]}")

    def _tree(self, pid: int) -> list[psutil.Process]:
        """`pid` and its descendants now (remembered, so teardown also checks ones that left the group)."""
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            self._seen.setdefault(p.pid, p)
        return procs

    def _all_procs(self) -> list[subprocess.Popen]:
        return [*self.workers, self.scheduler]

    def _shutdown(self, timeout: float = 15.0) -> list[psutil.Process]:
        """Terminate workers, then the scheduler; kill leftovers; return the processes still alive."""
        for popen in self._all_procs():
            self._tree(popen.pid)
        for group in (self.workers, [self.scheduler]):
            for popen in group:
                if popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for popen in group:
                try:
                    popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait(timeout=timeout)
        # descendants that outlived their parent (or left its process group)
        leftovers = [p for p in self._seen.values() if _alive(p)]
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                p.kill()
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        return [p for p in alive if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _worker_names(dask_scheduler) -> dict[str, str]:
    return {addr: str(ws.name) for addr, ws in dask_scheduler.workers.items()}


@contextlib.contextmanager
def dask_processes(tmp: Path, workers: int = 2, *, resources: Mapping[int, str] | None = None,
                   env: Mapping[str, str] | None = None, worker_env: Mapping[int, Mapping[str, str]] | None = None,
                   timeout: float = 60.0) -> Iterator[DaskProcesses]:
    """Start a scheduler and `workers` workers on 127.0.0.1 and wait until all are connected.

    tmp:        directory for the scheduler file, logs (`dask-logs/`) and worker directories
    resources:  worker index → `--resources` value, e.g. {1: "nucleo-l4r5zi=1"}
    env:        added to every worker's environment
    worker_env: worker index → added to that worker's environment (after `env`)
    timeout:    seconds for the scheduler file and for all workers to connect
    """
    from distributed import Client  # import here: collecting tests must not need `distributed`

    cli = dask_cli()
    if cli is None:
        raise FileNotFoundError("no `dask` command (pip install distributed)")
    tmp = Path(tmp)
    log_dir = tmp / "dask-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    scheduler_file = tmp / "dask-scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    resources, worker_env = dict(resources or {}), dict(worker_env or {})
    names = [f"w{i}" for i in range(workers)]

    def spawn(args: list[str], name: str, environ: dict[str, str]) -> subprocess.Popen:
        with open(log_dir / f"{name}.log", "wb") as log:   # the child keeps its own descriptor
            return subprocess.Popen([cli, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=environ, cwd=tmp, start_new_session=True)

    base_env = dict(os.environ)
    base_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), base_env.get("PYTHONPATH", "")] if p)
    # --no-dashboard only drops the Bokeh pages: the scheduler's HTTP server (health, metrics) still
    # listens on 0.0.0.0:8787 unless given an address, so bind it to a free local port.
    scheduler = spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                       "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
                      "scheduler", base_env)
    cluster = DaskProcesses(address="", scheduler=scheduler, workers=[], names=names, log_dir=log_dir)
    ok = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            if scheduler_file.exists():
                with contextlib.suppress(json.JSONDecodeError):       # written, maybe not yet complete
                    cluster.address = json.loads(scheduler_file.read_text())["address"]
                    break
            if scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scheduler file {scheduler_file} after {timeout} s")
            time.sleep(0.1)

        worker_base = base_env | WORKER_ENV | dict(env or {})
        for i, name in enumerate(names):
            args = ["worker", cluster.address, "--name", name, "--nworkers", "1", "--nthreads", "1", "--no-nanny",
                    "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                    "--local-directory", str(tmp / f"dask-{name}"), "--death-timeout", str(int(timeout))]
            if i in resources:
                args += ["--resources", resources[i]]
            cluster.workers.append(spawn(args, name, worker_base | dict(worker_env.get(i, {}))))

        with Client(cluster.address, timeout=timeout) as client:
            while len(client.nthreads()) < workers:
                for name, popen in zip(names, cluster.workers, strict=True):
                    if popen.poll() is not None:
                        raise RuntimeError(f"dask worker {name} exited with {popen.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(client.nthreads())} of {workers} workers after {timeout} s")
                time.sleep(0.1)
        for popen in cluster._all_procs():
            cluster._tree(popen.pid)
        yield cluster
        ok = True
    except BaseException:
        print(cluster.log_tail(), file=sys.stderr)
        raise
    finally:
        alive = cluster._shutdown()
        if alive and ok:
            raise RuntimeError(f"processes left after teardown: {[(p.pid, p.name()) for p in alive]}\n"
                               + cluster.log_tail())


# ----- probes run on the workers (importable as tests.support.dask_cluster) -----

def worker_identity() -> dict:
    """Where this task ran: worker name, pid, and the environment the helper sets."""
    from distributed import get_worker

    return {
        "name": str(get_worker().name),
        "pid": os.getpid(),
        "env": {k: os.environ.get(k) for k in [*WORKER_ENV, "SLINGSHOT_BOARD_PORTS"]},
    }


def slow_identity(started_dir: str, seconds: float) -> dict:
    """Mark `started_dir/<worker name>` as started, sleep `seconds`, then return `worker_identity()`."""
    from distributed import get_worker

    Path(started_dir, str(get_worker().name)).write_text(str(os.getpid()))
    time.sleep(seconds)
    return worker_identity()


def spawn_child(new_session: bool = False, seconds: int = 600) -> int:
    """Start `sleep seconds` from the worker (a stand-in for QEMU), optionally in its own session; its pid."""
    return subprocess.Popen(["sleep", str(seconds)], start_new_session=new_session,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid

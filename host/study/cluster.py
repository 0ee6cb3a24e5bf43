"""Where a run's units execute: a Dask distributed cluster (docs/cluster.md), or this process.

* `open_executor(workers=None)`: a `LocalCluster` sized to the cores this process may use (one
  worker process per core, one thread each, TensorFlow's thread pools set to one), started and
  stopped here;
* `open_executor(scheduler="tcp://HOST:8786")`: an existing cluster (`dask scheduler` plus
  `dask worker` on as many machines as a lab has, or dask-jobqueue on Slurm);
* `open_executor(workers=0)`: every unit in this process, one after the other (no Dask).

Units whose board is this process's own link (`--port`, `--place`) run in a thread of this
process; a unit on a real board attached to some worker asks for that board as a Dask worker
resource. The client (this process) is the only writer of the results: it reads results as they
complete, in any order.

Imports: host.core, host.study.units.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from host.core.errors import UserError
from host.study.units import close_worker_state, warm_worker

THREAD_ENV = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "3"}
CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 30


@dataclass
class Handle:
    """A submitted unit: its key, and the Dask (or local) future computing it."""

    key: str
    future: Any = None
    thunk: Callable[[], Any] | None = field(default=None, repr=False)


class SerialExecutor:
    """Every unit in this process, in submission order (`--workers 0`; the reference for tests)."""

    description = "this process (serial, no Dask)"
    dashboard = None
    workers = 1

    def __init__(self) -> None:
        self._results: dict[str, Any] = {}

    def share(self, value: Any) -> Any:
        return value

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, resources: dict[str, int] | None = None,
               local: bool = False, priority: int = 0) -> Handle:
        return Handle(key, thunk=lambda: fn(*(self._value(a) for a in args)))

    def _value(self, arg: Any) -> Any:
        if isinstance(arg, Handle):
            outcome = self._results[arg.key]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return arg

    def completed(self, handles: Iterable[Handle]) -> Iterator[tuple[Handle, Any]]:
        for handle in handles:
            try:
                outcome = handle.thunk() if handle.thunk is not None else None
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:  # noqa: BLE001  (the caller decides what a failed unit means)
                outcome = err
            self._results[handle.key] = outcome
            yield handle, outcome

    def warm(self) -> None:
        return None

    def check_resources(self, resources: set[str]) -> None:
        missing = sorted(resources)
        if missing:
            raise UserError(f"no worker offers board(s) {', '.join(missing)}: --workers 0 runs on this machine only",
                            hint="pass --port URL for a board attached here, or run on a cluster whose workers "
                                 "declare it (docs/cluster.md)")

    def check_emulators(self, programs: set[str]) -> None:
        missing = sorted(p for p in programs if shutil.which(p) is None)
        if missing:
            raise UserError(f"{', '.join(missing)} not found on this machine: the emulated board cannot boot",
                            hint="run `make deps` (Debian package qemu-system-arm)")

    def cancel(self) -> None:
        return None

    def close(self) -> None:
        return None


class DaskExecutor:
    """Units on a Dask distributed cluster; units on this process's own link in a local thread."""

    def __init__(self, client: Any, cluster: Any = None) -> None:
        self.client, self.cluster = client, cluster
        self._local = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-board")
        self._done: queue.Queue[Handle] = queue.Queue()
        self._handles: list[Handle] = []
        self._arrived: dict[str, Handle] = {}
        address = client.scheduler.address
        self.description = (f"Dask LocalCluster, {self.workers} worker process(es) × 1 thread" if cluster is not None
                            else f"Dask cluster {address}, {self.workers} worker(s)")
        self.dashboard = client.dashboard_link

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def share(self, value: Any) -> Any:
        """Sent to the workers once (by content hash), then passed to units as a future."""
        return self.client.scatter(value, hash=True, broadcast=False)

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, resources: dict[str, int] | None = None,
               local: bool = False, priority: int = 0) -> Handle:
        """`priority`: among ready units, Dask starts the higher first (the long ones, so no worker is left
        alone with one at the end)."""
        handle = Handle(key)
        if local:
            handle.future = self._local.submit(lambda: fn(*(_resolve(a) for a in args)))
        else:
            handle.future = self.client.submit(fn, *(a.future if isinstance(a, Handle) else a for a in args),
                                               key=key, resources=resources, priority=priority, pure=False,
                                               retries=0)
        handle.future.add_done_callback(lambda _f, h=handle: self._done.put(h))
        self._handles.append(handle)
        return handle

    def completed(self, handles: Iterable[Handle]) -> Iterator[tuple[Handle, Any]]:
        """The handles' outcomes as they finish. One is taken from the arrivals only as it is yielded, so a
        caller may stop iterating and ask again (with more handles) without losing any."""
        waiting = {h.key for h in handles}
        while waiting:
            key = next((k for k in self._arrived if k in waiting), None)
            if key is None:
                handle = self._done.get()
                self._arrived[handle.key] = handle   # perhaps another caller's: kept until asked for
                continue
            handle = self._arrived.pop(key)
            waiting.discard(key)
            yield handle, _outcome(handle.future)

    def warm(self) -> None:
        """Each worker loads TensorFlow now, while the client prepares the run (not at its first unit)."""
        for address in self.client.scheduler_info(n_workers=-1)["workers"]:
            self.client.submit(warm_worker, key=f"slingshot-warm-{address}", workers=[address], pure=False)

    def check_resources(self, resources: set[str]) -> None:
        offered: set[str] = set()
        for worker in self.client.scheduler_info(n_workers=-1)["workers"].values():
            offered |= {name for name, count in worker.get("resources", {}).items() if count >= 1}
        missing = sorted(resources - offered)
        if missing:
            raise UserError(f"no worker of {self.client.scheduler.address} offers board(s) {', '.join(missing)}",
                            hint=f'start a worker on the board\'s machine with --resources "{missing[0]}=1" '
                                 "(docs/cluster.md, \"Real boards\")")

    def check_emulators(self, programs: set[str]) -> None:
        if not programs:
            return
        found = self.client.run(_which, sorted(programs))
        for worker, missing in sorted(found.items()):
            if missing:
                raise UserError(f"worker {worker} cannot start {', '.join(missing)}: not installed on its machine",
                                hint="install qemu-system-arm there (`make deps`), or stop that worker")

    def cancel(self) -> None:
        futures = [h.future for h in self._handles if not isinstance(h.future, Future)]
        with contextlib.suppress(Exception):
            self.client.cancel(futures, force=True)
        for handle in self._handles:
            if isinstance(handle.future, Future):
                handle.future.cancel()

    def close(self) -> None:
        self._local.shutdown(wait=False, cancel_futures=True)
        if self.cluster is not None:   # our own workers: stop their emulators first, so they exit at once
            with contextlib.suppress(Exception):
                self.client.run(close_worker_state, wait=True)
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=20)


def _which(programs: list[str]) -> list[str]:
    return [p for p in programs if shutil.which(p) is None]


def _resolve(arg: Any) -> Any:
    if isinstance(arg, Handle):
        return arg.future.result()
    if type(arg).__name__ == "Future" and hasattr(arg, "key"):   # a Dask future (scattered data)
        return arg.result()
    return arg


def _outcome(future: Any) -> Any:
    try:
        return future.result()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001
        return err


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def check_where(scheduler: str | None, workers: int | None) -> None:
    """An existing cluster (--scheduler) or one this command starts (--workers N), not both."""
    if scheduler is not None and workers is not None:
        raise UserError("--scheduler and --workers both say where to run",
                        hint="--workers sizes the cluster this command starts; an existing cluster has its own")


@contextlib.contextmanager
def open_executor(scheduler: str | None = None, workers: int | None = None,
                  log: Callable[[str], None] | None = None) -> Iterator[SerialExecutor | DaskExecutor]:
    """The executor for a run (module docstring); closed (a LocalCluster stopped) on exit."""
    say = log or (lambda message: print(message, file=sys.stderr))
    check_where(scheduler, workers)
    if scheduler is None and workers == 0:
        yield SerialExecutor()
        return
    executor = _connect(scheduler) if scheduler is not None else _local_cluster(workers or default_workers())
    try:
        say(f"units run on {executor.description}; dashboard: {executor.dashboard}")
        yield executor
    finally:
        executor.close()


def _connect(address: str) -> DaskExecutor:
    from distributed import Client

    if not address.startswith(("tcp://", "tls://")):
        raise UserError(f"--scheduler {address}: not a Dask scheduler address", hint="e.g. tcp://10.0.0.5:8786")
    hint = (f"start it with `dask scheduler` and its workers with `dask worker {address}` (docs/cluster.md), "
            "or drop --scheduler to run on this machine")
    host, _, port = address.split("://", 1)[1].rpartition(":")
    try:   # a refused port fails here at once (Dask's client would retry for its whole timeout)
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        raise UserError(f"the Dask scheduler at {address} does not answer ({err})", hint=hint) from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as err:
        raise UserError(f"the Dask scheduler at {address} does not answer ({type(err).__name__})",
                        hint=hint) from None
    _check_imports_slingshot(client, address)
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (OSError, TimeoutError):
        client.close()
        raise UserError(f"the Dask scheduler at {address} has no worker after {WORKERS_TIMEOUT_S} s",
                        hint=f"start workers with `dask worker {address} --nthreads 1` (docs/cluster.md)") from None
    return DaskExecutor(client)


def _check_imports_slingshot(client: Any, address: str) -> None:
    """The scheduler unpickles the units' task graph, so its Python must import `host` too: asked once here
    (a builtin, which any Python unpickles), rather than failing the first unit with Dask's traceback."""
    try:
        client.run_on_scheduler(exec, "import host")
    except ImportError as err:
        client.close()
        raise UserError(f"the Dask scheduler at {address} cannot import slingshot ({err})",
                        hint="start `dask scheduler` from a Python where this checkout is installed (pip install -e "
                             ".), as on the workers (docs/cluster.md, \"Several machines\")") from None


def _local_cluster(workers: int) -> DaskExecutor:
    if workers < 1:
        raise UserError(f"--workers must be >= 0, got {workers}")
    from distributed import Client, LocalCluster

    with _quiet_dask():
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.CRITICAL, env=dict(THREAD_ENV))
        except (RuntimeError, OSError, TimeoutError) as err:
            raise UserError(f"the Dask worker processes did not start ({err})",
                            hint="run with --workers 0 (every unit in this process) to see why") from None
        client = Client(cluster)
    executor = DaskExecutor(client, cluster)
    try:
        client.run(_ignore_terminal_interrupts)
    except BaseException:
        executor.close()
        raise
    return executor


def _ignore_terminal_interrupts() -> None:
    """In a LocalCluster worker (its event loop runs in the process's main thread): the terminal's Ctrl-C reaches
    the whole process group; the command stops the cluster, so the worker need not print a KeyboardInterrupt
    traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask logs to stderr at INFO while a cluster starts; the run prints its own line instead."""
    logger = logging.getLogger("distributed")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)

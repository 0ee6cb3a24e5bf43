"""The Dask test harness (tests/support/dask_cluster.py): real `dask scheduler` / `dask worker` processes.

Two workers, w1 offering the resource `nucleo-l4r5zi=1` and a board port in its environment:
plain tasks run on both, a task asking for the resource runs only on w1, and a task whose
worker is SIGKILLed mid-task is rerun on the other worker and its result arrives. Processes a
worker started (stand-ins for QEMU, one in the worker's process group, one in a session of its
own) die with it, and teardown leaves no process behind.
"""

from __future__ import annotations

import time

import psutil
import pytest

from tests.support.dask_cluster import (
    WORKER_ENV,
    dask_cli,
    dask_processes,
    slow_identity,
    spawn_child,
    worker_identity,
)

pytestmark = pytest.mark.skipif(dask_cli() is None, reason="no `dask` command (pip install distributed)")

BOARD = "nucleo-l4r5zi"
PORTS = f"{BOARD}=/dev/ttyACM0"


def test_workers_resources_and_rerun_after_kill(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    with dask_processes(tmp_path, workers=2, resources={1: f"{BOARD}=1"},
                        worker_env={1: {"SLINGSHOT_BOARD_PORTS": PORTS}}) as cluster, \
            distributed.Client(cluster.address, timeout=30) as client:
        assert cluster.address.startswith("tcp://127.0.0.1:")
        addresses = cluster.worker_addresses(client)
        assert sorted(addresses) == ["w0", "w1"]

        # each worker is the process we started (no nanny in between), with the harness's environment
        for i, name in enumerate(cluster.names):
            seen = client.submit(worker_identity, workers=[addresses[name]], pure=False).result(timeout=30)
            assert seen["name"] == name
            assert seen["pid"] == cluster.workers[i].pid
            assert {k: seen["env"][k] for k in WORKER_ENV} == WORKER_ENV
            assert seen["env"]["SLINGSHOT_BOARD_PORTS"] == (PORTS if name == "w1" else None)
        assert client.submit(__import__, "host", pure=False).result(timeout=30).__name__ == "host"

        # children of each worker (like QEMU): one in the worker's process group, one in its own session
        children = {name: [client.submit(spawn_child, new_session, workers=[addresses[name]], pure=False)
                           .result(timeout=30) for new_session in (False, True)] for name in cluster.names}
        assert all(_running(pid) for pids in children.values() for pid in pids)

        # a task asking for the board lands only where the board is
        futures = [client.submit(worker_identity, resources={BOARD: 1}, pure=False) for _ in range(4)]
        assert {f.result(timeout=30)["name"] for f in futures} == {"w1"}

        # kill the worker running a task: the scheduler reruns the task on the other worker
        started = tmp_path / "started"
        started.mkdir()
        future = client.submit(slow_identity, str(started), 3.0, pure=False)
        deadline = time.monotonic() + 30
        while not any(started.iterdir()):
            assert time.monotonic() < deadline, "the slow task never started"
            time.sleep(0.05)
        (victim,) = [p.name for p in started.iterdir()]
        i = cluster.names.index(victim)
        pid = cluster.workers[i].pid
        cluster.kill_worker(i)
        assert not _running(pid)
        assert not any(_running(child) for child in children[victim])
        result = future.result(timeout=60)
        survivor = next(n for n in cluster.names if n != victim)
        assert result["name"] == survivor
        assert sorted(p.name for p in started.iterdir()) == sorted(cluster.names)
        assert list(cluster.worker_addresses(client)) == [survivor]
        assert all(_running(child) for child in children[survivor])
        pids = [w.pid for w in cluster.workers] + [cluster.scheduler.pid] + children[survivor]
    # teardown left nothing behind
    assert not [pid for pid in pids if _running(pid)]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

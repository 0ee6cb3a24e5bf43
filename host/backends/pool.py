"""A pool of N instances of one backend (N emulators of the flashed board), one thread each.

    with BackendPool(lambda slot: open_backend("device", model), devices=2, window=4) as pool:
        for batch in pool.run([(index, x_q), ...]):      # results as they arrive, any order
            for index, inference in batch: ...

Each worker thread opens its own instance (for QEMU: boots an emulator, handshakes and
checks the model hash), then takes inputs from one shared work queue and streams them
through the protocol's pipelining window (Device.infer_many), so a faster instance simply
takes more. A worker whose device fails (DeviceError: the link was lost, the emulator died
or stopped answering) gives its unanswered inputs back to the front of the queue, stops
that emulator and boots a fresh one (same firmware, new handshake, model hash checked
again); after `max_restarts` restarts in the whole pool the next failure ends the run with
a clear error. An inference is reported once, after its response arrived, so none is lost
or duplicated.

The worker thread owns its emulator from boot to stop: QEMU is started with
PR_SET_PDEATHSIG, which fires when the *thread* that started it ends.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from host.backends.backend import Backend, Inference
from host.core.errors import UserError
from host.link.messages import DeviceError

Opener = Callable[[int], AbstractContextManager[Backend]]   # slot -> that device's backend
Item = tuple[int, np.ndarray]


class PoolError(UserError):
    """The devices failed more often than the restart budget allows."""


class _Stop(Exception):
    """The pool is closing: a worker leaves its loop."""


class BackendPool:
    """`devices` instances of a backend behind one work queue; see the module docstring."""

    def __init__(self, opener: Opener, devices: int = 1, window: int = 1, max_restarts: int = 3,
                 log: Callable[[str], None] | None = None, ready_timeout_s: float = 120.0) -> None:
        if devices < 1:
            raise UserError(f"--devices must be at least 1, got {devices}")
        self.opener, self.devices, self.window = opener, devices, max(1, window)
        self.max_restarts = max_restarts
        self.restarts = 0                 # emulators restarted after a failure, whole pool
        self.description = ""
        self.ready_timeout_s = ready_timeout_s
        self._log = log or (lambda message: print(message, file=sys.stderr))
        self._cond = threading.Condition()
        self._queue: deque[Item] = deque()
        self._results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._closing = False
        self._fatal: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._backends: dict[int, Backend] = {}
        self._ready: set[int] = set()      # slots whose device came up at least once
        self._retries_before = 0          # link retries of devices since replaced
        self.done_by: list[int] = [0] * devices   # inferences answered per device

    # ---- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> BackendPool:
        try:
            for slot in range(self.devices):
                thread = threading.Thread(target=self._serve, args=(slot,), name=f"device-{slot}", daemon=True)
                self._threads.append(thread)
                thread.start()
            with self._cond:
                ok = self._cond.wait_for(lambda: len(self._ready) == self.devices or self._fatal is not None,
                                         timeout=self.ready_timeout_s)
                if self._fatal is not None:
                    raise self._fatal
                if not ok:
                    raise UserError(f"the devices did not come up within {self.ready_timeout_s:.0f} s")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=15)

    @property
    def retries(self) -> int | None:
        """Link retransmissions over all devices (None when the backend has no link)."""
        counts = [getattr(b, "retries", None) for b in list(self._backends.values())]
        known = [c for c in counts if c is not None]
        return None if not known and not self._retries_before else sum(known) + self._retries_before

    # ---- work -------------------------------------------------------------------------

    def run(self, items: Iterable[Item]) -> Iterator[list[tuple[int, Inference]]]:
        """Run every (index, quantized input); yields batches of (index, result) as they arrive."""
        items = list(items)
        if not items:
            return
        with self._cond:
            if self._fatal is not None:
                raise self._fatal
            self._queue.extend(items)
            self._cond.notify_all()
        remaining = len(items)
        while remaining:
            batch = [self._next_result()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 256:
                    batch.append(self._results.get_nowait())
            out = [value for kind, value in batch if kind == "ok"]
            errors = [value for kind, value in batch if kind == "error"]
            if out:  # what arrived before a failure is real: hand it over first
                remaining -= len(out)
                yield out
            if errors:
                self._abort()
                raise errors[0]

    def _next_result(self) -> tuple[str, Any]:
        while True:
            try:
                return self._results.get(timeout=1.0)
            except queue.Empty:
                if not any(t.is_alive() for t in self._threads):
                    raise PoolError("every device worker stopped") from None

    def _abort(self) -> None:
        with self._cond:
            self._queue.clear()

    # ---- the worker thread ------------------------------------------------------------

    def _serve(self, slot: int) -> None:
        while True:
            try:
                with self.opener(slot) as backend:
                    self._attach(slot, backend)
                    try:
                        self._work(slot, backend)
                    finally:
                        self._detach(slot, backend)
                return
            except _Stop:
                return
            except DeviceError as err:
                if self._closing:
                    return
                if not self._may_restart(slot, err):
                    return
            except BaseException as err:  # noqa: BLE001 (reported to the main thread)
                self._fail(err)
                return

    def _attach(self, slot: int, backend: Backend) -> None:
        with self._cond:
            self._backends[slot] = backend
            if not self.description:
                self.description = backend.description
            self._ready.add(slot)
            self._cond.notify_all()

    def _detach(self, slot: int, backend: Backend) -> None:
        with self._cond:
            self._backends.pop(slot, None)
            self._retries_before += int(getattr(backend, "retries", 0) or 0)

    def _may_restart(self, slot: int, err: DeviceError) -> bool:
        with self._cond:
            if self.restarts >= self.max_restarts:
                fatal = PoolError(
                    f"device {slot} failed again after {self.restarts} emulator restart(s): {err.message}",
                    hint="everything measured so far is kept; --max-restarts raises the budget")
                self._fail_locked(fatal)
                return False
            self.restarts += 1
            count = self.restarts
        self._log(f"device {slot}: {err.message.splitlines()[0]}; restarting it "
                  f"(restart {count} of at most {self.max_restarts})")
        return True

    def _fail(self, err: BaseException) -> None:
        with self._cond:
            self._fail_locked(err)

    def _fail_locked(self, err: BaseException) -> None:
        if self._fatal is None:
            self._fatal = err
            self._results.put(("error", err))
        self._cond.notify_all()

    def _take(self) -> Item | None:
        with self._cond:
            if self._closing:
                raise _Stop
            return self._queue.popleft() if self._queue else None

    def _work(self, slot: int, backend: Backend) -> None:
        run_many = getattr(backend, "run_many", None)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or bool(self._queue))
                if self._closing:
                    return
            taken: deque[Item] = deque()

            def feed(taken: deque[Item] = taken) -> Iterator[np.ndarray]:
                while (item := self._take()) is not None:
                    taken.append(item)
                    yield item[1]

            results = run_many(feed(), self.window) if run_many else (backend.run(x) for x in feed())
            try:
                for result in results:
                    index = taken.popleft()[0]
                    self.done_by[slot] += 1
                    self._results.put(("ok", (index, result)))
            except BaseException:
                with self._cond:  # unanswered inputs go back to the front, in order
                    self._queue.extendleft(reversed(taken))
                    self._cond.notify_all()
                raise

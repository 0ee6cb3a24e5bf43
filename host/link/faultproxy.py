"""A TCP proxy that damages a serial link on purpose: bit flips, dropped, duplicated and
delayed bytes, at configurable rates in each direction, reproducibly (seeded).

It sits between the host and QEMU's serial socket (or any TCP serial server):

    proxy = FaultProxy(("127.0.0.1", qemu_port), to_device=Faults.mix(1e-3), to_host=Faults.mix(1e-3), seed=1)
    proxy.start()                      # listens on 127.0.0.1:proxy.port
    link = serial.serial_for_url(f"socket://127.0.0.1:{proxy.port}", timeout=0.05)

The k-th byte of a direction meets the same fate for the same seed and rates,
whatever the chunking of the stream. Command line (runs until interrupted):

    python -m host.faultproxy --target 127.0.0.1:4321 [--listen 4322] [--rate 1e-3] [--seed 1]
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

DIRECTIONS = ("to_device", "to_host")
KINDS = ("flip", "drop", "duplicate", "delay")


@dataclass(frozen=True)
class Faults:
    """Per-byte probabilities of each fault (their sum must stay below 1)."""

    flip: float = 0.0          # one random bit of the byte inverted
    drop: float = 0.0          # the byte is not forwarded
    duplicate: float = 0.0     # the byte is forwarded twice
    delay: float = 0.0         # the stream stalls for delay_s before the byte
    delay_s: float = 0.02

    @classmethod
    def mix(cls, rate: float, delay: float = 0.0, delay_s: float = 0.02) -> Faults:
        """`rate` of corrupted bytes, split evenly between flips, drops and duplicates."""
        return cls(flip=rate / 3, drop=rate / 3, duplicate=rate / 3, delay=delay, delay_s=delay_s)

    @property
    def total(self) -> float:
        return self.flip + self.drop + self.duplicate + self.delay


@dataclass
class FaultStats:
    bytes: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def __str__(self) -> str:
        return f"{self.bytes} bytes, " + ", ".join(f"{k} {v}" for k, v in self.counts.items())


class _Damager:
    """The fate of each byte of one direction: a uniform draw per byte picks it."""

    def __init__(self, faults: Faults, seed: int, direction: int) -> None:
        self.faults = faults
        self.rng = np.random.default_rng([seed, direction])
        self.stats = FaultStats()

    def apply(self, data: bytes) -> list[tuple[bytes, float]]:
        """Pieces to send, each after a pause (seconds)."""
        draws = self.rng.random(len(data))
        self.stats.bytes += len(data)
        f = self.faults
        hits = np.flatnonzero(draws < f.total) if f.total > 0 else ()
        if len(hits) == 0:
            return [(data, 0.0)]
        pieces: list[tuple[bytes, float]] = []
        out, pause, start = bytearray(), 0.0, 0
        for i in hits:
            out += data[start:i]
            start = int(i) + 1
            u = float(draws[i])
            byte = data[i]
            if u < f.flip:
                out.append(byte ^ (1 << min(7, int(u / f.flip * 8))))
                self.stats.counts["flip"] += 1
            elif u < f.flip + f.drop:
                self.stats.counts["drop"] += 1
            elif u < f.flip + f.drop + f.duplicate:
                out += bytes((byte, byte))
                self.stats.counts["duplicate"] += 1
            else:
                pieces.append((bytes(out), pause))
                out, pause = bytearray((byte,)), f.delay_s
                self.stats.counts["delay"] += 1
        out += data[start:]
        pieces.append((bytes(out), pause))
        return pieces


class FaultProxy:
    """Accepts one client on 127.0.0.1:`port` and relays it to `target`, damaged."""

    def __init__(self, target: tuple[str, int], to_device: Faults | None = None, to_host: Faults | None = None,
                 seed: int = 0, listen_port: int = 0, connect_timeout_s: float = 20.0) -> None:
        self.target = target
        self.seed = seed
        self.connect_timeout_s = connect_timeout_s
        self._damagers = [_Damager(to_device or Faults(), seed, 0), _Damager(to_host or Faults(), seed, 1)]
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    # ---- control ----------------------------------------------------------------------------

    def set_faults(self, to_device: Faults | None = None, to_host: Faults | None = None) -> None:
        """Change the rates from now on (the random streams continue)."""
        self._damagers[0].faults = to_device or Faults()
        self._damagers[1].faults = to_host or Faults()

    @property
    def stats(self) -> dict[str, FaultStats]:
        return {name: d.stats for name, d in zip(DIRECTIONS, self._damagers, strict=True)}

    def start(self) -> FaultProxy:
        thread = threading.Thread(target=self._serve, name="faultproxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def close(self) -> None:
        self._stop.set()
        for s in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- relaying ---------------------------------------------------------------------------

    def _connect_upstream(self) -> socket.socket:
        """The target (retried until it listens: QEMU opens its socket while starting)."""
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                upstream = socket.create_connection(self.target, timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(0.05)
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sockets.append(upstream)
        return upstream

    def _serve(self) -> None:
        """One client session (QEMU's serial socket serves one connection): relay until a side closes."""
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sockets.append(client)
        try:
            upstream = self._connect_upstream()
        except OSError:
            client.close()
            return
        done = threading.Event()
        pumps = [threading.Thread(target=self._pump, args=(client, upstream, self._damagers[0], done),
                                  name="faultproxy-to-device", daemon=True),
                 threading.Thread(target=self._pump, args=(upstream, client, self._damagers[1], done),
                                  name="faultproxy-to-host", daemon=True)]
        for pump in pumps:
            pump.start()
        self._threads += pumps
        done.wait()
        for s in (client, upstream):       # one side closed: close the other, like a cable pulled
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _pump(self, source: socket.socket, sink: socket.socket, damager: _Damager, done: threading.Event) -> None:
        try:
            while not self._stop.is_set() and not done.is_set():
                data = source.recv(65536)
                if not data:
                    break
                for piece, pause in damager.apply(data):
                    if pause:
                        time.sleep(pause)
                    if piece:
                        sink.sendall(piece)
        except OSError:
            pass
        finally:
            done.set()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)

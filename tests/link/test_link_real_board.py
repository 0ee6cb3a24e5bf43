"""A link the host cannot reboot: the emulator is started here and handed to the host only as a
`socket://` URL behind host.link.faultproxy, as a real board (or an RFC 2217 port) would be, so
a device "restart" of the pool would only reconnect and find the device in the state it was.
Flipped, dropped and duplicated bytes (1e-3 each, each way) and stalls must be met by
resynchronising and resending (the device's replay history makes that safe), never by a
restart: outputs identical to a clean run, zero restarts, no request run twice.

"Run twice" is observable: each input travels as WRITE_INPUT chunks then an empty INFER, so a
chunk write of one input run again after a later one (a stale copy) changes the input of the
next INFER, and an INFER run again instead of replayed gives the recorded ticks only by chance
(ticks are compared too).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from host.backends.pool import BackendPool
from host.core.boards import load_board
from host.core.paths import DEFAULT_BOARD
from host.emulators.qemu import QemuProcess
from host.engine.build import FirmwareImage
from host.link.device import connect
from host.link.faultproxy import FaultProxy, Faults

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

FAULTS = Faults(flip=1e-3, drop=1e-3, duplicate=1e-3, delay=2e-4, delay_s=0.02)


class _LinkBackend:
    """A device reached by URL, as host.backends.backend.DeviceBackend sees it (bytes in, bytes out)."""

    def __init__(self, device, chunk: int | None) -> None:  # noqa: ANN001
        self.device, self.description = device, "board by URL"
        if chunk is not None:       # every input as WRITE_INPUT chunks + INFER(empty)
            device.client.info = dataclasses.replace(device.client.info, max_payload=chunk)

    @property
    def retries(self) -> int:
        return int(self.device.client.retries)

    def run_many(self, xs, window: int = 1) -> Iterator[object]:  # noqa: ANN001
        return self.device.infer_many((bytes(x) for x in xs), window=window)


def run_pool(model, url: str, inputs: list[bytes], chunk: int | None) -> tuple[list, BackendPool, list]:  # noqa: ANN001
    board = load_board(DEFAULT_BOARD)
    devices: list = []

    @contextmanager
    def opener(slot: int) -> Iterator[_LinkBackend]:
        with connect(board, url, model.sha256, timeout_s=30, window=4) as device:
            devices.append(device)
            yield _LinkBackend(device, chunk)

    results: list = [None] * len(inputs)
    with BackendPool(opener, devices=1, window=4, max_restarts=3) as pool:
        for batch in pool.run(list(enumerate(inputs))):
            for index, result in batch:
                assert results[index] is None, f"inference {index} reported twice"
                results[index] = result
    return results, pool, devices


def run_no_reboot(model, image: FirmwareImage, count: int, seed: int, record_property,  # noqa: ANN001
                  chunk: int | None = 40) -> None:
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(-128, 128, 64, dtype=np.int8).tobytes() for _ in range(count)]
    with QemuProcess(load_board(DEFAULT_BOARD), image.elf) as qemu:
        port = qemu.launch()
        with FaultProxy(("127.0.0.1", port), seed=seed) as clean_proxy:
            clean, _, _ = run_pool(model, f"socket://127.0.0.1:{clean_proxy.port}", inputs, chunk)
        # The same emulator, still running with the clean session's state, through a damaging proxy.
        with FaultProxy(("127.0.0.1", port), FAULTS, FAULTS, seed=seed) as proxy:
            started = time.monotonic()
            damaged, pool, devices = run_pool(model, f"socket://127.0.0.1:{proxy.port}", inputs, chunk)
            elapsed = time.monotonic() - started
            stats = proxy.stats
    (device,) = devices
    client = device.client
    report = (f"{count} inferences via socket:// (no reboot possible), flips/drops/duplicates 1e-3 each way "
              f"+ stalls: {elapsed:.1f} s, {pool.restarts} restarts, {client.retries} resends "
              f"({client.timeouts} after a timeout, {client.resyncs} idle resyncs); "
              f"to device: {stats['to_device']}; to host: {stats['to_host']}")
    print("\n" + report)
    record_property("link_no_reboot", report)
    assert pool.restarts == 0
    assert [r.output for r in damaged] == [r.output for r in clean]
    assert max(abs(a.ticks - b.ticks) for a, b in zip(damaged, clean, strict=True)) <= 1
    assert all(s.counts["drop"] > 0 and s.counts["duplicate"] > 0 and s.counts["flip"] > 0 for s in stats.values())
    assert client.retries > 0


def test_500_inferences_through_a_lossy_link_without_reboot(model, image: FirmwareImage,  # noqa: ANN001
                                                             record_property) -> None:  # noqa: ANN001
    """The default suite's size (about 35 s); the 2,000- and 10,000-inference runs are `make test-slow`."""
    run_no_reboot(model, image, 500, seed=11, record_property=record_property, chunk=None)


@pytest.mark.slow
def test_2000_inferences_through_a_lossy_link_without_reboot(model, image: FirmwareImage,  # noqa: ANN001
                                                              record_property) -> None:  # noqa: ANN001
    run_no_reboot(model, image, 2000, seed=11, record_property=record_property, chunk=None)


@pytest.mark.slow
def test_2000_chunked_inferences_through_a_lossy_link_without_reboot(model, image: FirmwareImage,  # noqa: ANN001
                                                                      record_property) -> None:  # noqa: ANN001
    run_no_reboot(model, image, 2000, seed=11, record_property=record_property)


@pytest.mark.slow
@pytest.mark.timeout(1800)   # a clean run and a damaged one of 10,000 each: 652 s (2026-12-07), over the 600 s
def test_10000_inferences_through_a_lossy_link_without_reboot(model, image: FirmwareImage,  # noqa: ANN001
                                                               record_property) -> None:  # noqa: ANN001
    run_no_reboot(model, image, 10_000, seed=12, record_property=record_property)

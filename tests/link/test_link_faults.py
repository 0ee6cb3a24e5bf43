"""The link under fault injection: host.link.faultproxy between the host and QEMU's serial socket
flips, drops, duplicates and delays bytes in both directions (seeded); every inference must
still give exactly the bytes of a fault-free run, and the run must finish.

The default suite runs 300 pipelined inferences (and 150 with chunked inputs); the full
2,000-inference run is marked slow (`make test-slow`). Retry counts and runtimes are printed
(pytest -s) and recorded as test properties.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import serial

from host.core.boards import load_board
from host.core.paths import DEFAULT_BOARD
from host.emulators.qemu import QemuProcess
from host.engine.build import FirmwareImage
from host.link.device import Device, attach
from host.link.faultproxy import FaultProxy, Faults

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

RATE = 1e-3                     # corrupted bytes per byte, each direction: flips, drops, duplicates in equal parts
FAULTS = Faults.mix(RATE, delay=2e-4, delay_s=0.02)


@contextmanager
def proxied_device(model, elf: Path, seed: int, window: int) -> Iterator[tuple[Device, FaultProxy]]:  # noqa: ANN001
    """QEMU behind a fault proxy (faults off until set_faults), the host connected to the proxy."""
    board = load_board(DEFAULT_BOARD)
    with QemuProcess(board, elf) as qemu:
        port = qemu.launch()
        with FaultProxy(("127.0.0.1", port), seed=seed) as proxy:
            link = serial.serial_for_url(f"socket://127.0.0.1:{proxy.port}", timeout=0.05)
            try:
                with attach(board, link, model.sha256, timeout_s=30, window=window) as device:
                    device.client.max_retries = 10
                    yield device, proxy
            finally:
                link.close()


def random_inputs(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, 64, dtype=np.int8).tobytes() for _ in range(count)]


def run_with_faults(model, image: FirmwareImage, count: int, seed: int, record_property,  # noqa: ANN001
                    chunk: int | None = None) -> None:
    inputs = random_inputs(count, seed)
    with proxied_device(model, image.elf, seed, window=4) as (device, proxy):
        client = device.client
        if chunk is not None:      # smaller frames: every input goes as WRITE_INPUT chunks + INFER(empty)
            assert client.info is not None
            client.info = dataclasses.replace(client.info, max_payload=chunk)
        clean = list(device.infer_many(inputs))
        retries0, timeouts0 = client.retries, client.timeouts
        proxy.set_faults(FAULTS, FAULTS)
        started = time.monotonic()
        damaged = list(device.infer_many(inputs))
        elapsed = time.monotonic() - started
        proxy.set_faults()
        stats = proxy.stats
        retries, timeouts = client.retries - retries0, client.timeouts - timeouts0
        assert client.echo(b"still in sync") == b"still in sync"

    report = (f"{count} inferences{' (chunked)' if chunk else ''}, byte corruption rate {RATE:g} each way: "
              f"{elapsed:.1f} s, {retries} retransmissions ({timeouts} after a timeout); "
              f"to device: {stats['to_device']}; to host: {stats['to_host']}")
    print("\n" + report)
    record_property("link_faults", report)
    assert [r.output for r in damaged] == [r.output for r in clean]
    # Replayed responses carry the recorded ticks; nothing ran twice or with an interrupt inside.
    assert max(abs(a.ticks - b.ticks) for a, b in zip(damaged, clean, strict=True)) <= 1
    corrupted = sum(s.counts["flip"] + s.counts["drop"] + s.counts["duplicate"] for s in stats.values())
    assert corrupted > 0 and retries > 0


def test_inferences_survive_a_damaged_link(model, image: FirmwareImage, record_property) -> None:  # noqa: ANN001
    run_with_faults(model, image, 300, seed=1, record_property=record_property)


def test_chunked_inputs_survive_a_damaged_link(model, image: FirmwareImage, record_property) -> None:  # noqa: ANN001
    run_with_faults(model, image, 150, seed=2, record_property=record_property, chunk=40)


@pytest.mark.slow
def test_2000_inferences_survive_a_damaged_link(model, image: FirmwareImage, record_property) -> None:  # noqa: ANN001
    run_with_faults(model, image, 2000, seed=3, record_property=record_property)

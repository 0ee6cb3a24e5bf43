"""Link test helpers: an INFO payload as a device sends it, and raw frame exchanges with a booted
device that bypass the client (docs/protocol.md)."""

from __future__ import annotations

import struct
import time

from host.link.device import Device
from host.link.frame import Frame, FrameDecoder
from host.link.messages import PROTOCOL_VERSION


def info_payload(input_bytes: int = 64, output_bytes: int = 10, version: int = PROTOCOL_VERSION,
                 extra: bytes = b"") -> bytes:
    def string(s: str) -> bytes:
        return bytes([len(s)]) + s.encode()

    def tensors(n: int, dims: tuple[int, ...]) -> bytes:
        return bytes([1, 0, len(dims)]) + struct.pack(f"<{len(dims)}I", *dims) + struct.pack("<fiI", 0.5, -3, n)

    return (struct.pack("<HH", version, 4096) + string("0.1.0") + string("fake") + string("cortex-m4")
            + string("m") + bytes(range(32)) + struct.pack("<IIH", 1234, 25_000_000, 7)
            + tensors(input_bytes, (1, input_bytes)) + tensors(output_bytes, (1, output_bytes)) + extra)


def quiet(dev: Device, idle_s: float = 0.15) -> None:
    """Read until the line was idle for idle_s (0.15 s > the device's 100 ms mid-frame timeout)."""
    link = dev.client.transport
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        if link.in_waiting:
            link.read(link.in_waiting)
            last = time.monotonic()
        time.sleep(0.01)


def exchange(dev: Device, data: bytes, frames: int = 1, wait_s: float = 5.0, idle_s: float = 0.15) -> list[Frame]:
    """Write raw bytes after a quiet line; collect response frames until `frames` arrived or `wait_s` passed."""
    link = dev.client.transport
    quiet(dev, idle_s)
    link.write(data)
    decoder, got = FrameDecoder(), []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(got) < frames:
        got += decoder.feed(link.read(max(1, link.in_waiting)))
    return got

"""Protocol payloads for link tests: an INFO payload as a device sends it (docs/protocol.md)."""

from __future__ import annotations

import struct

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

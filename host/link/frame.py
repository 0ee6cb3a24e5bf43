"""The wire frame of the device protocol (docs/protocol.md, "Frame"), and nothing about what a frame means.

Frame: A5 5A | type u8 | seq u8 | length u16 LE | payload | CRC-32 LE over type..payload.
`encode_frame` builds one; `FrameDecoder` takes a byte stream apart into `Frame`s, skipping
garbage and frames whose CRC does not match. The message types, payload layouts and the
client are in host/link/messages.py and host/link/client.py.

Imports: the standard library only.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<BBH")


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    head = HEADER.pack(msg_type, seq & 0xFF, len(payload))
    return SYNC + head + payload + struct.pack("<I", zlib.crc32(head + payload))


class FrameDecoder:
    """Incremental decoder: feed bytes, get complete frames. Garbage between
    frames and frames with a bad CRC are skipped (counted in `dropped`)."""

    def __init__(self, max_payload: int = 65535) -> None:
        self.buffer = bytearray()
        self.max_payload = max_payload
        self.dropped = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                del self.buffer[:max(0, len(self.buffer) - 1)]
                return None
            del self.buffer[:start]
            if len(self.buffer) < 2 + HEADER.size:
                return None
            msg_type, seq, length = HEADER.unpack_from(self.buffer, 2)
            if length > self.max_payload:
                self._skip_sync()
                continue
            end = 2 + HEADER.size + length + 4
            if len(self.buffer) < end:
                return None
            body = bytes(self.buffer[2:2 + HEADER.size + length])
            (crc,) = struct.unpack_from("<I", self.buffer, end - 4)
            if zlib.crc32(body) != crc:
                self._skip_sync()
                continue
            del self.buffer[:end]
            return Frame(msg_type, seq, body[HEADER.size:])

    def _skip_sync(self) -> None:
        self.dropped += 1
        del self.buffer[:2]

    def missing(self) -> int:
        """Bytes still to arrive before the frame at the head of the buffer can be decoded (≥ 1)."""
        head = 2 + HEADER.size
        if len(self.buffer) < head:
            return head - len(self.buffer)
        length = HEADER.unpack_from(self.buffer, 2)[2]
        if self.buffer[:2] != SYNC or length > self.max_payload:
            return 1
        return max(1, head + length + 4 - len(self.buffer))

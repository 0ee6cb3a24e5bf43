"""The host side of the device protocol (docs/protocol.md).

Frame: A5 5A | type u8 | seq u8 | length u16 LE | payload | CRC-32 LE over
type..payload. Any pyserial object is a transport (`serial.serial_for_url`
gives `socket://`, `rfc2217://` and `/dev/tty…`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from serial import SerialException

from host.compiler.types import DTYPE_NAMES, TensorInfo
from host.errors import UserError

PROTOCOL_VERSION = 1
SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<BBH")
RESPONSE = 0x80
MAX_PAYLOAD_DEFAULT = 4096


class Msg:
    INFO = 0x01
    INFER = 0x02
    WRITE_INPUT = 0x03
    READ_OUTPUT = 0x04
    ECHO = 0x05
    PROFILE = 0x06
    ERROR = 0x7F


ERROR_NAMES = {
    1: "BAD_CRC", 2: "TOO_LONG", 3: "TRUNCATED", 4: "UNKNOWN_TYPE",
    5: "BAD_LENGTH", 6: "BAD_OFFSET", 7: "INFER_FAILED", 8: "FAULT",
}


# The request was damaged on the way and not executed: sending it again is safe.
RETRYABLE_ERRORS = frozenset({1, 2, 3})


class DeviceError(UserError):
    """The device did not answer as the protocol says."""


class DeviceErrorFrame(DeviceError):
    """The device answered with an error frame."""

    def __init__(self, code: int, request: int, message: str) -> None:
        name = ERROR_NAMES.get(code, f"code {code}")
        super().__init__(f"device error {name} (request 0x{request:02x}): {message}")
        self.code, self.request, self.device_message = code, request, message


class Transport(Protocol):
    def write(self, data: bytes) -> int | None: ...
    def read(self, size: int = 1) -> bytes: ...


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


@dataclass(frozen=True)
class DeviceInfo:
    protocol_version: int
    max_payload: int
    firmware_version: str
    board: str
    cpu: str
    model_name: str
    model_sha256: bytes
    arena_bytes: int
    tick_hz: int
    n_ops: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @property
    def input_bytes(self) -> int:
        return sum(t.nbytes for t in self.inputs)

    @property
    def output_bytes(self) -> int:
        return sum(t.nbytes for t in self.outputs)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (n,) = self.take("B")
        text = self.data[self.pos:self.pos + n].decode("ascii", errors="replace")
        self.pos += n
        return text

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def tensors(self, kind: str) -> list[TensorInfo]:
        (count,) = self.take("B")
        out = []
        for i in range(count):
            dtype, rank = self.take("BB")
            dims = self.take(f"{rank}I")
            scale, zero, _ = self.take("fiI")
            out.append(TensorInfo(f"{kind}{i}", DTYPE_NAMES.get(dtype, f"type{dtype}"), tuple(dims), scale, zero))
        return out


def parse_info(payload: bytes) -> DeviceInfo:
    try:
        r = _Reader(payload)
        version, max_payload = r.take("HH")
        firmware, board, cpu, model = r.string(), r.string(), r.string(), r.string()
        sha = r.raw(32)
        arena, tick_hz, n_ops = r.take("IIH")
        return DeviceInfo(version, max_payload, firmware, board, cpu, model, sha, arena, tick_hz, n_ops,
                          r.tensors("input"), r.tensors("output"))
    except struct.error:
        raise DeviceError("malformed INFO response from the device") from None


@dataclass(frozen=True)
class InferResult:
    output: bytes
    ticks: int
    instructions: int | None = None


class Client:
    """Request/response over a transport; one request in flight at a time."""

    def __init__(self, transport: Transport, timeout_s: float = 10.0, describe: str = "device",
                 max_retries: int = 3) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.describe = describe
        self.decoder = FrameDecoder()
        self.seq = 0
        self.info: DeviceInfo | None = None
        self.max_retries = max_retries
        self.retries = 0                      # requests sent again after a transit error

    def request(self, msg_type: int, payload: bytes = b"", timeout_s: float | None = None) -> bytes:
        """Send one request and return the response payload.

        A request the device reports as damaged in transit (BAD_CRC, TOO_LONG,
        TRUNCATED: it was not executed) is sent again, up to `max_retries`
        times; every request is idempotent, so a retry cannot duplicate a result.
        """
        for attempt in range(self.max_retries + 1):
            self.seq = (self.seq + 1) & 0xFF or 1
            self._write(encode_frame(msg_type, self.seq, payload))
            frame = self._wait_for(self.seq, timeout_s or self.timeout_s)
            if frame.type == Msg.ERROR:
                code, request = frame.payload[0], frame.payload[1]
                if code in RETRYABLE_ERRORS and attempt < self.max_retries:
                    self.retries += 1
                    self._resync()
                    continue
                raise DeviceErrorFrame(code, request, frame.payload[2:].decode("ascii", errors="replace"))
            if frame.type != msg_type | RESPONSE:
                raise DeviceError(
                    f"{self.describe}: expected response 0x{msg_type | RESPONSE:02x}, got 0x{frame.type:02x}")
            return frame.payload
        raise AssertionError("unreachable")

    def _resync(self, quiet_s: float = 0.05) -> None:
        """Drop whatever is still arriving (the rest of a damaged exchange) until the line is quiet."""
        import time

        deadline = time.monotonic() + 2.0
        last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            if self._read_available():
                last = time.monotonic()
        self.decoder = FrameDecoder()

    def _wait_for(self, seq: int, timeout_s: float) -> Frame:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for frame in self.decoder.feed(self._read_available()):
                if frame.seq == seq or frame.type == Msg.ERROR and frame.seq == 0:
                    return frame
        raise DeviceError(f"{self.describe} stopped answering (no response within {timeout_s:.0f} s)",
                          hint="check the link and that the board runs slingshot firmware (make flash)")

    def _read_available(self) -> bytes:
        """Block for one byte (up to the transport timeout), then take what is waiting."""
        try:
            data = self.transport.read(1) or b""
            waiting = getattr(self.transport, "in_waiting", 0) if data else 0
            return data + (self.transport.read(waiting) if waiting else b"")
        except (OSError, SerialException) as err:
            raise self._link_lost(err) from None

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except (OSError, SerialException) as err:
            raise self._link_lost(err) from None

    def _link_lost(self, err: Exception) -> DeviceError:
        return DeviceError(f"lost the link to {self.describe}: {err}",
                           hint="the board reset, was unplugged or the emulator stopped; check it and run again")

    def handshake(self) -> DeviceInfo:
        info = parse_info(self.request(Msg.INFO))
        if info.protocol_version != PROTOCOL_VERSION:
            raise DeviceError(
                f"{self.describe} speaks protocol version {info.protocol_version}, this host speaks "
                f"{PROTOCOL_VERSION}", hint="re-flash the firmware from this checkout (make flash)")
        self.info = info
        return info

    def echo(self, payload: bytes) -> bytes:
        return self.request(Msg.ECHO, payload)

    def infer(self, inputs: bytes, timeout_s: float | None = None) -> InferResult:
        info = self.info or self.handshake()
        if len(inputs) != info.input_bytes:
            raise DeviceError(f"input is {len(inputs)} bytes, the model takes {info.input_bytes}")
        if len(inputs) <= info.max_payload:
            payload = self.request(Msg.INFER, inputs, timeout_s)
        else:
            self._write_input(inputs, info.max_payload)
            payload = self.request(Msg.INFER, b"", timeout_s)
        (ticks,) = struct.unpack_from("<Q", payload)
        output = payload[8:] if len(payload) > 8 or info.output_bytes == 0 else self._read_output(info)
        return InferResult(output=output, ticks=ticks)

    def _write_input(self, inputs: bytes, max_payload: int) -> None:
        chunk = max_payload - 4
        for offset in range(0, len(inputs), chunk):
            self.request(Msg.WRITE_INPUT, struct.pack("<I", offset) + inputs[offset:offset + chunk])

    def _read_output(self, info: DeviceInfo) -> bytes:
        out = bytearray()
        while len(out) < info.output_bytes:
            n = min(info.max_payload, info.output_bytes - len(out))
            out += self.request(Msg.READ_OUTPUT, struct.pack("<IH", len(out), n))
        return bytes(out)

    def profile(self) -> list[int]:
        """Ticks per op of the last inference."""
        payload = self.request(Msg.PROFILE)
        (count,) = struct.unpack_from("<H", payload)
        return list(struct.unpack_from(f"<{count}I", payload, 2))


def outputs_from_bytes(raw: bytes, outputs: list[TensorInfo]) -> list[np.ndarray]:
    arrays, pos = [], 0
    for info in outputs:
        arrays.append(np.frombuffer(raw[pos:pos + info.nbytes], dtype=info.dtype).reshape(info.shape))
        pos += info.nbytes
    return arrays

"""The messages of the device protocol (docs/protocol.md, "Messages"), version 2: what a frame means.

The message types (`Msg`, `RESPONSE`), the error codes and which of them a client may retry,
the protocol version, and the decoding of payloads: the INFO response (`parse_info` →
`DeviceInfo`), INFER results (`InferResult`, `outputs_from_bytes`) and error frames
(`DeviceErrorFrame`). The bytes on the wire are host/link/frame.py's; sending and
retransmitting requests is host/link/client.py's.

Imports: host.core, host.compiler.types and host.link.frame (besides the standard library and numpy).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np

from host.compiler.types import DTYPE_NAMES, TensorInfo
from host.core.errors import UserError
from host.link.frame import Frame

PROTOCOL_VERSION = 2
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
    5: "BAD_LENGTH", 6: "BAD_OFFSET", 7: "INFER_FAILED", 8: "FAULT", 9: "SEQ_GAP", 10: "REPLAY_LOST",
    11: "BAD_SEQ",
}


# The request was damaged or lost on the way (or arrived out of order) and was not run: send it again.
RETRYABLE_ERRORS = frozenset({1, 2, 3, 9})
FAULT_ERROR = 8


class DeviceError(UserError):
    """The device did not answer as the protocol says."""


class DeviceErrorFrame(DeviceError):
    """The device answered with an error frame."""

    def __init__(self, code: int, request: int, message: str) -> None:
        name = ERROR_NAMES.get(code, f"code {code}")
        super().__init__(f"device error {name} (request 0x{request:02x}): {message}")
        self.code, self.request, self.device_message = code, request, message


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
    rx_buffer_bytes: int = 0      # the device's receive ring (0: it polls the UART)
    history: int = 1              # requests whose responses it remembers (the largest window)
    replay_bytes: int = 0         # responses up to this size are remembered for all of them
    window: int = 1               # the pipelining window the device accepted
    preprocess_kind: int = 0      # the firmware's input pre-processing stage: 0 none, 1 squeeze, 2 median
    preprocess_param: int = 0     # its bits or window

    @property
    def infer_trailer_bytes(self) -> int:
        """INFER responses end with u32 pre-processing ticks when the firmware has a stage."""
        return 4 if self.preprocess_kind else 0

    @property
    def outputs_inline(self) -> bool:
        """Whether INFER responses carry the outputs (else READ_OUTPUT fetches them)."""
        return self.output_bytes <= self.max_payload - 8 - self.infer_trailer_bytes

    @functools.cached_property
    def input_bytes(self) -> int:
        return sum(t.nbytes for t in self.inputs)

    @functools.cached_property
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
        inputs, outputs = r.tensors("input"), r.tensors("output")
        extra = r.take("HBHB") if len(payload) - r.pos >= 6 else (0, 1, 0, 1)  # version 2
        stage = r.take("BB") if len(payload) - r.pos >= 2 else (0, 0)      # firmware with a pre-processing stage
        return DeviceInfo(version, max_payload, firmware, board, cpu, model, sha, arena, tick_hz, n_ops,
                          inputs, outputs, *extra, *stage)
    except struct.error:
        raise DeviceError("malformed INFO response from the device") from None


@dataclass(frozen=True)
class InferResult:
    output: bytes
    ticks: int
    instructions: int | None = None
    preprocess_ticks: int | None = None          # the firmware's pre-processing stage, outside `ticks`
    preprocess_instructions: int | None = None


def error_from_frame(frame: Frame) -> DeviceErrorFrame:
    """The device error an ERROR frame carries (code u8, request type u8, ASCII message)."""
    code, request = frame.payload[0], frame.payload[1]
    return DeviceErrorFrame(code, request, frame.payload[2:].decode("ascii", errors="replace"))


def outputs_from_bytes(raw: bytes, outputs: list[TensorInfo]) -> list[np.ndarray]:
    arrays, pos = [], 0
    for info in outputs:
        arrays.append(np.frombuffer(raw[pos:pos + info.nbytes], dtype=info.dtype).reshape(info.shape))
        pos += info.nbytes
    return arrays

"""The host's client of the device protocol: requests and responses over a transport, with
retransmission and pipelining (docs/protocol.md, "Reliability" and "Pipelining").

Any pyserial object is a transport (`serial.serial_for_url` gives `socket://`, `rfc2217://` and
`/dev/tty…`). The Client retransmits a request whose frame or response was lost or damaged
(the device answers a request it already ran with its recorded response, so a retry never runs
anything twice), matches responses to requests by seq and type, and can keep several requests
in flight (`window`, `infer_many`).

Imports: host.link.frame, host.link.messages and host.core (besides the standard library and pyserial).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from serial import SerialException

from host.link.frame import Frame, FrameDecoder, encode_frame
from host.link.messages import (
    FAULT_ERROR,
    PROTOCOL_VERSION,
    RESPONSE,
    RETRYABLE_ERRORS,
    DeviceError,
    DeviceInfo,
    InferResult,
    Msg,
    error_from_frame,
    parse_info,
)

RCVLOWAT_MAX = 4096     # bytes the host may wait for in one wake-up on a socket link


class Transport(Protocol):
    def write(self, data: bytes) -> int | None: ...
    def read(self, size: int = 1) -> bytes: ...


@dataclass(eq=False)
class PendingRequest:
    """One request in flight: sent (maybe several times) and not yet answered."""

    seq: int
    type: int
    frame: bytes
    response_bytes: int | None         # expected response payload size, None if unknown/large
    timeout_s: float
    max_retries: int | None            # None: resend until timeout_s has passed
    first_sent: float = 0.0
    last_sent: float = 0.0
    sends: int = 0
    response: Frame | None = None
    error: Exception | None = None
    last_error: Frame | None = field(default=None, repr=False)   # last retryable error frame

    @property
    def done(self) -> bool:
        return self.response is not None or self.error is not None


class Client:
    """Requests and responses over a transport, with retransmission and optional pipelining.

    * A request the device reports as damaged or out of order (BAD_CRC, TOO_LONG, TRUNCATED,
      SEQ_GAP: it was not run), or whose response does not come within the retransmission
      timeout (lost or garbled in either direction), is sent again with the same seq and
      bytes, until its `timeout_s` has passed (or `max_retries` times, when given). The device
      answers a request it already ran with its recorded response, so a retry never runs an
      INFER or WRITE_INPUT twice. `retries` counts the retransmissions.
    * A response is taken only for a request in flight with that seq and the matching
      response type; anything else (a late duplicate, a response to an older copy) is dropped.
    * `window` > 1 keeps up to that many requests in flight (`submit`/`collect`, `infer_many`);
      the device then runs them strictly in seq order.
    """

    IDLE_BEFORE_RESEND_S = 0.25     # > the device's 100 ms mid-frame timeout (and QEMU's slack)
    QUIET_S = 0.03                  # no byte for this long: the rest of a damaged exchange is over
    MIN_RTO_S = 0.15
    MAX_RTO_S = 2.0
    FIRST_RTO_S = 1.0               # before a round trip of that request type was measured
    FAST_RESENDS = 4                # a request sent this often is next resent only after the line went idle

    def __init__(self, transport: Transport, timeout_s: float = 10.0, describe: str = "device",
                 max_retries: int | None = None, window: int = 1) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.describe = describe
        self.decoder = FrameDecoder()
        self.seq = 0
        self.info: DeviceInfo | None = None
        self.max_retries = max_retries
        self.window = max(1, window)            # asked for at the handshake
        self.retries = 0                        # requests sent again (damaged, lost or out of order)
        self.timeouts = 0                       # of which after a response timeout
        self.resyncs = 0                        # times the client waited for the line to go idle
        self.dropped_frames = 0                 # stale or duplicate responses ignored
        self.pending: list[PendingRequest] = []
        self._session_window = 1
        self._last_write = 0.0
        self._rtt: dict[int, float] = {}
        self._socket = _link_socket(transport)
        self._socket_fd = None if self._socket is None else self._socket.fileno()

    # ---- requests -----------------------------------------------------------------------

    def request(self, msg_type: int, payload: bytes = b"", timeout_s: float | None = None,
                max_retries: int | None = -1) -> bytes:
        """Send one request and return its response payload (raises its error frame).
        `max_retries` -1: the client's; None: resend until `timeout_s` passed."""
        return self.collect(self.submit(msg_type, payload, timeout_s, max_retries))

    def submit(self, msg_type: int, payload: bytes = b"", timeout_s: float | None = None,
               max_retries: int | None = -1) -> PendingRequest:
        """Send a request as soon as the window has room for it; `collect` its response."""
        frame_bytes = len(payload) + 10
        while not self._room_for(frame_bytes):
            self._pump()
        self.seq = self.seq % 255 + 1
        req = PendingRequest(self.seq, msg_type, encode_frame(msg_type, self.seq, payload),
                             self._response_bytes(msg_type, payload), timeout_s or self.timeout_s,
                             self.max_retries if max_retries == -1 else max_retries)
        self.pending.append(req)
        self._send(req)
        return req

    def collect(self, req: PendingRequest) -> bytes:
        while not req.done:
            self._pump()
        if req.error is not None:
            raise req.error
        assert req.response is not None
        return req.response.payload

    def _room_for(self, frame_bytes: int) -> bool:
        if not self.pending:
            return True
        info = self.info
        # A sliding window in seq space, not a count: the device replays only its last
        # `history` requests, so nothing may go out `window` seqs or more past the oldest
        # unanswered one (whose response may yet have to be replayed).
        if info is None or (self.seq % 255 + 1 - self.pending[0].seq) % 255 >= self._session_window:
            return False
        # Every request in flight must stay replayable while later ones run ...
        if any(r.response_bytes is None or r.response_bytes > info.replay_bytes for r in self.pending):
            return False
        # ... and what waits behind the one running must fit the device's receive ring.
        return sum(len(r.frame) for r in self.pending[1:]) + frame_bytes <= info.rx_buffer_bytes

    def _response_bytes(self, msg_type: int, payload: bytes) -> int | None:
        info = self.info
        if msg_type == Msg.WRITE_INPUT:
            return 0
        if msg_type == Msg.ECHO:
            return len(payload)
        if msg_type == Msg.READ_OUTPUT and len(payload) == 6:
            return int(struct.unpack_from("<H", payload, 4)[0])
        if msg_type == Msg.INFER and info is not None:
            return 8 + (info.output_bytes if info.outputs_inline else 0) + info.infer_trailer_bytes
        return None

    # ---- the receive loop -----------------------------------------------------------------

    def _pump(self) -> None:
        """Read what arrives (up to the transport timeout), match it, retransmit what is overdue."""
        resend = False
        for frame in self.decoder.feed(self._read_available()):
            resend = self._dispatch(frame) or resend
        if resend:
            # An error frame or an answer out of order: the device is alive and in step with the
            # line, so resend at once; a request that keeps failing waits for an idle line first.
            self._recover(idle=any(r.sends >= self.FAST_RESENDS for r in self.pending))
        else:
            self._check_timers()

    def _dispatch(self, frame: Frame, recovering: bool = False) -> bool:
        """Apply one received frame; True if requests must be sent again."""
        if frame.type == Msg.ERROR and len(frame.payload) >= 2 and frame.payload[0] == FAULT_ERROR:
            raise error_from_frame(frame)
        req = next((r for r in self.pending if r.seq == frame.seq), None)
        if frame.type == Msg.ERROR and len(frame.payload) >= 2 and frame.payload[0] in RETRYABLE_ERRORS:
            if req is not None:
                req.last_error = frame
            return bool(self.pending) and not recovering
        if req is None:
            self.dropped_frames += 1           # stale: a late or duplicated answer to a finished request
            return False
        if frame.type == Msg.ERROR:
            req.error = error_from_frame(frame)
        elif frame.type != req.type | RESPONSE:
            req.error = DeviceError(
                f"{self.describe}: expected response 0x{req.type | RESPONSE:02x} to seq {req.seq}, "
                f"got 0x{frame.type:02x}")
        elif req.response_bytes is not None and req.type == Msg.INFER and len(frame.payload) != req.response_bytes:
            req.error = DeviceError(f"{self.describe}: INFER response of {len(frame.payload)} bytes, "
                                    f"expected {req.response_bytes}")
        else:
            req.response = frame
            if req.sends == 1:
                rtt = time.monotonic() - req.first_sent
                old = self._rtt.get(req.type)
                self._rtt[req.type] = rtt if old is None else 0.8 * old + 0.2 * rtt
        index = self.pending.index(req)
        del self.pending[index]
        # The device answers in order: an older request still waiting, whose last copy went out
        # before this one was first sent, or its response, was lost.
        return not recovering and any(r.last_sent < req.first_sent for r in self.pending[:index])

    def _check_timers(self) -> None:
        if not self.pending:
            return
        now = time.monotonic()
        oldest = self.pending[0]
        if now - oldest.first_sent > oldest.timeout_s:
            self._give_up(oldest)
        if self._may_resend(oldest) and now >= oldest.last_sent + self._rto(oldest):
            self.timeouts += 1
            self._recover(idle=True)

    @staticmethod
    def _may_resend(req: PendingRequest) -> bool:
        return req.max_retries is None or req.sends <= req.max_retries

    def _rto(self, req: PendingRequest) -> float:
        rtt = self._rtt.get(req.type)
        base = self.FIRST_RTO_S if rtt is None else max(self.MIN_RTO_S, 0.1 + 4 * rtt * len(self.pending))
        return min(base * 2 ** (req.sends - 1), self.MAX_RTO_S, req.timeout_s / 2)

    def _recover(self, idle: bool = True) -> None:
        """Take any response still arriving until no byte came for QUIET_S, and with `idle` let
        the line go idle too (the device drops a partial frame after 100 ms), then send every
        unanswered request again, in order."""
        deadline = time.monotonic() + 2.0
        last_byte = time.monotonic()
        self.resyncs += idle
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now - last_byte >= self.QUIET_S and (not idle or now - self._last_write >= self.IDLE_BEFORE_RESEND_S):
                break
            data = self._read_available()
            if data:
                last_byte = time.monotonic()
                for frame in self.decoder.feed(data):
                    self._dispatch(frame, recovering=True)
        self.decoder = FrameDecoder()
        for req in list(self.pending):
            if not self._may_resend(req):
                if req.last_error is not None:
                    self._give_up(req)
                continue                       # no retries left: wait for the response until its timeout
            self.retries += 1
            self._send(req)

    def _give_up(self, req: PendingRequest) -> None:
        self.pending.remove(req)
        if req.last_error is not None:
            raise error_from_frame(req.last_error)
        raise DeviceError(
            f"{self.describe} stopped answering (no response to request 0x{req.type:02x} seq {req.seq} "
            f"within {req.timeout_s:.1f} s, {req.sends} attempts)",
            hint="check the link and that the board runs slingshot firmware (make flash)")

    def _send(self, req: PendingRequest) -> None:
        now = time.monotonic()
        if req.sends == 0:
            req.first_sent = now
        req.last_sent = now
        req.sends += 1
        req.last_error = None
        self._write(req.frame)

    def _read_available(self) -> bytes:
        """Block for one byte (up to the transport timeout), then take what is waiting."""
        try:
            with self._waking_for(self.decoder.missing()):
                data = self.transport.read(1) or b""
            return data + self._read_waiting() if data else data
        except (OSError, SerialException) as err:
            raise self._link_lost(err) from None

    @contextlib.contextmanager
    def _waking_for(self, need: int) -> Iterator[None]:
        """On a socket link, wake only once `need` bytes are there (SO_RCVLOWAT), then back to 1
        for any other reader.  An emulator sends a frame byte by byte; waking for each byte cost
        the host ~10 µs and the emulator's core a context switch (docs/protocol.md)."""
        need = min(need, RCVLOWAT_MAX)
        if self._socket is None or need <= 1:
            yield
            return
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
        try:
            yield
        finally:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    def _read_waiting(self) -> bytes:
        """What has already arrived, without blocking. pyserial's socket:// port reports
        `in_waiting` as 0 or 1, which would cost two system calls per byte: read its
        (non-blocking) socket directly."""
        if self._socket_fd is not None:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                return os.read(self._socket_fd, 65536)
            return b""
        waiting = getattr(self.transport, "in_waiting", 0)
        return self.transport.read(waiting) if waiting else b""

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except (OSError, SerialException) as err:
            raise self._link_lost(err) from None
        self._last_write = time.monotonic()

    def _link_lost(self, err: Exception) -> DeviceError:
        return DeviceError(f"lost the link to {self.describe}: {err}",
                           hint="the board reset, was unplugged or the emulator stopped; check it and run again")

    # ---- messages -------------------------------------------------------------------------

    def handshake(self) -> DeviceInfo:
        """INFO stating this host's protocol version and window; refuses a device of another version."""
        self._drain_pending()
        payload = self.request(Msg.INFO, struct.pack("<HB", PROTOCOL_VERSION, self.window))
        if len(payload) < 2:
            raise DeviceError("malformed INFO response from the device")
        (version,) = struct.unpack_from("<H", payload)
        if version != PROTOCOL_VERSION:
            raise DeviceError(
                f"{self.describe} speaks protocol version {version}, this host speaks version "
                f"{PROTOCOL_VERSION}", hint="re-flash the firmware from this checkout (make flash)")
        info = parse_info(payload)
        self.info = info
        self._session_window = max(1, min(self.window, info.window, info.history))
        return info

    def set_window(self, window: int) -> None:
        """Change the pipelining window (a new handshake when it changes)."""
        window = max(1, window)
        if window != self.window or self.info is None:
            self.window = window
            self.handshake()

    def _drain_pending(self) -> None:
        for req in list(self.pending):
            with contextlib.suppress(DeviceError):
                self.collect(req)

    def echo(self, payload: bytes) -> bytes:
        return self.request(Msg.ECHO, payload)

    def infer(self, inputs: bytes, timeout_s: float | None = None) -> InferResult:
        (result,) = self.infer_many([inputs], timeout_s)
        return result

    def infer_many(self, inputs: Iterable[bytes], timeout_s: float | None = None) -> Iterator[InferResult]:
        """Results of one inference per input, in order; with a window > 1 the next inputs
        travel while the device computes."""
        info = self.info or self.handshake()
        inflight: deque[tuple[list[PendingRequest], PendingRequest, list[PendingRequest]]] = deque()
        for data in inputs:
            if len(data) != info.input_bytes:
                raise DeviceError(f"input is {len(data)} bytes, the model takes {info.input_bytes}")
            if len(data) <= info.max_payload:
                writes: list[PendingRequest] = []
                infer = self.submit(Msg.INFER, data, timeout_s)
            else:
                writes = self._submit_input(data, info)
                infer = self.submit(Msg.INFER, b"", timeout_s)
            reads = [] if info.outputs_inline else self._submit_reads(info)
            inflight.append((writes, infer, reads))
            while inflight and all(r.done for r in (*inflight[0][0], inflight[0][1], *inflight[0][2])):
                yield self._assemble(*inflight.popleft(), info)
        while inflight:
            yield self._assemble(*inflight.popleft(), info)

    def _submit_input(self, inputs: bytes, info: DeviceInfo) -> list[PendingRequest]:
        chunk = info.max_payload - 4
        if self._session_window > 1 and info.rx_buffer_bytes > 64:
            chunk = min(chunk, info.rx_buffer_bytes - 14)   # a chunk fits the ring: it can travel early
        return [self.submit(Msg.WRITE_INPUT, struct.pack("<I", offset) + inputs[offset:offset + chunk])
                for offset in range(0, len(inputs), chunk)]

    def _submit_reads(self, info: DeviceInfo) -> list[PendingRequest]:
        reads, offset = [], 0
        while offset < info.output_bytes:
            n = min(info.max_payload, info.output_bytes - offset)
            reads.append(self.submit(Msg.READ_OUTPUT, struct.pack("<IH", offset, n)))
            offset += n
        return reads

    def _assemble(self, writes: list[PendingRequest], infer: PendingRequest, reads: list[PendingRequest],
                  info: DeviceInfo) -> InferResult:
        for req in writes:
            self.collect(req)
        payload = self.collect(infer)
        (ticks,) = struct.unpack_from("<Q", payload)
        output = payload[8:8 + info.output_bytes] if not reads else b"".join(self.collect(r) for r in reads)
        pre = struct.unpack_from("<I", payload, len(payload) - 4)[0] if info.infer_trailer_bytes else None
        return InferResult(output=output, ticks=ticks, preprocess_ticks=pre)

    def profile(self) -> list[int]:
        """Ticks per op of the last inference."""
        payload = self.request(Msg.PROFILE)
        (count,) = struct.unpack_from("<H", payload)
        return list(struct.unpack_from(f"<{count}I", payload, 2))


def _link_socket(transport: Transport) -> socket.socket | None:
    """The socket of a pyserial socket:// port (non-blocking once connected), else None."""
    from serial.urlhandler.protocol_socket import Serial as SocketSerial

    if not (isinstance(transport, SocketSerial) and transport.is_open):
        return None
    sock = getattr(transport, "_socket", None)   # pyserial keeps it there; only its options are touched
    return sock if isinstance(sock, socket.socket) else None

"""The retransmitting, pipelining client (host/link/client.py) against a fake transport (no device)."""

from __future__ import annotations

import struct

import pytest

from host.link.client import Client
from host.link.frame import FrameDecoder, encode_frame
from host.link.messages import PROTOCOL_VERSION, DeviceError, DeviceErrorFrame, Msg
from tests.support.link import info_payload


class FakeTransport:
    """Answers each request frame with a scripted function of (type, seq, payload)."""

    def __init__(self, respond) -> None:  # noqa: ANN001
        self.respond, self.pending, self.decoder = respond, bytearray(), FrameDecoder()
        self.requests: list[tuple[int, bytes]] = []

    def write(self, data: bytes) -> int:
        for frame in self.decoder.feed(data):
            self.requests.append((frame.type, frame.payload))
            self.pending += self.respond(frame.type, frame.seq, frame.payload)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self.pending)


def device(msg_type: int, seq: int, payload: bytes) -> bytes:
    if msg_type == Msg.INFO:
        return encode_frame(0x81, seq, info_payload())
    if msg_type == Msg.INFER:
        return encode_frame(0x82, seq, struct.pack("<Q", 99) + bytes(reversed(payload[:10])))
    return encode_frame(Msg.ERROR, seq, bytes([4, msg_type]) + b"unknown request type")


def test_client_handshake_infer_and_error_frames() -> None:
    client = Client(FakeTransport(device), timeout_s=1)
    assert client.handshake().board == "fake"
    result = client.infer(bytes(range(64)))
    assert result.ticks == 99 and result.output == bytes(reversed(range(10)))
    with pytest.raises(DeviceErrorFrame, match="UNKNOWN_TYPE"):
        client.request(0x33)
    with pytest.raises(DeviceError, match="the model takes 64"):
        client.infer(b"\x00" * 3)


def test_client_ignores_stale_responses() -> None:
    def stale_then_right(msg_type: int, seq: int, payload: bytes) -> bytes:
        return encode_frame(0x85, (seq - 1) & 0xFF, b"old") + encode_frame(0x85, seq, payload)

    assert Client(FakeTransport(stale_then_right), timeout_s=1).echo(b"new") == b"new"


def test_protocol_version_mismatch_is_refused() -> None:
    def old_device(msg_type: int, seq: int, payload: bytes) -> bytes:
        return encode_frame(0x81, seq, info_payload(version=9))

    with pytest.raises(DeviceError, match="protocol version 9"):
        Client(FakeTransport(old_device), timeout_s=1).handshake()


def test_silent_device_times_out_with_a_hint() -> None:
    client = Client(FakeTransport(lambda *a: b""), timeout_s=0.2)
    with pytest.raises(DeviceError, match="stopped answering") as err:
        client.handshake()
    assert "make flash" in (err.value.hint or "")


def test_large_inputs_are_chunked_with_write_input() -> None:
    stored = bytearray(10_000)

    def big_device(msg_type: int, seq: int, payload: bytes) -> bytes:
        if msg_type == Msg.INFO:
            return encode_frame(0x81, seq, info_payload(input_bytes=10_000, output_bytes=5000))
        if msg_type == Msg.WRITE_INPUT:
            (offset,) = struct.unpack_from("<I", payload)
            stored[offset:offset + len(payload) - 4] = payload[4:]
            return encode_frame(0x83, seq, b"")
        if msg_type == Msg.INFER:
            assert payload == b""
            return encode_frame(0x82, seq, struct.pack("<Q", 5))
        offset, n = struct.unpack("<IH", payload)
        return encode_frame(0x84, seq, bytes(stored[offset:offset + n]))

    client = Client(FakeTransport(big_device), timeout_s=1)
    data = bytes(i % 251 for i in range(10_000))
    result = client.infer(data)
    assert bytes(stored) == data and result.output == data[:5000] and result.ticks == 5


def test_damaged_request_is_sent_again() -> None:
    failures = {"left": 2}

    def flaky(msg_type: int, seq: int, payload: bytes) -> bytes:
        if failures["left"]:
            failures["left"] -= 1
            return encode_frame(Msg.ERROR, seq, bytes([3, msg_type]) + b"frame truncated")
        return encode_frame(msg_type | 0x80, seq, payload)

    transport = FakeTransport(flaky)
    client = Client(transport, timeout_s=1)
    assert client.echo(b"again") == b"again"
    assert client.retries == 2 and [t for t, _ in transport.requests] == [Msg.ECHO] * 3


def test_persistent_transit_errors_give_up_with_the_device_error() -> None:
    def broken(msg_type: int, seq: int, payload: bytes) -> bytes:
        return encode_frame(Msg.ERROR, seq, bytes([1, msg_type]) + b"frame CRC mismatch")

    client = Client(FakeTransport(broken), timeout_s=1, max_retries=2)
    with pytest.raises(DeviceErrorFrame, match="BAD_CRC"):
        client.echo(b"x")
    assert client.retries == 2


def test_execution_errors_are_not_retried() -> None:
    transport = FakeTransport(device)
    client = Client(transport, timeout_s=1)
    with pytest.raises(DeviceErrorFrame):
        client.request(0x33)
    assert client.retries == 0 and len(transport.requests) == 1


# ---------------------------------------------------------------- version 2: retransmission and replay


class ReplayingDevice:
    """A fake v2 device: runs each new (type, seq, payload) once, answers repeats from its record;
    `runs` counts executions. `lose` decides per (direction, type, seq, copy) to drop a frame."""

    def __init__(self, lose=lambda direction, msg_type, seq, copy: False, keep: int = 1000) -> None:  # noqa: ANN001
        self.lose, self.keep = lose, keep      # keep: requests remembered (the firmware: 4)
        self.history: dict[tuple[int, int, bytes], bytes] = {}
        self.runs: dict[int, int] = {}
        self.copies: dict[tuple[str, int, int], int] = {}
        self.state = 0

    def _copy(self, direction: str, msg_type: int, seq: int) -> int:
        key = (direction, msg_type, seq)
        self.copies[key] = self.copies.get(key, 0) + 1
        return self.copies[key]

    def __call__(self, msg_type: int, seq: int, payload: bytes) -> bytes:
        if self.lose("request", msg_type, seq, self._copy("request", msg_type, seq)):
            return b""
        key = (msg_type, seq, payload)
        if key not in self.history:
            self.runs[seq] = self.runs.get(seq, 0) + 1
            self.history[key] = self._run(msg_type, seq, payload)
            if len(self.history) > self.keep:
                del self.history[next(iter(self.history))]
        if self.lose("response", msg_type, seq, self._copy("response", msg_type, seq)):
            return b""
        return self.history[key]

    def _run(self, msg_type: int, seq: int, payload: bytes) -> bytes:
        if msg_type == Msg.INFO:
            return encode_frame(0x81, seq, info_payload(extra=struct.pack("<HBHB", 1024, 4, 100, 4)))
        if msg_type == Msg.INFER:
            self.state += 1                      # a second run would be visible in the ticks
            return encode_frame(0x82, seq, struct.pack("<Q", self.state) + bytes(reversed(payload[:10])))
        return encode_frame(msg_type | 0x80, seq, payload)


def fast_client(transport: FakeTransport, **kwargs) -> Client:  # noqa: ANN003
    client = Client(transport, timeout_s=5, **kwargs)
    client.FIRST_RTO_S = client.MIN_RTO_S = 0.05   # type: ignore[misc]
    client.IDLE_BEFORE_RESEND_S = 0.01             # type: ignore[misc]
    return client


def test_handshake_states_the_host_version_and_window() -> None:
    transport = FakeTransport(ReplayingDevice())
    info = fast_client(transport, window=3).handshake()
    assert transport.requests[0] == (Msg.INFO, struct.pack("<HB", PROTOCOL_VERSION, 3))
    assert (info.rx_buffer_bytes, info.history, info.replay_bytes, info.window) == (1024, 4, 100, 4)


def test_version_mismatch_names_both_versions() -> None:
    def v3_device(msg_type: int, seq: int, payload: bytes) -> bytes:
        return encode_frame(0x81, seq, info_payload(version=3))

    with pytest.raises(DeviceError, match="device speaks protocol version 3, this host speaks version 2"):
        Client(FakeTransport(v3_device), timeout_s=1).handshake()


def test_lost_response_is_retransmitted_and_replayed_not_rerun() -> None:
    device = ReplayingDevice(lambda d, t, s, copy: d == "response" and t == Msg.INFER and copy == 1)
    client = fast_client(FakeTransport(device))
    client.handshake()
    result = client.infer(bytes(range(64)))
    assert result.ticks == 1 and result.output == bytes(reversed(range(10)))
    assert client.retries == 1 and client.timeouts == 1 and max(device.runs.values()) == 1


def test_lost_request_is_retransmitted() -> None:
    device = ReplayingDevice(lambda d, t, s, copy: d == "request" and t == Msg.ECHO and copy <= 2)
    client = fast_client(FakeTransport(device))
    assert client.echo(b"third time") == b"third time"
    assert client.retries == 2


def test_retries_are_bounded_with_a_clear_error() -> None:
    device = ReplayingDevice(lambda d, t, s, copy: t == Msg.ECHO)
    client = fast_client(FakeTransport(device), max_retries=2)
    client.timeout_s = 1.0
    with pytest.raises(DeviceError, match=r"stopped answering .*seq 1.*3 attempts"):
        client.echo(b"void")
    assert client.retries == 2


def test_late_duplicate_response_is_dropped() -> None:
    late: list[bytes] = []
    calls = {"n": 0}

    def slow_echo(msg_type: int, seq: int, payload: bytes) -> bytes:
        calls["n"] += 1
        reply = encode_frame(msg_type | 0x80, seq, payload)
        if calls["n"] == 1:                # the first answer arrives only after the retry ...
            late.append(reply)
            return b""
        out = b"".join(late) + reply       # ... followed by the replayed one: a duplicate
        late.clear()
        return out

    client = fast_client(FakeTransport(slow_echo))
    assert client.echo(b"one") == b"one"
    assert client.echo(b"two") == b"two"
    assert client.retries == 1 and client.dropped_frames == 1


def test_pipelined_inferences_keep_order_through_a_lost_response() -> None:
    device = ReplayingDevice(lambda d, t, s, copy: d == "response" and s == 5 and copy == 1)
    transport = FakeTransport(device)
    client = fast_client(transport, window=3)
    client.handshake()
    inputs = [bytes([i]) * 64 for i in range(12)]
    results = list(client.infer_many(inputs))
    assert [r.output for r in results] == [bytes([i]) * 10 for i in range(12)]
    assert [r.ticks for r in results] == list(range(1, 13))       # each ran once, in order
    assert max(device.runs.values()) == 1 and client.retries >= 1
    assert not client.pending


def test_window_slides_from_the_oldest_unanswered_request() -> None:
    # The response to seq 5 is lost twice; later ones arrive. Sending more than `window` seqs past
    # seq 5 would push it out of a 4-request history, so its retransmission would run again.
    device = ReplayingDevice(lambda d, t, s, copy: d == "response" and s == 5 and copy <= 2, keep=4)
    client = fast_client(FakeTransport(device), window=4)
    client.handshake()
    results = list(client.infer_many([bytes([i]) * 64 for i in range(12)]))
    assert [r.output for r in results] == [bytes([i]) * 10 for i in range(12)]
    assert max(device.runs.values()) == 1

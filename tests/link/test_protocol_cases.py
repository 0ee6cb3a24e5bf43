"""docs/protocol.md's guarantees in the cases a client written from the spec alone found
(issue 18, part 1), with the exact bytes, through a real QEMU boot; and a property-based
test (hypothesis) that drives random valid, replayed, reordered and damaged frames.

Invariants: every request runs at most once (a WRITE_INPUT chunk or INFER copy that arrives
again is replayed or refused, never run), every response belongs to its request (seq and
type), a valid request after any garbage is served, and a new host session (INFO with a
payload) always handshakes on a device that kept running.
"""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.core.boards import load_board
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL
from host.engine.reference import ReferenceInterpreter
from host.link.device import Device, attach
from host.link.frame import FrameDecoder, encode_frame
from host.link.messages import Msg
from tests.support.link import exchange, quiet

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

INFO_W1 = bytes.fromhex("a55a010103000200014799 64c3".replace(" ", ""))
ECHO_HI = bytes.fromhex("a55a050202006869a8938ca8")
INFER_RESPONSE = "a55a820412004a0b000000000000f68c808080808780f680b6d54a3b"     # 2,890 ticks
SEQ_GAP_RESPONSE = "a55a7f0c200009056f7574206f66206f726465723a20657870656374656420736571203031315068101a"
BAD_CRC, BAD_LENGTH, SEQ_GAP, REPLAY_LOST, BAD_SEQ = 1, 5, 9, 10, 11


@pytest.fixture(scope="module")
def reference() -> ReferenceInterpreter:
    return ReferenceInterpreter(DEFAULT_MODEL)


def error_of(frame) -> tuple[int, int]:  # noqa: ANN001
    assert frame.type == Msg.ERROR, frame
    return frame.payload[0], frame.payload[1]


def hello(seq: int, window: int) -> bytes:
    return encode_frame(Msg.INFO, seq, struct.pack("<HB", 2, window))


def write(seq: int, offset: int, data: bytes) -> bytes:
    return encode_frame(Msg.WRITE_INPUT, seq, struct.pack("<I", offset) + data)


def test_rehandshake_on_a_running_device(device: Device) -> None:
    (first,) = exchange(device, INFO_W1)
    assert first.type == Msg.INFO | 0x80 and len(first.payload) == 149
    assert exchange(device, ECHO_HI)[0].payload == b"hi"
    (again,) = exchange(device, INFO_W1)           # a restarted host sends the same bytes
    assert again == first


@pytest.mark.parametrize("between", [0, 1])
def test_attach_twice_on_one_link(device: Device, model, between: int) -> None:  # noqa: ANN001
    board = load_board(DEFAULT_BOARD)
    link = device.client.transport
    quiet(device)
    with attach(board, link, model.sha256, timeout_s=10) as first:
        for _ in range(between):
            first.infer(bytes(64))
    with attach(board, link, model.sha256, timeout_s=10) as second:
        assert second.infer(bytes(64)).ticks > 0
    device.client.handshake()


def test_stale_copy_is_not_run_again_at_window_1(device: Device, reference) -> None:  # noqa: ANN001
    a = np.arange(64, dtype=np.int8).tobytes()
    b = (-np.arange(64)).astype(np.int8).tobytes()
    assert exchange(device, hello(1, 1))[0].type == Msg.INFO | 0x80
    stale = write(2, 0, a)
    assert exchange(device, stale)[0].type == Msg.WRITE_INPUT | 0x80
    for seq in range(3, 7):
        assert exchange(device, encode_frame(Msg.ECHO, seq, b"e"))[0].payload == b"e"
    assert exchange(device, write(7, 0, b))[0].type == Msg.WRITE_INPUT | 0x80
    (refused,) = exchange(device, stale)
    assert refused.seq == 2 and error_of(refused) == (REPLAY_LOST, Msg.WRITE_INPUT)
    (out,) = exchange(device, encode_frame(Msg.INFER, 8, b""))
    assert out.payload[8:] == reference.run(np.frombuffer(b, np.int8).reshape(1, 8, 8, 1))[0].tobytes()
    device.client.handshake()


@pytest.mark.parametrize("window", [1, 4])
def test_seq_0_is_refused_and_moves_nothing(device: Device, window: int) -> None:
    assert exchange(device, hello(1, window))[0].type == Msg.INFO | 0x80
    (refused,) = exchange(device, encode_frame(Msg.ECHO, 0, b"zero"))
    assert refused.seq == 0 and error_of(refused) == (BAD_SEQ, Msg.ECHO)
    assert exchange(device, encode_frame(Msg.ECHO, 2, b"next"))[0].payload == b"next"
    device.client.handshake()


@pytest.mark.parametrize(("msg_type", "payload"), [
    (Msg.INFO, b"\x02"), (Msg.INFO, b"\x02\x00\x01\x00"), (Msg.INFO, bytes(100)),
    (Msg.PROFILE, b"\x00"), (Msg.PROFILE, bytes(10)),
])
def test_payload_sizes_are_checked(device: Device, msg_type: int, payload: bytes) -> None:
    device.client.handshake()
    seq = device.client.seq % 255 + 1
    device.client.seq = seq
    (reply,) = exchange(device, encode_frame(msg_type, seq, payload))
    assert reply.seq == seq and error_of(reply) == (BAD_LENGTH, msg_type)
    device.client.handshake()


@pytest.mark.parametrize("window", [1, 4])
def test_same_seq_other_crc_is_refused_at_every_window(device: Device, window: int) -> None:
    assert exchange(device, hello(1, window))[0].type == Msg.INFO | 0x80
    assert exchange(device, encode_frame(Msg.ECHO, 2, b"first"))[0].payload == b"first"
    (refused,) = exchange(device, encode_frame(Msg.ECHO, 2, b"other"))
    assert error_of(refused) == (REPLAY_LOST, Msg.ECHO) and b"seq already used" in refused.payload
    device.client.handshake()


def test_empty_info_keeps_the_window(device: Device) -> None:
    assert exchange(device, hello(1, 4))[0].payload[-1] == 4
    (legacy,) = exchange(device, encode_frame(Msg.INFO, 2, b""))
    assert legacy.payload[-1] == 4                 # the session's window, unchanged
    (gap,) = exchange(device, encode_frame(Msg.ECHO, 4, b"x"))
    assert error_of(gap) == (SEQ_GAP, Msg.ECHO) and b"expected seq 003" in gap.payload
    device.client.handshake()


def test_truncated_header_and_lone_sync_byte(device: Device) -> None:
    (reply,) = exchange(device, b"\xa5\x5a\x05")   # header incomplete: seq 0, request type 0
    assert reply.seq == 0 and error_of(reply) == (3, 0)
    assert exchange(device, b"\xa5", wait_s=0.5) == []     # not inside a frame: no error
    device.client.handshake()


def test_spec_examples(device: Device) -> None:
    """docs/protocol.md's hex examples, byte for byte."""
    assert exchange(device, INFO_W1)[0].type == Msg.INFO | 0x80
    assert exchange(device, ECHO_HI)[0] == FrameDecoder().feed(bytes.fromhex("a55a85020200686970873cb6"))[0]
    infer = bytes.fromhex("a55a02044000") + bytes(64) + bytes.fromhex("d3d2ba4f")
    (out,) = exchange(device, infer)
    (spec,) = FrameDecoder().feed(bytes.fromhex(INFER_RESPONSE))
    # the tick count (the payload's first u32) may differ by one tick between runs of the same code
    assert (out.type, out.seq, out.payload[4:]) == (spec.type, spec.seq, spec.payload[4:])
    assert abs(int.from_bytes(out.payload[:4], "little") - 2890) <= 1
    assert exchange(device, hello(1, 4))[0].payload[-1] == 4
    for seq in range(2, 11):
        exchange(device, encode_frame(Msg.ECHO, seq, b"."))
    (gap,) = exchange(device, bytes.fromhex("a55a050c01006296ad6ae6"))
    assert encode_frame(gap.type, gap.seq, gap.payload) == bytes.fromhex(SEQ_GAP_RESPONSE)
    device.client.handshake()


# ------------------------------------------------------------- property-based

def _script() -> st.SearchStrategy:
    action = st.one_of(
        st.tuples(st.just("write"), st.integers(0, 63), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("write"), st.just(0), st.binary(min_size=64, max_size=64)),   # the whole input
        st.tuples(st.just("infer")),
        st.tuples(st.just("echo"), st.binary(max_size=20)),
        st.tuples(st.just("replay"), st.integers(0, 8)),          # an earlier frame again
        st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=40)),
        st.tuples(st.just("damage"), st.integers(0, 1000)),       # the next frame with one bit flipped
        st.tuples(st.just("cut"), st.integers(1, 12)),            # the next frame cut, line idle
    )
    return st.tuples(st.integers(1, 4), st.integers(1, 255), st.lists(action, min_size=3, max_size=14))


def run_script(device: Device, reference, window: int, start: int, actions: list) -> None:  # noqa: ANN001
    """One session at `window`, requests one at a time; checks the invariants against a model."""
    seq = start
    frames: list[tuple[bytes, int, int]] = []    # (frame, seq, type) sent and run, in order
    state = bytearray(64)                        # the device's input, as the model sees it
    known = [True] * 64                          # which input bytes are defined (an INFER consumes the input)
    (h,) = exchange(device, hello(seq, window))
    assert h.type == Msg.INFO | 0x80 and h.seq == seq
    seq = seq % 255 + 1                          # the input starts known: all zero
    assert exchange(device, write(seq, 0, bytes(64)))[0].type == Msg.WRITE_INPUT | 0x80
    damage: int | None = None
    cut: int | None = None
    for action in actions:
        kind = action[0]
        if kind == "garbage":
            exchange(device, action[1], frames=99, wait_s=0.2)
            continue
        if kind == "damage":
            damage = action[1]
            continue
        if kind == "cut":
            cut = action[1]
            continue
        if kind == "replay":
            if not frames:
                continue
            frame, fseq, ftype = frames[-1 - action[1] % len(frames)]
            (reply,) = exchange(device, frame)
            assert reply.seq == fseq
            recent = frames.index((frame, fseq, ftype)) >= len(frames) - 4
            if reply.type == Msg.ERROR:
                assert reply.payload[0] == REPLAY_LOST and not recent  # never run again
            else:
                assert reply.type == ftype | 0x80
            continue
        seq = seq % 255 + 1
        if kind == "write":
            offset = action[1]
            data = action[2][:64 - offset]
            frame, ftype = write(seq, offset, data), Msg.WRITE_INPUT
        elif kind == "infer":
            frame, ftype = encode_frame(Msg.INFER, seq, b""), Msg.INFER
        else:
            frame, ftype = encode_frame(Msg.ECHO, seq, action[1]), Msg.ECHO
        if damage is not None:
            bad = bytearray(frame)
            bit = damage % (8 * (len(bad) - 2)) + 16
            bad[bit // 8] ^= 1 << (bit % 8)
            exchange(device, bytes(bad), frames=3, wait_s=0.3)     # whatever it provokes
            damage = None
        if cut is not None:
            exchange(device, frame[:min(cut, len(frame) - 1)], frames=1, wait_s=0.4)
            cut = None
        (reply,) = exchange(device, frame)                          # a valid request is served
        assert reply.seq == seq
        assert reply.type == ftype | 0x80, reply
        frames.append((frame, seq, ftype))
        if ftype == Msg.WRITE_INPUT:
            state[offset:offset + len(data)] = data
            known[offset:offset + len(data)] = [True] * len(data)
        elif ftype == Msg.INFER:
            if all(known):   # every write ran exactly once (docs/protocol.md: an INFER consumes its input)
                x = np.frombuffer(bytes(state), np.int8).reshape(1, 8, 8, 1)
                assert reply.payload[8:] == reference.run(x)[0].tobytes()
            known = [False] * 64
        else:
            assert reply.payload == action[1]


def _property(count: int):  # noqa: ANN202
    @settings(max_examples=count, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(script=_script())
    def check(device: Device, reference, script) -> None:  # noqa: ANN001
        window, start, actions = script
        run_script(device, reference, window, start, actions)
    return check


test_random_traffic_keeps_the_invariants = pytest.mark.slow(_property(30))   # 41 s (2026-12-07)
# 792 s (2026-12-07, beside other tests): past pyproject's 600 s timeout
test_random_traffic_keeps_the_invariants_long = pytest.mark.timeout(7200)(pytest.mark.slow(_property(400)))


def test_an_infer_consumes_its_input(device: Device, reference) -> None:  # noqa: ANN001
    """docs/protocol.md: after an INFER the stored input is undefined; written again, it is exact again.
    (The property test found it: on digits, a second empty INFER after zeros gave another output.)"""
    zeros = np.zeros((1, 8, 8, 1), np.int8)
    expected = reference.run(zeros)[0].tobytes()
    exchange(device, hello(1, 1))
    assert exchange(device, write(2, 0, bytes(64)))[0].type == Msg.WRITE_INPUT | 0x80
    assert exchange(device, encode_frame(Msg.INFER, 3, b""))[0].payload[8:] == expected
    (again,) = exchange(device, encode_frame(Msg.INFER, 4, b""))
    assert again.type == Msg.INFER | 0x80     # served; its output is whatever the arena left (not checked)
    assert exchange(device, write(5, 0, bytes(64)))[0].type == Msg.WRITE_INPUT | 0x80
    assert exchange(device, encode_frame(Msg.INFER, 6, b""))[0].payload[8:] == expected
    device.client.handshake()

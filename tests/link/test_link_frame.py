"""The wire frame (host/link/frame.py): encoding, CRC and the incremental decoder (no device)."""

from __future__ import annotations

import struct
import zlib

from host.link.frame import FrameDecoder, encode_frame
from host.link.messages import PROTOCOL_VERSION, Msg


def test_frame_matches_documented_example() -> None:
    assert encode_frame(Msg.INFO, 1).hex(" ") == "a5 5a 01 01 00 00 4e d2 3a 98"
    assert encode_frame(Msg.ECHO, 2, b"hi").hex(" ") == "a5 5a 05 02 02 00 68 69 a8 93 8c a8"
    hello = encode_frame(Msg.INFO, 1, struct.pack("<HB", PROTOCOL_VERSION, 1))
    assert hello.hex(" ") == "a5 5a 01 01 03 00 02 00 01 47 99 64 c3"


def test_crc_covers_header_and_payload() -> None:
    frame = encode_frame(0x05, 7, b"abc")
    (crc,) = struct.unpack("<I", frame[-4:])
    assert crc == zlib.crc32(frame[2:-4])


def test_decoder_says_how_many_bytes_the_frame_at_its_head_still_needs() -> None:
    """What the link waits for in one wake-up on a socket (SO_RCVLOWAT)."""
    frame = encode_frame(0x81, 7, bytes(10))            # 2 sync + 4 header + 10 payload + 4 CRC
    decoder = FrameDecoder(max_payload=4096)
    assert decoder.missing() == 6                        # sync and header, then the length is known
    decoder.feed(frame[:3])
    assert decoder.missing() == 3
    decoder.feed(frame[3:6])
    assert decoder.missing() == 14
    decoder.feed(frame[6:19])
    assert decoder.missing() == 1
    assert len(decoder.feed(frame[19:])) == 1 and decoder.missing() == 6
    decoder.feed(b"\xa5\x5a\x81\x07\xff\xff")              # a length beyond max_payload: skipped at once,
    assert decoder.missing() == 5                        # one byte kept in case it starts a sync


def test_decoder_skips_garbage_and_bad_crc_and_splits_stream() -> None:
    good1, good2 = encode_frame(0x85, 1, b"x" * 10), encode_frame(0x81, 2, b"")
    corrupt = bytearray(encode_frame(0x85, 3, b"zz"))
    corrupt[7] ^= 0x01
    stream = b"\x00\xa5garbage" + bytes(corrupt) + good1 + b"\xa5" + good2
    decoder = FrameDecoder()
    frames = [f for i in range(len(stream)) for f in decoder.feed(stream[i:i + 1])]
    assert [(f.type, f.seq, f.payload) for f in frames] == [(0x85, 1, b"x" * 10), (0x81, 2, b"")]
    assert decoder.dropped >= 1

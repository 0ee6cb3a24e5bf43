"""The protocol's messages (host/link/messages.py): payload decoding and error frames (no device)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from host.compiler.types import TensorInfo
from host.link.frame import Frame
from host.link.messages import (
    DeviceError,
    DeviceErrorFrame,
    Msg,
    error_from_frame,
    outputs_from_bytes,
    parse_info,
)
from tests.support.link import info_payload


def test_parse_info_fields() -> None:
    info = parse_info(info_payload())
    assert (info.protocol_version, info.board, info.cpu, info.arena_bytes, info.n_ops) == (2, "fake", "cortex-m4",
                                                                                          1234, 7)
    assert info.inputs[0].shape == (1, 64) and info.inputs[0].zero_point == -3 and info.inputs[0].scale == 0.5
    assert info.model_sha256 == bytes(range(32))


def test_truncated_info_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="malformed INFO"):
        parse_info(info_payload()[:20])


def test_error_frame_names_its_code_and_request() -> None:
    err = error_from_frame(Frame(Msg.ERROR, 4, bytes([4, 0x33]) + b"unknown request type"))
    assert isinstance(err, DeviceErrorFrame) and (err.code, err.request) == (4, 0x33)
    assert str(err) == "device error UNKNOWN_TYPE (request 0x33): unknown request type"
    assert "code 99" in str(error_from_frame(Frame(Msg.ERROR, 5, bytes([99, 1]))))


def test_outputs_from_bytes_splits_and_shapes_each_tensor() -> None:
    outputs = [TensorInfo("a", "int8", (1, 3), 0.5, 0), TensorInfo("b", "int16", (2,), 1.0, 0)]
    raw = bytes([1, 2, 255]) + struct.pack("<hh", -2, 300)
    a, b = outputs_from_bytes(raw, outputs)
    assert a.dtype == np.int8 and a.tolist() == [[1, 2, -1]]
    assert b.dtype == np.int16 and b.tolist() == [-2, 300]

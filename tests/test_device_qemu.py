"""The firmware's protocol in a real QEMU boot: answers, error frames, robustness, bit-exact inference.

One firmware (the default digits model on mps2-an386) is built into a temporary
directory and booted once for the module; every test talks to it over the real
socket link. Malformed traffic must get an error frame, never a crash or hang:
each test ends by checking that the device still answers INFO.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from host.boards import load_board
from host.build import build_firmware
from host.compiler import compile_tflite
from host.device import Device, boot_elf
from host.paths import DEFAULT_BOARD, DEFAULT_MODEL, ROOT
from host.protocol import HEADER, SYNC, DeviceErrorFrame, FrameDecoder, Msg, encode_frame
from host.reference import ReferenceInterpreter

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return compile_tflite(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def device(model, tmp_path_factory) -> Iterator[Device]:  # noqa: ANN001
    board = load_board(DEFAULT_BOARD)
    image = build_firmware(model, board, out_dir=tmp_path_factory.mktemp("fw"))
    with boot_elf(board, image.elf, model.sha256, timeout_s=10) as dev:
        yield dev


def raw_exchange(dev: Device, data: bytes, wait_s: float = 10.0, frames: int = 1) -> list:
    """Write raw bytes; collect response frames until `frames` arrived or `wait_s` passed."""
    link = dev.client.transport
    drain(dev)
    link.write(data)
    decoder, got = FrameDecoder(), []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(got) < frames:
        got += decoder.feed(link.read(max(1, link.in_waiting)))
    return got


def drain(dev: Device) -> None:
    link = dev.client.transport
    time.sleep(0.05)
    while link.in_waiting:
        link.read(link.in_waiting)
        time.sleep(0.05)


def still_answers(dev: Device) -> None:
    drain(dev)
    assert dev.client.handshake().board == DEFAULT_BOARD


def error_of(frame) -> tuple[int, int]:  # noqa: ANN001
    assert frame.type == Msg.ERROR, frame
    return frame.payload[0], frame.payload[1]


def test_info_describes_board_and_model(device: Device, model) -> None:  # noqa: ANN001
    info = device.info
    assert info.protocol_version == 2 and info.max_payload == 4096
    assert (info.board, info.cpu, info.tick_hz) == ("mps2-an386", "cortex-m4", 25_000_000)
    assert info.model_sha256 == model.sha256 and info.arena_bytes == model.arena_bytes
    assert info.n_ops == len(model.ops)
    assert [(t.dtype, t.shape, t.scale, t.zero_point) for t in info.inputs] == \
        [(t.dtype, t.shape, np.float32(t.scale), t.zero_point) for t in model.inputs]
    assert info.outputs[0].shape == (1, 10) and info.outputs[0].dtype == "int8"


def test_echo_full_payload(device: Device) -> None:
    payload = bytes(i * 7 % 256 for i in range(4096))
    assert device.client.echo(payload) == payload


def test_inference_bit_exact_with_reference(device: Device, model) -> None:  # noqa: ANN001
    reference = ReferenceInterpreter(DEFAULT_MODEL)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.integers(-128, 128, size=model.inputs[0].shape, dtype=np.int8)
        (ours,), result = device.infer_arrays(x)
        assert ours.tobytes() == reference.run(x)[0].tobytes()
        assert result.instructions == result.ticks * 40 and 1_000_000 < result.instructions < 2_000_000


def test_write_input_then_infer_and_read_output(device: Device, model) -> None:  # noqa: ANN001
    x = np.arange(64, dtype=np.int8).reshape(model.inputs[0].shape)
    client = device.client
    client.request(Msg.WRITE_INPUT, struct.pack("<I", 0) + x.tobytes()[:30])
    client.request(Msg.WRITE_INPUT, struct.pack("<I", 30) + x.tobytes()[30:])
    payload = client.request(Msg.INFER, b"")
    assert client.request(Msg.READ_OUTPUT, struct.pack("<IH", 0, 10)) == payload[8:]
    assert payload[8:] == ReferenceInterpreter(DEFAULT_MODEL).run(x)[0].tobytes()


def test_profile_sums_to_inference_ticks(device: Device, model) -> None:  # noqa: ANN001
    result = device.infer(bytes(64))
    per_op = device.profile()
    assert len(per_op) == len(model.ops) and all(t >= 0 for t in per_op)
    assert abs(sum(per_op) - result.ticks) <= len(per_op) + 2


@pytest.mark.parametrize(("request_type", "payload", "code"), [
    (Msg.INFER, b"\x01" * 63, 5),                            # BAD_LENGTH
    (Msg.WRITE_INPUT, struct.pack("<I", 60) + b"x" * 8, 6),  # BAD_OFFSET
    (Msg.READ_OUTPUT, struct.pack("<IH", 8, 3), 6),          # BAD_OFFSET
    (Msg.READ_OUTPUT, b"\x00", 5),                           # BAD_LENGTH
    (0x42, b"", 4),                                          # UNKNOWN_TYPE
])
def test_bad_requests_get_error_codes(device: Device, request_type: int, payload: bytes, code: int) -> None:
    with pytest.raises(DeviceErrorFrame) as err:
        device.client.request(request_type, payload)
    assert err.value.code == code and err.value.request == request_type
    still_answers(device)


def test_corrupt_crc_is_rejected_not_executed(device: Device) -> None:
    frame = bytearray(encode_frame(Msg.ECHO, 77, b"hello"))
    frame[8] ^= 0x20
    (reply,) = raw_exchange(device, bytes(frame))
    assert reply.seq == 77 and error_of(reply) == (1, Msg.ECHO)
    still_answers(device)


def test_truncated_frame_times_out_and_next_frame_is_served(device: Device) -> None:
    frame = encode_frame(Msg.ECHO, 78, b"x" * 100)
    (reply,) = raw_exchange(device, frame[:50], wait_s=5)
    assert reply.seq == 78 and error_of(reply) == (3, Msg.ECHO)
    assert raw_exchange(device, encode_frame(Msg.ECHO, 79, b"ok"))[0].payload == b"ok"


def test_oversized_frame_is_refused_and_discarded(device: Device) -> None:
    header = SYNC + HEADER.pack(Msg.ECHO, 80, 5000)
    (reply,) = raw_exchange(device, header + bytes(5004))
    assert reply.seq == 80 and error_of(reply) == (2, Msg.ECHO)
    assert raw_exchange(device, encode_frame(Msg.ECHO, 81, b"after"))[0].payload == b"after"


def test_garbage_on_the_line_is_survived(device: Device) -> None:
    rng = np.random.default_rng(5)
    garbage = rng.integers(0, 256, size=20_000, dtype=np.uint8).tobytes()
    raw_exchange(device, garbage, wait_s=1.5, frames=10_000)  # whatever error frames it provokes
    time.sleep(0.3)  # let a discard triggered by a fake header run out
    still_answers(device)
    assert device.client.echo(b"alive") == b"alive"


# ------------------------------------------------------------- emulator lifetime


def _qemu_children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"qemu-system-arm" in cmdline:
            children.append(int(entry.name))
    return children


def _wait_gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid):
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]).lower()
    except (OSError, IndexError):
        return "gone"


@pytest.fixture(scope="module")
def flashed(model) -> None:  # noqa: ANN001
    subprocess.run([sys.executable, "-m", "host.flash"], cwd=ROOT, check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_emulator_stops_when_host_is_interrupted_or_killed(flashed, sig: int) -> None:  # noqa: ANN001
    code = ("from host.device import open_device\nimport time\n"
            "with open_device() as d:\n    print('up', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        (qemu,) = _qemu_children(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=15)
        assert _wait_gone(qemu), f"QEMU {qemu} still running after {signal.Signals(sig).name} to the host"
    finally:
        proc.kill()
        proc.wait()


def test_emulator_dying_mid_run_is_a_clear_device_error(model, tmp_path: Path) -> None:  # noqa: ANN001
    from host.protocol import DeviceError

    board = load_board(DEFAULT_BOARD)
    image = build_firmware(model, board, out_dir=tmp_path)
    before = set(_qemu_children(os.getpid()))  # the module's device is running too
    with boot_elf(board, image.elf, model.sha256, timeout_s=3) as dev:
        (qemu,) = set(_qemu_children(os.getpid())) - before
        os.kill(qemu, signal.SIGKILL)
        with pytest.raises(DeviceError, match="lost the link|stopped answering"):
            for _ in range(3):
                dev.infer(bytes(64))


def test_firmware_that_never_answers_times_out_cleanly(model, tmp_path: Path) -> None:  # noqa: ANN001
    from host.errors import UserError

    board = load_board(DEFAULT_BOARD)
    elf = tmp_path / "silent.elf"
    # A valid Cortex-M image whose reset handler spins forever: vector table of two words, then `b .`.
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-Wl,-Ttext=0", "-o", str(elf),
                    "-x", "assembler", "-"], input=".thumb\n.word 0x20001000\n.word reset+1\n"
                    ".thumb_func\nreset: b reset\n.global _start\n_start:\n",
                    check=True, capture_output=True, text=True)
    started = time.monotonic()
    with pytest.raises(UserError, match="did not complete the handshake"), \
            boot_elf(board, elf, model.sha256, timeout_s=2):
        pass
    assert time.monotonic() - started < 15

"""The firmware's protocol in a real QEMU boot: answers, error frames, robustness, bit-exact inference.

One firmware (the default digits model on mps2-an386) is built into a temporary
directory and booted once for the module; every test talks to it over the real
socket link. Malformed traffic must get an error frame, never a crash or hang:
each test ends by checking that the device still answers INFO.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import host.link.client
from host.core.boards import load_board
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL, ROOT
from host.emulators.launch import boot_elf, open_device
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter
from host.link.client import Client
from host.link.device import LINK_ENV, Device, connect
from host.link.frame import HEADER, SYNC, encode_frame
from host.link.images import read_flashed
from host.link.messages import DeviceError, DeviceErrorFrame, Msg
from tests.support.link import exchange, quiet

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]


def raw_exchange(dev: Device, data: bytes, wait_s: float = 10.0, frames: int = 1) -> list:
    """Write raw bytes; collect response frames until `frames` arrived or `wait_s` passed."""
    return exchange(dev, data, frames, wait_s, idle_s=0.05)


def drain(dev: Device) -> None:
    quiet(dev, idle_s=0.05)


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
        assert result.instructions == result.ticks * 40 and 100_000 < result.instructions < 2_000_000


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


# ------------------------------------------------------------- version 2: negotiation, replay, order


def test_version_negotiation(device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    # The host states its version; the device answers with its own (first field of INFO).
    (reply,) = raw_exchange(device, encode_frame(Msg.INFO, 90, struct.pack("<HB", 3, 1)))
    assert reply.type == Msg.INFO | 0x80 and struct.unpack_from("<H", reply.payload) == (2,)
    monkeypatch.setattr(host.link.client, "PROTOCOL_VERSION", 3)
    with pytest.raises(DeviceError, match="speaks protocol version 2, this host speaks version 3"):
        Client(device.client.transport, timeout_s=5).handshake()
    monkeypatch.undo()
    still_answers(device)


def test_retransmitted_infer_is_replayed_not_rerun(device: Device, model) -> None:  # noqa: ANN001
    reference = ReferenceInterpreter(DEFAULT_MODEL)
    x = np.arange(64, dtype=np.int8).reshape(model.inputs[0].shape)
    y = (-x).astype(np.int8)
    write_x = encode_frame(Msg.WRITE_INPUT, 101, struct.pack("<I", 0) + x.tobytes())
    infer = encode_frame(Msg.INFER, 102, b"")
    assert raw_exchange(device, write_x)[0].type == Msg.WRITE_INPUT | 0x80
    (first,) = raw_exchange(device, infer)
    assert first.payload[8:] == reference.run(x)[0].tobytes()
    assert raw_exchange(device, encode_frame(Msg.WRITE_INPUT, 103, struct.pack("<I", 0) + y.tobytes()))
    # The same INFER again (its response was "lost"): the recorded response, not a run on y.
    (again,) = raw_exchange(device, infer)
    assert again == first
    # A retransmitted chunk write is not applied again either: y stays the input.
    assert raw_exchange(device, write_x)[0].type == Msg.WRITE_INPUT | 0x80
    (fresh,) = raw_exchange(device, encode_frame(Msg.INFER, 104, b""))
    assert fresh.payload[8:] == reference.run(y)[0].tobytes()
    # A request duplicated on the line: two identical answers, one run.
    echo = encode_frame(Msg.ECHO, 105, b"twice")
    replies = raw_exchange(device, echo + echo, frames=2)
    assert [(r.seq, r.payload) for r in replies] == [(105, b"twice")] * 2
    still_answers(device)


def test_pipelined_session_runs_requests_in_order(device: Device) -> None:
    # With a window of 2, a request one ahead of the expected seq (its predecessor lost) is refused.
    (hello,) = raw_exchange(device, encode_frame(Msg.INFO, 110, struct.pack("<HB", 2, 2)))
    assert hello.payload[-1] == 2                       # the window the device accepted
    (gap,) = raw_exchange(device, encode_frame(Msg.ECHO, 112, b"early"))
    assert gap.seq == 112 and error_of(gap) == (9, Msg.ECHO) and b"expected seq 111" in gap.payload
    replies = raw_exchange(device, encode_frame(Msg.ECHO, 111, b"a") + encode_frame(Msg.ECHO, 112, b"b"), frames=2)
    assert [(r.seq, r.payload) for r in replies] == [(111, b"a"), (112, b"b")]
    still_answers(device)                               # a new handshake: window 1 again


def test_pipelined_inference_is_bit_exact_and_costs_the_same(device: Device, model) -> None:  # noqa: ANN001
    rng = np.random.default_rng(7)
    inputs = [rng.integers(-128, 128, 64, dtype=np.int8).tobytes() for _ in range(60)]
    one_by_one = [device.infer(x) for x in inputs]
    pipelined = list(device.infer_many(inputs, window=4))
    assert device.client.info is not None and device.client.info.window == 4
    device.client.set_window(1)
    assert [r.output for r in pipelined] == [r.output for r in one_by_one]
    # The receive interrupt is held off during tm_invoke: queued bytes add no instructions.
    assert max(abs(a.ticks - b.ticks) for a, b in zip(pipelined, one_by_one, strict=True)) <= 1


# ------------------------------------------------------------- explicit links: socket://, rfc2217://


class Rfc2217Bridge:
    """An RFC 2217 server on loopback (pyserial's PortManager) whose serial port is QEMU's TCP
    socket: what a remote board behind ser2net or pyserial's rfc2217_server.py looks like."""

    def __init__(self, qemu_port: int) -> None:
        import socket
        import threading

        self.qemu_port = qemu_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.alive = True
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self) -> None:
        import socket
        import threading

        import serial
        from serial.rfc2217 import PortManager

        client, _ = self.listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + 20
        while True:
            try:
                port = serial.serial_for_url(f"socket://127.0.0.1:{self.qemu_port}", timeout=0.05)
                break
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        bridge = self

        class Connection:
            def write(self, data: bytes) -> None:
                with bridge.lock:
                    client.sendall(data)

        manager = PortManager(port, Connection())

        def to_client() -> None:
            while self.alive:
                try:
                    data = port.read(port.in_waiting or 1)
                    if data:
                        Connection().write(b"".join(manager.escape(data)))
                except (OSError, AttributeError, serial.SerialException):
                    return   # the port was closed by the other side

        reader = threading.Thread(target=to_client, daemon=True)
        reader.start()
        self.threads.append(reader)
        try:
            while self.alive:
                data = client.recv(4096)
                if not data:
                    break
                port.write(b"".join(manager.filter(data)))
        except OSError:
            pass
        finally:
            self.alive = False
            reader.join(timeout=1)
            port.close()
            client.close()

    def close(self) -> None:
        self.alive = False
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=3)


def test_rfc2217_link_to_a_remote_board(flashed_default_board, model) -> None:  # noqa: ANN001
    from host.emulators.qemu import QemuProcess

    board = load_board(DEFAULT_BOARD)
    image = read_flashed(DEFAULT_BOARD)
    with QemuProcess(board, image.elf) as qemu:
        bridge = Rfc2217Bridge(qemu.launch())
        try:
            with open_device(url=f"rfc2217://127.0.0.1:{bridge.port}", timeout_s=10) as dev:
                assert dev.client.describe.endswith(f"(rfc2217://127.0.0.1:{bridge.port})")
                x = np.arange(64, dtype=np.int8).reshape(model.inputs[0].shape)
                (ours,), result = dev.infer_arrays(x)
                assert ours.tobytes() == ReferenceInterpreter(DEFAULT_MODEL).run(x)[0].tobytes()
                assert 100_000 < (result.instructions or 0) < 2_000_000
                assert dev.client.echo(bytes(range(256)) * 4) == bytes(range(256)) * 4  # 0xFF is escaped
        finally:
            bridge.close()


def test_link_url_from_the_environment(flashed_default_board, model, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from host.emulators.qemu import QemuProcess

    board = load_board(DEFAULT_BOARD)
    image = read_flashed(DEFAULT_BOARD)
    with QemuProcess(board, image.elf) as qemu:
        port = qemu.launch()
        time.sleep(0.3)   # QEMU opens its socket
        monkeypatch.setenv(LINK_ENV, f"socket://127.0.0.1:{port}")
        with open_device(timeout_s=10) as dev:
            assert dev.info.board == DEFAULT_BOARD and dev.infer(bytes(64)).ticks > 0


def test_evaluate_runs_its_chip_through_the_port(flashed_default_board, tmp_path: Path) -> None:  # noqa: ANN001
    """python -m host.evaluate --port: every chip inference over that link (a flag run used to boot an emulator
    of its own whatever --port said; tests/commands/test_board_links.py shows the link is opened)."""
    import json

    from host import evaluate
    from host.emulators.qemu import QemuProcess

    with QemuProcess(load_board(DEFAULT_BOARD), read_flashed(DEFAULT_BOARD).elf) as qemu:
        port = qemu.launch()
        time.sleep(0.3)   # QEMU opens its socket
        argv = ["--port", f"socket://127.0.0.1:{port}", "--num", "3", "--attacks", "fgsm", "--eps", "0.1",
                "--workers", "0", "--no-progress", "--out", str(tmp_path), "--run-id", "link"]
        assert evaluate.main(argv) == 0
    summary = json.loads((tmp_path / "link" / "metrics.json").read_text())["summary"]
    assert (summary["chip_inferences"], summary["chip_mismatches"]) == (6, 0)


def _listening_ports(pid: int) -> set[int]:
    """TCP ports on which process `pid` holds a listening socket (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:   # 0A: LISTEN
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def test_each_emulator_listens_on_the_port_it_announced(flashed_default_board) -> None:  # noqa: ANN001
    """QEMU picks its UART's port itself and announces it, so emulators started at once get distinct
    ports, each its own (a port chosen beforehand could be taken by another process before QEMU bound
    it, and a client then reached another emulator); an emulator that cannot start is a clear error."""
    from host.core.errors import UserError
    from host.emulators.qemu import QemuProcess

    board = load_board(DEFAULT_BOARD)
    image = read_flashed(DEFAULT_BOARD)
    with QemuProcess(board, image.elf) as a, QemuProcess(board, image.elf) as b:
        ports = a.launch(), b.launch()
        assert ports[0] != ports[1] and min(ports) > 0
        for qemu, port in zip((a, b), ports, strict=True):
            assert port in _listening_ports(qemu.process.pid)
    broken = dataclasses.replace(board, emulator={**board.emulator, "machine": "no-such-machine"})
    with QemuProcess(broken, image.elf) as qemu, \
            pytest.raises(UserError, match="QEMU did not start.*unsupported machine type"):
        qemu.launch()


def test_unreachable_link_is_a_clear_error(model) -> None:  # noqa: ANN001
    from host.core.errors import UserError
    from host.emulators.qemu import free_port

    with pytest.raises(UserError, match="cannot open the link"), \
            connect(load_board(DEFAULT_BOARD), f"socket://127.0.0.1:{free_port()}", model.sha256):
        pass


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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_emulator_stops_when_host_is_interrupted_or_killed(flashed_default_board, sig: int) -> None:  # noqa: ANN001
    code = ("import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1)\n"  # a stack dump if it hangs
            # Ctrl-C as in a terminal: a shell's background job inherits SIGINT ignored, and Python keeps that.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from host.emulators.launch import open_device\nimport time\n"
            "with open_device() as d:\n    print('up', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        (qemu,) = _qemu_children(proc.pid)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            pytest.fail(f"the host did not exit after {signal.Signals(sig).name}; its stderr:\n{proc.communicate()[1]}")
        assert _wait_gone(qemu), f"QEMU {qemu} still running after {signal.Signals(sig).name} to the host"
    finally:
        proc.kill()
        proc.wait()


def test_emulator_dying_mid_run_is_a_clear_device_error(model, tmp_path: Path) -> None:  # noqa: ANN001
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
    from host.core.errors import UserError

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

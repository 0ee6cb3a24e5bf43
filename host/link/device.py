"""A device: the flashed firmware on a board, behind the protocol client.

    with open_device("mps2-an386") as dev:
        dev.info.inputs, dev.infer(x_bytes).output

For an emulated board the "flashed" image is build/flash/<board>/ (made by
`make flash`); the device is a QEMU instance started here and always stopped.

The link can be given explicitly instead (`url=`, or the environment variable
SLINGSHOT_LINK): any pyserial URL — `socket://host:port`, `rfc2217://host:port`
(a remote board behind an RFC 2217 server) or a local port `/dev/ttyACM0` — to
a board that already runs the flashed firmware; nothing is started then.
A real board (no emulator in its board file) is reached over the serial port
`make flash` recorded, or the one found by the board file's USB VID:PID
(host/link/probe.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import serial

from host.core.boards import Board
from host.core.errors import UserError
from host.link.client import Client
from host.link.messages import DeviceError, DeviceErrorFrame, DeviceInfo, InferResult, Msg, outputs_from_bytes

LINK_ENV = "SLINGSHOT_LINK"


class Device:
    def __init__(self, board: Board, client: Client, info: DeviceInfo) -> None:
        self.board, self.client, self.info = board, client, info

    def infer(self, inputs: bytes) -> InferResult:
        return self._with_instructions(self.client.infer(inputs))

    def _with_instructions(self, result: InferResult) -> InferResult:
        pre = result.preprocess_ticks
        return InferResult(result.output, result.ticks, self.board.instructions(result.ticks),
                           pre, None if pre is None else self.board.instructions(pre))

    def infer_many(self, inputs: Iterable[bytes], window: int | None = None) -> Iterator[InferResult]:
        """One result per input, in order, pipelined: with `window` (default: the client's) > 1
        the next requests travel while the chip computes. Costs are the same as with `infer`."""
        if window is not None:
            self.client.set_window(window)
            self.info = self.client.info or self.info
        for result in self.client.infer_many(inputs):
            yield self._with_instructions(result)

    def infer_arrays(self, *inputs: np.ndarray) -> tuple[list[np.ndarray], InferResult]:
        data = b"".join(np.ascontiguousarray(x, dtype=t.dtype).tobytes()
                        for x, t in zip(inputs, self.info.inputs, strict=True))
        result = self.infer(data)
        return outputs_from_bytes(result.output, self.info.outputs), result

    def profile(self) -> list[int]:
        return self.client.profile()


def open_link(url: str, baudrate: int = 115200) -> serial.SerialBase:
    """A pyserial link for `socket://host:port`, `rfc2217://host:port` or a device path
    (a local port is opened exclusively: a port another program holds is an error, not shared)."""
    local = "://" not in url
    try:
        if local:
            return serial.serial_for_url(url, baudrate=baudrate, timeout=0.05, exclusive=True)
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
    except (serial.SerialException, ValueError, OSError) as err:
        text = str(err)
        if local and any(word in text.lower() for word in ("busy", "lock", "permission denied")):
            hint = ("another program holds the port (a serial monitor, another host.evaluate) or you may not "
                    "use it (Linux: the dialout group); close it and retry")
        elif local and not Path(url).exists():
            hint = "no such port: is the board plugged in? `python -m serial.tools.list_ports -v` lists them"
        else:
            hint = ("check the URL (socket://HOST:PORT, rfc2217://HOST:PORT or /dev/tty...) "
                    "and that the board or its server is up")
        raise UserError(f"cannot open the link {url}: {text}", hint=hint) from None


@contextmanager
def connect(spec: Board, url: str, model_sha256: bytes, timeout_s: float = 30.0,
            window: int = 1) -> Iterator[Device]:
    """A board that already runs the firmware, over the link at `url`."""
    with attach_owned(spec, open_link(url, spec.uart_baud), model_sha256, timeout_s, window,
                      describe=f"board {spec.name} ({url})") as device:
        yield device


@contextmanager
def attach_owned(spec: Board, link: serial.SerialBase, model_sha256: bytes, timeout_s: float, window: int,
                 describe: str) -> Iterator[Device]:
    """attach() over a link this call owns: the link is closed on exit, whatever happened."""
    try:
        with attach(spec, link, model_sha256, timeout_s, window, describe=describe) as device:
            yield device
    finally:
        link.close()


@contextmanager
def attach(spec: Board, link: object, model_sha256: bytes, timeout_s: float = 30.0, window: int = 1,
           describe: str | None = None) -> Iterator[Device]:
    """Handshake over an open link (any pyserial-like object) and check the model."""
    client = Client(link, timeout_s=timeout_s, describe=describe or f"board {spec.name}",  # type: ignore[arg-type]
                    window=window)
    _wait_until_listening(client, timeout_s)
    info = _handshake(client, spec.name)
    if info.model_sha256 != model_sha256:
        raise DeviceError(
            f"the firmware on {spec.name} runs model sha256 {info.model_sha256.hex()[:16]}…, "
            f"expected {model_sha256.hex()[:16]}…",
            hint=f"run `make flash BOARD={spec.name}` again")
    yield Device(spec, client, info)


def _wait_until_listening(client: Client, timeout_s: float, ping_s: float = 0.25) -> None:
    """Ping with short ECHOs until the firmware answers.

    A UART may drop what arrives before the firmware enabled its receiver
    (QEMU's STM32 USART does, unlike the CMSDK UART, which holds the bytes
    back), so the first request of a fresh boot can vanish. A lost ping costs
    `ping_s`; the handshake then runs on a link known to be listening.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.request(Msg.ECHO, b"ping", timeout_s=ping_s, max_retries=0)
            return
        except DeviceErrorFrame:
            return  # it answered (e.g. REPLAY_LOST: the seq is behind a session still running there)
        except DeviceError:
            if time.monotonic() > deadline:
                return  # let the handshake report the failure


def _handshake(client: Client, board: str) -> DeviceInfo:
    try:
        return client.handshake()
    except DeviceError as err:
        raise DeviceError(f"board {board} did not complete the handshake: {err.message}",
                          hint="the firmware may not have booted; run `make flash` again") from None

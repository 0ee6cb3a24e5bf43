"""Where the quantized model runs during an evaluation: one small interface.

A Backend takes one quantized input (the model's exact dtype and shape) and
returns the raw output bytes plus the chip's cost counters when it has them.
Three implementations:

- `device`:    the flashed board over its link (host.link.device), the real target;
- `native`:    the same C engine compiled for the host (host.engine.native), no emulator;
- `reference`: TFLite Micro itself (a stand-in that trivially agrees; for tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from host.compiler.compile import compile_bytes
from host.compiler.types import TensorInfo
from host.core.boards import load_board
from host.core.errors import UserError
from host.core.paths import DEFAULT_BOARD
from host.emulators.launch import boot_elf, open_device, require_model
from host.engine.native import NativeModel
from host.engine.reference import ReferenceInterpreter
from host.link.device import LINK_ENV
from host.link.images import read_flashed
from host.tflite.reader import Tensor, parse_model

BACKENDS = ("device", "native", "reference")


@dataclass(frozen=True)
class ModelIO:
    """A .tflite model's bytes, hash and its single input/output as the device sees them."""

    data: bytes
    sha256: bytes
    input: TensorInfo
    output: TensorInfo

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "model") -> ModelIO:
        graph = parse_model(data).subgraphs[0]
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise UserError(
                f"{source}: the evaluator needs a single-input, single-output classifier; "
                f"this model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs",
            )
        tin, tout = (_tensor_info(graph.tensors[i]) for i in (graph.inputs[0], graph.outputs[0]))
        for role, info in (("input", tin), ("output", tout)):
            if info.dtype not in ("int8", "int16") or info.scale <= 0:
                raise UserError(
                    f"{source}: {role} tensor is {info.dtype} (scale {info.scale}); the evaluator "
                    "needs a fully quantized model with int8/int16 input and output",
                    hint="convert with inference_input_type/inference_output_type = tf.int8",
                )
        return cls(data, hashlib.sha256(data).digest(), tin, tout)


def _tensor_info(t: Tensor) -> TensorInfo:
    scale = float(t.quant.scale[0]) if t.quant is not None else 0.0
    zero = int(t.quant.zero_point[0]) if t.quant is not None else 0
    return TensorInfo(name=t.name, dtype=t.dtype, shape=tuple(t.shape), scale=scale, zero_point=zero)


@dataclass(frozen=True)
class Inference:
    output: bytes                 # raw output tensor bytes, as the device sent them
    instructions: int | None      # retired instructions (chip only)
    ticks: int | None             # the chip's cycle/tick counter (chip only)
    preprocess_instructions: int | None = None   # a firmware pre-processing stage's own cost (chip only)


class Backend(Protocol):
    name: str
    description: str

    def run(self, x_q: np.ndarray) -> Inference:
        """One inference on a quantized input of the model's dtype and shape."""
        ...


class ReferenceBackend:
    """TFLite Micro's interpreter: the bit-exact golden reference."""

    name = "reference"

    def __init__(self, model: ModelIO) -> None:
        self._model = model
        self._interp = ReferenceInterpreter(model.data)
        self.description = "TFLite Micro reference interpreter (host)"

    def run(self, x_q: np.ndarray) -> Inference:
        x_q = np.asarray(x_q, dtype=self._model.input.dtype).reshape(self._model.input.shape)
        out = self._interp.run(x_q)[0]
        return Inference(np.ascontiguousarray(out, dtype=self._model.output.dtype).tobytes(), None, None)


class NativeBackend:
    """The firmware engine compiled for the host: checks the C engine without an emulator."""

    name = "native"

    def __init__(self, model: ModelIO) -> None:
        self._model = model
        self._native = NativeModel(compile_bytes(model.data))
        self.description = "firmware engine, host-native build"

    def run(self, x_q: np.ndarray) -> Inference:
        data = np.ascontiguousarray(x_q, dtype=self._model.input.dtype).tobytes()
        return Inference(self._native.run_bytes(data), None, None)


class DeviceBackend:
    """The flashed board, through host.link.device."""

    name = "device"

    def __init__(self, device: object, model: ModelIO, staged: bool = False) -> None:
        """`staged`: the firmware has a defense's pre-processing stage (docs/defenses.md, "On the chip"),
        which a study compares with the host's integer pre-processing, not with the raw reference."""
        self._device = device
        self._model = model
        info = device.info  # type: ignore[attr-defined]
        self.description = f"{getattr(info, 'board', 'device')} (on-chip)"
        _check_device_matches(info, model, staged)

    @property
    def retries(self) -> int:
        """Requests the link had to send again (damaged in transit, never executed twice)."""
        return int(self._device.client.retries)  # type: ignore[attr-defined]

    def run(self, x_q: np.ndarray) -> Inference:
        data = np.ascontiguousarray(x_q, dtype=self._model.input.dtype).tobytes()
        return _inference(self._device.infer(data))  # type: ignore[attr-defined]

    def run_many(self, xs: Iterable[np.ndarray], window: int = 1) -> Iterator[Inference]:
        """One result per input, in order, with up to `window` requests in flight (the protocol's
        pipelining: the next inputs travel while the chip computes; costs as with `run`)."""
        dtype = self._model.input.dtype
        data = (np.ascontiguousarray(x, dtype=dtype).tobytes() for x in xs)
        for result in self._device.infer_many(data, window=window):  # type: ignore[attr-defined]
            yield _inference(result)


def _inference(result: object) -> Inference:
    return Inference(bytes(result.output), getattr(result, "instructions", None),  # type: ignore[attr-defined]
                     getattr(result, "ticks", None), getattr(result, "preprocess_instructions", None))


def _check_device_matches(info: object, model: ModelIO, staged: bool = False) -> None:
    """The flashed model must be this model: same hash, same I/O."""
    flashed = getattr(info, "model_sha256", None)
    if flashed is not None and bytes(flashed) != model.sha256:
        raise UserError(
            f"the board runs a different model (sha256 {bytes(flashed).hex()[:16]}…) than "
            f"the one given (sha256 {model.sha256.hex()[:16]}…)",
            hint="flash this model first: make flash MODEL=<path>, or pass --model of the flashed one",
        )
    inputs, outputs = getattr(info, "inputs", None), getattr(info, "outputs", None)
    if inputs and outputs and (inputs[0].shape != model.input.shape or outputs[0].shape != model.output.shape):
        raise UserError("the board's model I/O shapes differ from the given model's; re-flash it")
    if getattr(info, "preprocess_kind", 0) and not staged:
        raise UserError("the flashed firmware pre-processes its inputs (make flash PREPROCESS=...): its outputs "
                        "are not the reference's on the raw inputs",
                        hint="re-flash without PREPROCESS, or measure the stage with python -m "
                             "host.defenses.chip_cost / a study with on_chip = true (docs/defenses.md)")


@contextmanager
def open_backend(kind: str, model: ModelIO, board: str | None = None, elf: Path | None = None,
                 cpus: set[int] | None = None) -> Iterator[Backend]:
    """The backend named `kind` for this model (device: the flashed board, checked by hash;
    with `elf`, that firmware image on the emulated board, e.g. one pinned by `pin_firmware`,
    its QEMU process bound to `cpus` when given)."""
    if kind == "reference":
        yield ReferenceBackend(model)
    elif kind == "native":
        yield NativeBackend(model)
    elif kind == "device" and elf is not None:
        with boot_emulated(load_board(board or DEFAULT_BOARD), elf, model.sha256, cpus) as device:
            yield DeviceBackend(device, model)
    elif kind == "device":
        with open_device(board=board, expected_sha256=model.sha256) as device:
            yield DeviceBackend(device, model)
    else:
        raise UserError(f"unknown backend '{kind}'", hint=f"choose one of: {', '.join(BACKENDS)}")


@contextmanager
def boot_emulated(spec: object, elf: Path, model_sha256: bytes, cpus: set[int] | None = None,
                  timeout_s: float = 30.0) -> Iterator[object]:
    """host.link.device.boot_elf with the emulator (all its threads) bound to `cpus` (None: one core
    chosen round-robin; an empty set: not bound; see host.emulators.qemu.QemuProcess)."""
    with boot_elf(spec, elf, model_sha256, timeout_s, cpus=cpus) as device:  # type: ignore[arg-type]
        yield device


def cpu_for(slot: int) -> set[int] | None:
    """The core for device `slot` (round-robin over the cores this process may use)."""
    import os

    allowed = sorted(os.sched_getaffinity(0))
    return {allowed[slot % len(allowed)]} if allowed else None


@dataclass(frozen=True)
class PinnedFirmware:
    elf: Path            # a private copy of the flashed firmware.elf
    sha256: str          # of the ELF


def pin_firmware(model: ModelIO, board: str | None, into: Path) -> PinnedFirmware | None:
    """Copy the firmware flashed for an emulated board (after checking it runs `model`), so
    every emulator of a run — restarts included — boots the same image even if the board is
    re-flashed meanwhile. None for a board reached over a link (nothing to pin)."""
    import os


    name = board or DEFAULT_BOARD
    if os.environ.get(LINK_ENV) or not load_board(name).emulated:
        return None
    image = read_flashed(name)
    require_model(image, model.sha256)
    data = image.elf.read_bytes()
    into.mkdir(parents=True, exist_ok=True)
    (into / "firmware.elf").write_bytes(data)
    return PinnedFirmware(into / "firmware.elf", hashlib.sha256(data).hexdigest())

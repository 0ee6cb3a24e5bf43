"""Is a model bit-exact? Run inputs through a target (the chip, or the host-native build of the
engine) and through the TFLite Micro reference; name the first differing op on a mismatch.

With `cycles`, the chip's QEMU also loads the cycle plugin (host.emulators.cycles) and every
inference gets an estimated cycle count from the CPU's timing table (host.core.timing).

Imports: host.core, host.tflite, host.compiler, host.engine, host.emulators.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.compiler import CompiledModel
from host.compiler.compile import compile_bytes
from host.core.boards import Board, load_board
from host.core.errors import UserError
from host.core.timing import CpuTiming, CycleEstimate, timing_for, wait_states
from host.emulators.cycles import CyclePlugin, CyclesUnavailable, function_counts
from host.emulators.launch import boot_elf
from host.engine.build import FirmwareImage, build_firmware
from host.engine.native import NativeModel
from host.engine.reference import ReferenceInterpreter
from host.link.device import Device, connect
from host.tflite.reader import parse_model

# A runner takes the inputs of one inference and returns (outputs, instructions or None).
Runner = Callable[[list[np.ndarray]], tuple[list[np.ndarray], int | None]]


@dataclass
class Mismatch:
    index: int
    output: int
    position: tuple[int, ...]
    ours: int | float
    golden: int | float


def first_mismatch(k: int, ours: list[np.ndarray], golden: list[np.ndarray]) -> Mismatch | None:
    for i, (a, b) in enumerate(zip(ours, golden, strict=True)):
        if a.tobytes() != b.tobytes():
            a_bits, b_bits = _comparable(a), _comparable(b)
            where = tuple(int(v) for v in np.argwhere(a_bits != b_bits)[0])
            return Mismatch(k, i, where, a[where].item(), b[where].item())
    return None


def _comparable(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32) if x.dtype == np.float32 else x


def localize(path: Path, inputs: list[np.ndarray]) -> str:
    """Replay one input through a keep-every-tensor build; name the first differing op."""
    data = path.read_bytes()
    graph = parse_model(data).subgraphs[0]
    debug = NativeModel(compile_bytes(data, name=path.stem, reuse_arena=False))
    reference = ReferenceInterpreter(data, preserve_all_tensors=True)
    debug.run(*inputs)
    reference.run(*inputs)
    for op in graph.operators:
        for t in op.outputs:
            tensor = graph.tensors[t]
            ours = debug.tensor(t, tensor.dtype, tensor.shape)
            golden = reference.tensor(t).reshape(tensor.shape)
            if ours.tobytes() != golden.tobytes():
                where = tuple(int(v) for v in np.argwhere(_comparable(ours) != _comparable(golden))[0])
                return (f"first differing tensor: '{tensor.name}' (output of op {op.index} {op.opcode}) "
                        f"at {where}: ours {ours[where]}, reference {golden[where]}")
    return "the host-native debug build matches the reference on every tensor: the difference is target-specific"


def native_runner(model: CompiledModel) -> Runner:
    native = NativeModel(model)

    def run(inputs: list[np.ndarray]) -> tuple[list[np.ndarray], int | None]:
        return native.run(*inputs), None

    return run


def summary_lines(model: CompiledModel, path: Path, target: str) -> list[str]:
    return [
        f"model    {path}  (sha256 {model.sha256.hex()[:16]}…)",
        f"target   {target}",
        f"ops      {len(model.ops)}: " + ", ".join(sorted(set(model.ops))),
        "inputs   " + "; ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in model.inputs),
        "outputs  " + "; ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in model.outputs),
        f"arena    {model.arena_bytes:,} bytes   weights {model.weights_bytes:,} bytes"
        + (f"   ({model.cut_channels:,} dead channels cut: docs/engine.md, Pipeline)" if model.cut_channels else ""),
    ]


def check(path: Path, runner: Runner, model: CompiledModel, inputs: Iterator[list[np.ndarray]],
          count: int) -> tuple[int, int, Mismatch | None, list[np.ndarray] | None, list[int]]:
    reference = ReferenceInterpreter(path)
    exact, first, first_inputs, costs = 0, None, None, []
    for k, sample in enumerate(_progress(inputs, count)):
        ours, instructions = runner(sample)
        golden = reference.run(*sample)
        mismatch = first_mismatch(k, ours, golden)
        if mismatch is None:
            exact += 1
        elif first is None:
            first, first_inputs = mismatch, sample
        if instructions is not None:
            costs.append(instructions)
    return exact, count, first, first_inputs, costs


def _progress(items: Iterator[list[np.ndarray]], total: int) -> Iterator[list[np.ndarray]]:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        yield from items
        return
    yield from tqdm(items, total=total, desc="inferences", unit="inf", file=sys.stderr, leave=False)


@dataclass
class ChipCycles:
    """Estimated cycles of each inference, per op of the last one (--profile), and per function of
    the firmware, averaged over the inferences (--functions)."""
    timing: CpuTiming
    per_inference: list[CycleEstimate]
    per_op: list[CycleEstimate] | None
    per_function: dict[str, CycleEstimate] | None = None


@dataclass
class ChipCheck:
    """check()'s tuple, the target's description and the last inference's ticks per op (--profile);
    with cycles asked: the estimates, or why there are none (`cycles_note`: no model, plugin unusable)."""
    result: tuple[int, int, Mismatch | None, list[np.ndarray] | None, list[int]]
    target: str
    ticks: list[int] | None
    instructions_per_tick: int | None
    cycles: ChipCycles | None = None
    cycles_note: str | None = None


def device_runner(device: Device) -> Runner:
    """A runner over a handshaken device: its outputs and the instructions it reports."""
    def run(sample: list[np.ndarray]) -> tuple[list[np.ndarray], int | None]:
        outputs, result = device.infer_arrays(*sample)
        return outputs, result.instructions

    return run


def check_over_link(model_path: Path, model: CompiledModel, board_name: str, url: str,
                    inputs: Iterator[list[np.ndarray]], count: int, profile: bool = False) -> ChipCheck:
    """The check on a board that already runs the model's firmware, behind `url` (the handshake
    refuses another model's firmware)."""
    board = load_board(board_name)
    with connect(board, url, model.sha256) as device:
        result = check(model_path, device_runner(device), model, inputs, count)
        ticks = device.profile() if profile else None
    return ChipCheck(result, f"{board.name} ({board.cpu}) over {url}", ticks, board.instructions_per_tick)


def run_on_chip(model_path: Path, model: CompiledModel, board_name: str, inputs: Iterator[list[np.ndarray]],
                count: int, profile: bool = False, cycles: bool = False, functions: bool = False) -> ChipCheck:
    """Build the model's firmware for the board, boot it, and check every input against the reference.

    The image is built in build/<board>/<model>/ (the flashed image in build/flash/ is left alone).
    `cycles`: count cycles with QEMU's plugin when the board's CPU has a timing model; when it has
    none, or the plugin cannot be built or loaded, the check runs without and says why.
    `functions` (with `cycles`): also the estimated cycles of each firmware function."""
    board = load_board(board_name)
    image = build_firmware(model, board)
    where = f"emulated by {board.emulator['kind']}" if board.emulated else "hardware"
    target = (f"{board.name} ({board.cpu}, {where}); firmware flash {image.flash_bytes:,} B, "
              f"RAM {image.ram_bytes:,} B")
    timing, plugin, note = cycle_counting(board, image.elf, profile, functions) if cycles else (None, None, None)
    return _check_on_chip(model_path, model, board, image, inputs, count, profile, target, timing, plugin, note)


def cycle_counting(board: Board, elf: Path, profile: bool = False,
                   functions: bool = False) -> tuple[CpuTiming | None, CyclePlugin | None, str | None]:
    """The CPU's timing model and QEMU's cycle plugin for a firmware ELF, or None and why not (no model,
    not QEMU, a plugin that cannot be built): the caller reports instructions only."""
    timing = timing_for(board)
    if timing is None:
        return None, None, (f"board {board.name}: no cycle model for {board.cpu} (boards/cpus/{board.cpu}.toml "
                            "is absent; docs/performance.md): instructions only")
    if board.emulator_kind != "qemu":
        return None, None, f"board {board.name}: cycles are counted in QEMU only: instructions only"
    try:
        return timing, CyclePlugin.for_firmware(board, elf, profile, pcs=functions), None
    except CyclesUnavailable as error:
        return None, None, f"error: {error}"


def _per_function(plugin: CyclePlugin | None, timing: CpuTiming | None, elf: Path,
                  inferences: int) -> dict[str, CycleEstimate] | None:
    """Zero-wait-state cycles per firmware function, per inference (the plugin's pcs counts)."""
    if plugin is None or timing is None or plugin.pcs is None or not inferences:
        return None
    per_function = function_counts(elf, plugin.read_pcs())
    return {name: timing.estimate({c: round(n / inferences) for c, n in counts.items()})
            for name, counts in per_function.items()}


def _check_on_chip(model_path: Path, model: CompiledModel, board: Board, image: FirmwareImage,
                   inputs: Iterator[list[np.ndarray]], count: int, profile: bool, target: str,
                   timing: CpuTiming | None, plugin: CyclePlugin | None, note: str | None) -> ChipCheck:
    estimates: list[CycleEstimate] = []
    last_segments: tuple[dict[str, int], ...] = ()
    with ExitStack() as stack:
        if plugin is not None:
            stack.callback(plugin.discard)  # after QEMU has stopped
        try:
            device = stack.enter_context(boot_elf(board, image.elf, model.sha256, plugin=plugin))
        except CyclesUnavailable as error:
            if plugin is None:
                raise
            # QEMU refused the plugin before running anything: the same check without cycles.
            timing, plugin, note = None, None, f"error: {error}"
            device = stack.enter_context(boot_elf(board, image.elf, model.sha256))

        on_device = device_runner(device)

        def run(sample: list[np.ndarray]) -> tuple[list[np.ndarray], int | None]:
            nonlocal last_segments
            outputs, instructions = on_device(sample)
            if plugin is not None and timing is not None:
                windows = plugin.read_windows()
                if not windows:
                    raise UserError(f"the cycle plugin recorded no window for an inference ({plugin.output})")
                estimates.append(timing.estimate(windows[-1].counts, wait_states(board)))
                last_segments = windows[-1].segments
            return outputs, instructions

        result = check(model_path, run, model, inputs, count)
        ticks = device.profile() if profile else None
        per_function = _per_function(plugin, timing, image.elf, len(estimates))
    chip_cycles = None
    if timing is not None and plugin is not None:
        per_op = [timing.estimate(s, wait_states(board)) for s in last_segments[1:1 + len(model.ops)]]
        chip_cycles = ChipCycles(timing, estimates, per_op if profile and per_op else None, per_function)
    return ChipCheck(result, target, ticks, board.instructions_per_tick, chip_cycles, note)

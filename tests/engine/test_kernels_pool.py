"""int8 AVERAGE_POOL_2D / MAX_POOL_2D: the DSP (firmware/engine/ops_dsp/pooling.c, mps2-an386 M4, mps2-an500
M7) and Helium (ops_mve/pooling.c, mps3-an547 M55) kernels match TFLite Micro byte for byte.

Each model holds several independent pooling ops (one input each, so one build and boot checks many cases):
channel counts 1-40 (word and vector tails, non-multiples of 4 and 16), SAME/VALID padding, strides 1-3,
filters up to 6x6, batches, fused activations, global pools (KWS's 25x5x64, ResNet's 8x8x64, VWW's 3x3x256),
256 taps (the int16 sums' limit), 272 taps and int16 tensors (portable fallback). Besides random inputs every
model sees all -128, all 127 and a random mix of the two (the sums' extremes).
More seeds: `python -m pytest -m slow tests/engine/test_kernels_pool.py`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from host.compiler.compile import compile_bytes
from host.core.boards import load_board
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter
from host.tflite.reader import parse_model
from tests.engine.test_kernels_native import random_input
from tests.support.chip import default_suite_boards
from tests.support.tflite_builder import ACTIVATIONS, GraphBuilder, _activation_qparams, fb

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

BOARDS = ("mps2-an386", "mps2-an500", "mps3-an547")
KINDS = ("AVERAGE_POOL_2D", "MAX_POOL_2D")
CHANNELS = (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 20, 24, 31, 32, 33, 40)
OPS_PER_MODEL = 6
SEEDS = 2
SLOW_SEEDS = 6
# (h, w, c) of global pools (filter = input, VALID, 1x1 output)
GLOBAL_POOLS = ((25, 5, 64), (8, 8, 64), (3, 3, 256), (16, 16, 5), (17, 16, 3), (1, 1, 17))


def add_pool(g: GraphBuilder, rng: np.random.Generator, kind: str, shape: tuple[int, int, int, int],
             filt: tuple[int, int], strides: tuple[int, int], same: bool, dtype: str = "int8") -> tuple[int, int]:
    b, h, w, c = shape
    (fh, fw), (sh, sw) = filt, strides
    out_h = (h + sh - 1) // sh if same else (h - fh + sh) // sh
    out_w = (w + sw - 1) // sw if same else (w - fw + sw) // sw
    scale, zp = _activation_qparams(rng, dtype)
    x = g.tensor(shape, dtype, scale, zp)
    y = g.tensor((b, out_h, out_w, c), dtype, scale, zp)
    opt = fb.Pool2DOptionsT()
    opt.padding = 0 if same else 1
    opt.strideH, opt.strideW, opt.filterHeight, opt.filterWidth = sh, sw, fh, fw
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op(kind, [x], [y], opt)
    return x, y


def random_pool_model(rng: np.random.Generator, kind: str) -> bytes:
    """OPS_PER_MODEL random pools of one kind, each on its own input."""
    g = GraphBuilder()
    xs, ys = [], []
    for _ in range(OPS_PER_MODEL):
        h, w = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        c = int(rng.choice(CHANNELS))
        batches = 2 if rng.random() < 0.15 else 1
        same = bool(rng.random() < 0.5)
        fh = int(rng.integers(1, (7 if same else min(h, 6)) + 1))
        fw = int(rng.integers(1, (7 if same else min(w, 6)) + 1))
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        x, y = add_pool(g, rng, kind, (batches, h, w, c), (fh, fw), strides, same)
        xs.append(x)
        ys.append(y)
    return g.build(xs, ys)


def global_pool_model(rng: np.random.Generator, kind: str) -> bytes:
    """The global pools of GLOBAL_POOLS, plus one int16 pool (portable fallback)."""
    g = GraphBuilder()
    xs, ys = [], []
    for h, w, c in GLOBAL_POOLS:
        x, y = add_pool(g, rng, kind, (1, h, w, c), (h, w), (1, 1), same=False)
        xs.append(x)
        ys.append(y)
    x, y = add_pool(g, rng, kind, (1, 5, 6, 7), (2, 3), (2, 2), same=True, dtype="int16")
    return g.build([*xs, x], [*ys, y])


def inputs_for(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    info = np.iinfo(dtype)
    return [random_input(rng, dtype, shape), random_input(rng, dtype, shape),
            np.full(shape, info.min, dtype), np.full(shape, info.max, dtype),
            rng.choice([info.min, info.max], size=shape).astype(dtype)]


class PoolReference(ReferenceInterpreter):
    """TFLite Micro with a 256 KiB arena: its default (10x the file) is too small for weightless models."""

    def __init__(self, data: bytes) -> None:  # noqa: D107 - same state as ReferenceInterpreter
        from host.core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from tflite_micro.python.tflite_micro import runtime

        self._interp = runtime.Interpreter.from_bytes(data, arena_size=256 * 1024)
        graph = parse_model(data).subgraphs[0]
        self.n_inputs, self.n_outputs = len(graph.inputs), len(graph.outputs)


def assert_pool_bit_exact(board_name: str, out_dir: Path, data: bytes, label: str, rng: np.random.Generator) -> None:
    board = load_board(board_name)
    model = compile_bytes(data, name="pool_model")
    image = build_firmware(model, board, out_dir)
    reference = PoolReference(data)
    per_input = [inputs_for(rng, t.dtype, t.shape) for t in model.inputs]
    with boot_elf(board, image.elf, model.sha256, timeout_s=60) as device:
        for k in range(len(per_input[0])):
            xs = [v[k] for v in per_input]
            ours, _ = device.infer_arrays(*xs)
            for i, (a, b) in enumerate(zip(ours, reference.run(*xs), strict=True)):
                if a.tobytes() != b.tobytes():
                    where = tuple(int(v) for v in np.argwhere(a != b.reshape(a.shape))[0])
                    pytest.fail(f"{board_name} {label} input {k} output {i} (shape {a.shape}): first difference "
                                f"at {where}: chip {a[where]}, TFLM {b.reshape(a.shape)[where]}")


@pytest.fixture(scope="session")
def board_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: tmp_path_factory.mktemp(f"pool-{name}") for name in BOARDS}


def _check(board_name: str, kind: str, seeds: range, board_dirs: dict[str, Path]) -> None:
    for seed in seeds:
        rng = np.random.default_rng([seed, sum(kind.encode()), 7])
        assert_pool_bit_exact(board_name, board_dirs[board_name], random_pool_model(rng, kind),
                              f"{kind} seed {seed}", rng)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("board_name", default_suite_boards(BOARDS))
def test_random_pools(board_name: str, kind: str, board_dirs: dict[str, Path]) -> None:
    _check(board_name, kind, range(SEEDS), board_dirs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("board_name", default_suite_boards(BOARDS))
def test_global_pools(board_name: str, kind: str, board_dirs: dict[str, Path]) -> None:
    rng = np.random.default_rng([sum(kind.encode()), 8])
    assert_pool_bit_exact(board_name, board_dirs[board_name], global_pool_model(rng, kind), f"{kind} global", rng)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("board_name", BOARDS)
def test_random_pools_more_seeds(board_name: str, kind: str, board_dirs: dict[str, Path]) -> None:
    _check(board_name, kind, range(SEEDS, SEEDS + SLOW_SEEDS), board_dirs)

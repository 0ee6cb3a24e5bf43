"""`python -m host.check`: is a model bit-exact on the chip?

Compiles the model, runs N inputs through the target (the chip over its
link, or the host-native build of the same engine) and through the TFLite
Micro reference interpreter, and prints ops, memory, cost and a verdict line
`bit-exact K/N` (exit 0 only when K == N). On a mismatch it replays the
first failing input through a debug build that keeps every tensor and names
the first op whose output differs from the reference.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.compiler import CompiledModel, TensorInfo, compile_tflite
from host.errors import UserError, run_cli
from host.paths import DEFAULT_BOARD

# A runner takes the inputs of one inference and returns (outputs, instructions or None).
Runner = Callable[[list[np.ndarray]], tuple[list[np.ndarray], int | None]]


@dataclass
class Mismatch:
    index: int
    output: int
    position: tuple[int, ...]
    ours: int | float
    golden: int | float


def random_inputs(infos: list[TensorInfo], count: int, seed: int) -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield [_random_tensor(rng, info) for info in infos]


def _random_tensor(rng: np.random.Generator, info: TensorInfo) -> np.ndarray:
    if info.dtype == "float32":
        return rng.standard_normal(info.shape).astype(np.float32)
    limits = np.iinfo(info.dtype)
    return rng.integers(limits.min, int(limits.max) + 1, size=info.shape).astype(info.dtype)


def npz_inputs(path: Path, infos: list[TensorInfo],
               input_range: tuple[float, float] = (0.0, 1.0)) -> Iterator[list[np.ndarray]]:
    """Inputs from an .npz: arrays named like the model inputs, or x / the first array.

    Float data is quantized with the input's scale and zero point; uint8 images
    (e.g. CIFAR-10) are first mapped from 0..255 onto `input_range`."""
    if not path.exists():
        raise UserError(f"inputs file not found: {path}", hint="use --inputs random:N or an existing .npz")
    with np.load(path) as data:
        arrays = [data[info.name] if info.name in data else data["x" if "x" in data else data.files[0]]
                  for info in infos]
    arrays = [_scale_uint8(a, input_range) if a.dtype == np.uint8 and info.dtype != "uint8" else a
              for a, info in zip(arrays, infos, strict=True)]
    samples = len(arrays[0])
    for array, info in zip(arrays, infos, strict=True):
        if tuple(array.shape[1:]) != info.shape[1:] and tuple(array.shape[1:]) != info.shape:
            raise UserError(f"{path}: array shape {array.shape} does not fit input {info.name} {info.shape}")
    for k in range(samples):
        yield [_as_input(array[k], info) for array, info in zip(arrays, infos, strict=True)]


def _scale_uint8(images: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    lo, hi = input_range
    return (images.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32)


def _as_input(sample: np.ndarray, info: TensorInfo) -> np.ndarray:
    if np.issubdtype(sample.dtype, np.floating) and info.dtype != "float32":
        sample = info.quantize(sample)  # float data for a quantized input
    return np.asarray(sample, dtype=info.dtype).reshape(info.shape)


def parse_inputs(spec: str, model: CompiledModel, seed: int, input_range: tuple[float, float] = (0.0, 1.0),
                 limit: int | None = None) -> tuple[Iterator[list[np.ndarray]], int]:
    if spec.startswith("random:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            count = 0
        if count <= 0:
            raise UserError(f"bad --inputs {spec!r}", hint="random:N with N >= 1, or a .npz file")
        return random_inputs(model.inputs, count, seed), count
    path = Path(spec)
    with np.load(path) if path.exists() else _missing(path) as data:
        count = len(data[data.files[0]])
    if limit is not None:
        count = min(count, limit)
    return itertools.islice(npz_inputs(path, model.inputs, input_range), count), count


def _missing(path: Path):  # noqa: ANN202
    raise UserError(f"inputs file not found: {path}", hint="use --inputs random:N or an existing .npz")


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
    from host.compiler.compile import compile_bytes
    from host.native import NativeModel
    from host.reference import ReferenceInterpreter
    from host.tflite.reader import parse_model

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
    from host.native import NativeModel

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
        f"arena    {model.arena_bytes:,} bytes   weights {model.weights_bytes:,} bytes",
    ]


def check(path: Path, runner: Runner, model: CompiledModel, inputs: Iterator[list[np.ndarray]],
          count: int) -> tuple[int, int, Mismatch | None, list[np.ndarray] | None, list[int]]:
    from host.reference import ReferenceInterpreter

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


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--input-range {text!r}: expected LO,HI such as 0,1 or 0,255") from None
    if not lo < hi:
        raise UserError(f"--input-range {text!r}: LO must be below HI")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="the .tflite model")
    parser.add_argument("--board", default=DEFAULT_BOARD, help=f"board to run on (default {DEFAULT_BOARD})")
    parser.add_argument("--inputs", default="random:10", help="random:N (default random:10) or a .npz file")
    parser.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    parser.add_argument("--num", type=int, default=None, help="use the first N samples of a .npz")
    parser.add_argument("--input-range", default="0,1", metavar="LO,HI",
                        help="range uint8 images in a .npz are mapped to before quantizing (default 0,1; "
                        "the MLPerf Tiny ResNet takes 0,255)")
    parser.add_argument("--target", choices=("chip", "native"), default="chip",
                        help="chip: build, boot and run on the board; native: the same engine built for this host")
    parser.add_argument("--profile", action="store_true",
                        help="print instructions per op of the last inference (chip only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.target == "chip":
        from host.boards import load_board

        load_board(args.board)  # an unknown board fails before compiling
    elif args.profile:
        raise UserError("--profile needs the chip (--target chip): the host build has no tick counter")
    model = compile_tflite(args.model)
    inputs, count = parse_inputs(args.inputs, model, args.seed, _parse_range(args.input_range), args.num)
    if args.target == "native":
        runner, target = native_runner(model), "host-native engine (same C as the firmware)"
        exact, total, first, first_inputs, costs = check(args.model, runner, model, inputs, count)
    else:
        from host.check_chip import run_on_chip

        exact, total, first, first_inputs, costs, target = run_on_chip(args, model, inputs, count)
    for line in summary_lines(model, args.model, target):
        print(line)
    if costs:
        print(f"cost     {statistics.median(costs):,.0f} instructions per inference (median of {len(costs)})")
    if first is not None:
        print(f"mismatch sample {first.index}, output {first.output} at {first.position}: "
              f"ours {first.ours}, reference {first.golden}")
        assert first_inputs is not None
        print(localize(args.model, first_inputs))
    print(f"bit-exact {exact}/{total}")
    return 0 if exact == total else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""`python -m host.defenses.chip_cost`: what the firmware pre-processing stages cost on the chip.

For each stage (squeeze:BITS, median:WINDOW) builds the model's firmware with it, boots the board,
runs the inputs, checks every output against TFLite Micro on the host's integer pre-processing
(host/engine/integer.py) and prints the stage's and the inference's instructions:

    python -m host.defenses.chip_cost --model models/digits_cnn_int8.tflite --inputs digits:20
    python -m host.defenses.chip_cost --model ../shared/models/david-goliath/cifar_resnet_int8.tflite \\
        --stages squeeze:4,median:2 --inputs ../shared/data/cifar10/test_first1017.npz --num 10

Exit status 0 only if every output was bit-exact.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.backends.inputs import check_num, parse_inputs, parse_range, spec_count
from host.compiler import compile_tflite
from host.core.boards import Board, list_boards, load_board
from host.core.data import load_digits_split
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware
from host.engine.preprocess import ChipStage, parse_stage
from host.engine.reference import ReferenceInterpreter

DEFAULT_STAGES = ",".join([f"squeeze:{b}" for b in range(1, 8)] + ["median:2", "median:3"])


@dataclass(frozen=True)
class StageCost:
    stage: ChipStage
    exact: int
    total: int
    preprocess: list[int]
    inference: list[int]

    def row(self) -> list[str]:
        pre, inf = statistics.median(self.preprocess), statistics.median(self.inference)
        return [self.stage.label, f"{self.exact}/{self.total}", f"{pre:,.0f}",
                f"{min(self.preprocess):,}–{max(self.preprocess):,}", f"{inf:,.0f}", f"{100 * pre / inf:.2f} %"]


HEADER = ["stage", "bit-exact", "pre-processing instr (median)", "min–max", "inference instr (median)",
          "stage / inference"]


def measure(model_path: Path, stage: ChipStage, board_name: str, batch: np.ndarray,
            input_range: tuple[float, float]) -> StageCost:
    """Build with the stage, boot, run the batch (raw quantized inputs), compare with the reference."""

    board = load_board(board_name)
    model = compile_tflite(model_path)
    tensor = model.inputs[0]
    image = build_firmware(model, board, preprocess=stage, input_range=input_range)
    reference = ReferenceInterpreter(model_path)
    staged = stage.reference(batch, tensor, input_range)
    with boot_elf(board, image.elf, model.sha256, timeout_s=120) as device:
        results = list(device.infer_many((x.tobytes() for x in batch), window=4))
    exact = sum(r.output == np.asarray(reference.run(x.reshape(tensor.shape))[0]).tobytes()
                for r, x in zip(results, staged, strict=True))
    return StageCost(stage, exact, len(batch), [int(r.preprocess_instructions) for r in results],
                     [int(r.instructions) for r in results])


def load_batch(spec: str, model_path: Path, seed: int, input_range: tuple[float, float],
               num: int | None) -> np.ndarray:

    model = compile_tflite(model_path)
    if spec.startswith("digits:"):  # the built-in digits test split (models/README.md)
        count = spec_count(spec, hint="digits:N with N >= 1 (the first N of the digits test split), random:N or a .npz")
        x = load_digits_split()[2][:count]
        return model.inputs[0].quantize(x).reshape(len(x), *model.inputs[0].shape[1:])
    inputs, _ = parse_inputs(spec, model, seed, input_range, num)
    return np.stack([sample[0] for sample in inputs]).reshape(-1, *model.inputs[0].shape[1:])


def emulated_board(name: str) -> Board:
    """The board, refused unless emulated: its firmware is booted here, and there is no link option."""
    board = load_board(name)
    if not board.emulated:
        raise UserError(f"board {name} is not emulated: chip_cost boots the firmware in an emulator",
                        hint=f"pick an emulated board: {', '.join(b for b in list_boards() if load_board(b).emulated)}")
    return board


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.defenses.chip_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="int8/int16 .tflite")
    p.add_argument("--board", default=DEFAULT_BOARD, help="emulated board (default: %(default)s)")
    p.add_argument("--stages", default=DEFAULT_STAGES, help="comma-separated (default: %(default)s)")
    p.add_argument("--inputs", default="random:10",
                   help="random:N (default %(default)s), digits:N (the digits test split) or a .npz (x: images)")
    p.add_argument("--num", type=int, default=None, help="first N samples of a .npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-range", default="0,1", metavar="LO,HI",
                   help="the float range of the model input, where the squeezing levels lie (default 0,1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stages = [parse_stage(s) for s in args.stages.split(",") if s.strip()]
    if not stages or None in stages:
        raise UserError(f"--stages {args.stages!r}: give stages such as squeeze:4,median:2")
    input_range = parse_range(args.input_range)
    check_num(args.num)
    emulated_board(args.board)
    batch = load_batch(args.inputs, args.model, args.seed, input_range, args.num)
    print(f"model    {args.model}: input {batch.dtype} {batch.shape[1:]}, {len(batch)} inputs ({args.inputs}), "
          f"board {args.board}")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    ok = True
    for stage in stages:
        cost = measure(args.model, stage, args.board, batch, input_range)  # type: ignore[arg-type]
        print("| " + " | ".join(cost.row()) + " |", flush=True)
        ok = ok and cost.exact == cost.total
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""`make bench`: how fast the pieces are (wall time; instruction counts are exact).

Measures, for a model (default: the digits model) on a board (default
mps2-an386): firmware build time (clean and no-op), QEMU boot + handshake,
link round trips, inferences per second on the emulated chip, the host-native
engine and the TFLite Micro reference, and instructions per inference.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from host.boards import load_board
from host.build import build_firmware
from host.compiler import compile_tflite
from host.errors import run_cli
from host.paths import DEFAULT_BOARD, DEFAULT_MODEL


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rate(fn: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def bench(model_path: Path, board_name: str, count: int) -> list[tuple[str, str]]:
    from host.device import boot_elf
    from host.native import NativeModel
    from host.reference import ReferenceInterpreter

    board = load_board(board_name)
    model = compile_tflite(model_path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fw"
        rows.append(("firmware build, clean", f"{timed(lambda: build_firmware(model, board, out)):.2f} s"))
        image = build_firmware(model, board, out)
        rows.append(("firmware build, nothing changed", f"{timed(lambda: build_firmware(model, board, out), 3):.2f} s"))
        boot_start = time.perf_counter()
        with boot_elf(board, image.elf, model.sha256) as device:
            rows.append(("QEMU boot + handshake", f"{time.perf_counter() - boot_start:.2f} s"))
            for size in (16, 4096):
                payload = bytes(size)
                rtt = timed(lambda p=payload: device.client.echo(p), 20)
                rows.append((f"link round trip, {size} B echo", f"{rtt * 1e3:.1f} ms"))
            rng = np.random.default_rng(0)
            inputs = b"".join(rng.integers(-128, 128, t.nbytes, dtype=np.int8).tobytes() for t in model.inputs)
            instructions = device.infer(inputs).instructions
            rows.append(("chip (QEMU) inferences/s", f"{rate(lambda: device.infer(inputs), count):.1f}"))
            rows.append(("instructions per inference", f"{instructions:,}" if instructions else "n/a"))
    native = NativeModel(model)
    arrays = [np.frombuffer(inputs, dtype=model.inputs[0].dtype).reshape(model.inputs[0].shape)]
    rows.append(("host-native engine inferences/s", f"{rate(lambda: native.run(*arrays), count * 10):.0f}"))
    reference = ReferenceInterpreter(model_path)
    rows.append(("TFLite Micro reference inferences/s", f"{rate(lambda: reference.run(*arrays), count * 10):.0f}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model (default: %(default)s)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board (default: %(default)s)")
    p.add_argument("--count", type=int, default=200, help="inferences per throughput figure (default: %(default)s)")
    args = p.parse_args(argv)
    for tool in ("qemu-system-arm", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            from host.errors import UserError

            raise UserError(f"{tool} not found", hint="run `make deps`")
    print(f"bench: {args.model} on {args.board}")
    for name, value in bench(args.model, args.board, args.count):
        print(f"  {name:40s} {value:>12s}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""`make bench`: how fast the pieces are (wall time; instruction counts are exact).

Measures, for a model (default: the digits model) on a board (default
mps2-an386): firmware build time (clean and no-op), QEMU boot + handshake,
link round trips, inferences per second on the emulated chip, the host-native
engine and the TFLite Micro reference, and instructions per inference.

The device pool (`python -m host.evaluate --devices N`): inferences/s of the chip part of an
evaluation (host.backends.pool.BackendPool, pipelining window W per device, the TFLite Micro reference
run on the host as the results arrive, as host.evaluate does) with 1 and 2 emulators, their
ratio, and the CPU time per inference of QEMU and of the host process, which bound it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from host.backends.backend import DeviceBackend, ModelIO, ReferenceBackend, boot_emulated, cpu_for
from host.backends.pool import BackendPool
from host.compiler import compile_tflite
from host.core.boards import load_board
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware
from host.engine.native import NativeModel
from host.engine.reference import ReferenceInterpreter


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


def bench_pool(model_path: Path, board_name: str, count: int, window: int, rounds: int = 3,
               pin: bool = True) -> list[tuple[str, str]]:
    """Chip-part throughput of an evaluation with 1 and 2 emulators (see the module docstring).

    Both pools stay booted and take turns, `rounds` times (1, 2, 1, 2, ...): on a shared machine
    the load changes over time, so each figure is the median over its rounds and the ratio the
    median of the per-round ratios."""
    import os


    board = load_board(board_name)
    compiled = compile_tflite(model_path)
    io = ModelIO.from_bytes(model_path.read_bytes(), str(model_path))
    reference = ReferenceBackend(io)
    rng = np.random.default_rng(1)
    items = [(i, rng.integers(-128, 128, io.input.shape, dtype=np.int8)) for i in range(count)]
    modes = [(devices, overlap) for overlap in (False, True) for devices in (1, 2)]
    rates: dict[tuple[int, bool], list[float]] = {mode: [] for mode in modes}
    cpu: dict[tuple[int, bool], list[tuple[float, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        image = build_firmware(compiled, board, Path(tmp) / "fw")

        @contextmanager
        def opener(slot: int) -> Iterator[DeviceBackend]:
            with boot_emulated(board, image.elf, compiled.sha256, cpu_for(slot) if pin else set()) as device:
                yield DeviceBackend(device, io)

        before = set(_children("qemu-system"))
        with BackendPool(opener, devices=1, window=window) as one:
            qemus = {1: sorted(set(_children("qemu-system")) - before)}
            with BackendPool(opener, devices=2, window=window) as two:
                qemus[2] = sorted(set(_children("qemu-system")) - before - set(qemus[1]))
                pools = {1: one, 2: two}
                for pool in pools.values():
                    for _ in pool.run(items[:16]):  # warm up: every device answered
                        pass
                for _ in range(rounds):
                    for devices, overlap in modes:
                        cpu_qemu, cpu_host = _cpu_seconds(qemus[devices]), _self_cpu_seconds()
                        start = time.perf_counter()
                        for batch in pools[devices].run(items):
                            for index, _ in batch:
                                if overlap:
                                    reference.run(items[index][1])   # the evaluator's host work
                        rates[devices, overlap].append(count / (time.perf_counter() - start))
                        cpu[devices, overlap].append(
                            ((_cpu_seconds(qemus[devices]) - cpu_qemu) / count * 1e3,
                             (_self_cpu_seconds() - cpu_host) / count * 1e3))
    rows = []
    for overlap in (False, True):
        what = "with the reference run alongside" if overlap else "devices only"
        for devices in (1, 2):
            mode = devices, overlap
            label = f"{devices} device{'s' * (devices > 1)}{'' if pin else ', not pinned'}"
            rows.append((f"inferences/s, {label}, {what}", f"{statistics.median(rates[mode]):.1f}"))
            rows.append(("  rounds", " ".join(f"{r:.0f}" for r in rates[mode])))
            rows.append(("  CPU/inference QEMU / host",
                         f"{statistics.median(c[0] for c in cpu[mode]):.2f} / "
                         f"{statistics.median(c[1] for c in cpu[mode]):.2f} ms"))
        ratios = [b / a for a, b in zip(rates[1, overlap], rates[2, overlap], strict=True)]
        rows.append((f"2 devices / 1 device, {what}", f"{statistics.median(ratios):.2f}x"))
    rows.append(("load average (1 min) after the runs", f"{os.getloadavg()[0]:.2f}"))
    return rows


def _children(prefix: str) -> list[int]:
    """Pids of this process's children whose command name starts with `prefix`."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) == os.getpid() and comm.startswith(prefix):
                found.append(int(entry.name))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    import os

    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])   # utime + stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def _self_cpu_seconds() -> float:
    import os

    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model (default: %(default)s)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board (default: %(default)s)")
    p.add_argument("--count", type=int, default=200, help="inferences per throughput figure (default: %(default)s)")
    p.add_argument("--window", type=int, default=4, help="pipelining window per device in the pool figures "
                   "(default: %(default)s, as python -m host.evaluate)")
    p.add_argument("--rounds", type=int, default=3, help="alternating 1- and 2-device rounds (default: %(default)s)")
    p.add_argument("--pool-only", action="store_true", help="only the device pool figures")
    p.add_argument("--no-pin", action="store_true", help="pool figures without binding each emulator to a core")
    args = p.parse_args(argv)
    for tool in ("qemu-system-arm", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} not found", hint="run `make deps`")

    print(f"bench: {args.model} on {args.board}")
    figures = [] if args.pool_only else bench(args.model, args.board, args.count)
    for name, value in figures:
        print(f"  {name:44s} {value:>16s}")
    for name, value in bench_pool(args.model, args.board, args.count * 2, args.window, args.rounds, not args.no_pin):
        print(f"  {name:44s} {value:>16s}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

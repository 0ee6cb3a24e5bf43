"""The MLPerf Tiny runner itself (../shared/tools/mlperf-tiny-runner: mlcommons/tiny benchmark/runner/,
unmodified) against the MLPerf mode build in QEMU, through `python -m host.mlperf_runner` (a socat pty, the
runner's port listing patched to report it with the VID:PID of its devices yaml).

Small datasets in the runner's format are written to a temp folder: the first CIFAR-10 test images of every
class for ic01 (../shared/data/cifar10, exact pixels), seeded random inputs for kws01, vww01 and ad01. Every
m-results vector the runner parsed must equal TFLite Micro's output for that file as the firmware prints it
(dequantized, 3 decimals); for ad01 the anomaly score of the reference submission (MSE between output and
input in single precision, summed in order). The default suite runs ad01 accuracy mode, the bad-input
cases and a tripwire on the pace (the runner's loops against make bench's instruction counts); `make test-slow`
runs ic01, kws01, vww01, ad01 in performance and accuracy mode.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import serial

from host import mlperf_runner
from host.compiler import CompiledModel, compile_tflite
from host.core.boards import load_board
from host.core.paths import ROOT, SHARED_DIR
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter
from tests.support.mlperf import expected_scores

RUNNER = SHARED_DIR / "tools" / "mlperf-tiny-runner"
MODELS = SHARED_DIR / "models" / "mlperf-tiny"
CIFAR = SHARED_DIR / "data" / "cifar10" / "test_first1017.npz"
BOARD = "mps2-an386"
MISSING = [m for m in mlperf_runner.RUNNER_MODULES if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(not (RUNNER / "main.py").is_file(), reason=f"needs the MLPerf Tiny runner in {RUNNER}"),
    pytest.mark.skipif(bool(MISSING), reason=f"the runner needs {MISSING} (pip install -e '.[mlperf]')"),
    pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat (make deps)"),
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]


@dataclass(frozen=True)
class Benchmark:
    model_id: str
    tflite: str
    classes: int


BENCHMARKS = {
    "ic01": Benchmark("ic01", "pretrainedResnet_quant.tflite", 10),
    "kws01": Benchmark("kws01", "kws_ref_model.tflite", 12),
    "vww01": Benchmark("vww01", "vww_96_int8.tflite", 2),
    "ad01": Benchmark("ad01", "model_ToyCar_quant_fullint_micro.tflite", 2),
}
AD_FRAME, AD_FRAMES_PER_FILE = 128, 6   # ad01 files: 6 frames of 128 log-mel values; one input: 5 frames


@dataclass
class Dataset:
    root: Path                                  # the runner's --dataset_path
    inputs: dict[str, list[np.ndarray]]         # file -> the model inputs the runner sends (ad01: per segment)


def fixed3(v: float) -> float:
    """What the firmware prints: round half away from zero to 3 decimals (then parsed by the runner)."""
    milli = math.floor(abs(v) * 1000.0 + 0.5)
    return float(f"{'-' if v < 0 and milli else ''}{milli // 1000}.{milli % 1000:03d}")


def anomaly_score(output: np.ndarray, x: np.ndarray) -> float:
    """The reference submission's calculate_result: float32 MSE, summed in order, / element count."""
    out, inp = np.asarray(output, np.float32).reshape(-1), np.asarray(x, np.float32).reshape(-1)
    total = np.float32(0.0)
    for o, i in zip(out, inp, strict=True):
        diff = np.float32(o - i)
        total = np.float32(total + np.float32(diff * diff))
    return fixed3(float(np.float32(total / np.float32(out.size))))


def write_dataset(root: Path, model_id: str, files: int) -> Dataset:
    """A dataset in the runner's format: DATASET/<id>/y_labels.csv (file,classes,class[,bytes_to_send,stride])."""
    folder = root / model_id
    folder.mkdir(parents=True)
    rng = np.random.default_rng(18)
    rows, inputs = [], {}
    if model_id == "ic01":
        data = np.load(CIFAR)
        per_class = -(-files // 10)
        picks = sorted(i for c in range(10) for i in np.flatnonzero(data["y"] == c)[:per_class])[:files]
        for i in picks:
            name = f"cifar10_test_{i:04d}.bin"
            pixels = data["x"][i]                                   # uint8 HWC RGB: the runner's ic01 files
            (folder / name).write_bytes(pixels.tobytes())
            rows.append(f"{name},10,{int(data['y'][i])}")
            inputs[name] = [(pixels.astype(np.int16) - 128).astype(np.int8)[None]]   # th_load_tensor
    elif model_id in ("kws01", "vww01"):
        classes = BENCHMARKS[model_id].classes
        for k in range(files):
            name = f"{model_id}_{k:03d}.bin"
            if model_id == "kws01":                                 # int8 MFCC features, sent as they are
                x = rng.integers(-128, 128, size=(1, 49, 10, 1), dtype=np.int8)
                raw = x.tobytes()
            else:                                                   # uint8 pixels, 128 subtracted on the chip
                pixels = rng.integers(0, 256, size=(1, 96, 96, 3), dtype=np.uint8)
                raw, x = pixels.tobytes(), (pixels.astype(np.int16) - 128).astype(np.int8)
            (folder / name).write_bytes(raw)
            rows.append(f"{name},{classes},{k % classes}")
            inputs[name] = [x]
    else:                                                           # ad01: float32 frames, a 5-frame window
        for k in range(files):
            name = f"ad01_{k:03d}.bin"
            frames = rng.normal(-30.0 + 4.0 * (k % 2), 6.0, size=(AD_FRAMES_PER_FILE, AD_FRAME)).astype("<f4")
            (folder / name).write_bytes(frames.tobytes())
            rows.append(f"{name},2,{k % 2},{5 * AD_FRAME * 4},{AD_FRAME * 4}")
            inputs[name] = [frames[s:s + 5].reshape(1, 5 * AD_FRAME) for s in range(AD_FRAMES_PER_FILE - 4)]
    (folder / "y_labels.csv").write_text("\n".join(rows) + "\n")
    return Dataset(root, inputs)


class Builds(dict[str, tuple[CompiledModel, Path]]):
    """MLPerf mode builds, one per benchmark, made on first use."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.factory = factory

    def __missing__(self, model_id: str) -> tuple[CompiledModel, Path]:
        path = MODELS / BENCHMARKS[model_id].tflite
        if not path.is_file():
            pytest.skip(f"needs {path}")
        model = compile_tflite(path)
        image = build_firmware(model, load_board(BOARD), out_dir=self.factory.mktemp(model_id), mlperf=True,
                               mlperf_model_id=model_id)
        self[model_id] = (model, image.elf)
        return self[model_id]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return Builds(tmp_path_factory)


@functools.cache
def reference(path: Path) -> ReferenceInterpreter:
    return ReferenceInterpreter(path)


def expected(model_id: str, model_path: Path, model: CompiledModel, x: np.ndarray) -> list[float]:
    outputs = reference(model_path).run(x)
    if model_id == "ad01":
        return [anomaly_score(outputs[0], x)]
    return [float(s) for s in expected_scores(model, outputs)]


def infer_step(model_id: str) -> tuple[str, int, int]:
    """The runner's tests_performance.yaml, and where the model's `infer N W` line starts and ends in it."""
    text = (RUNNER / "tests_performance.yaml").read_text()
    start = text.index("infer ", text.index(f"{model_id}:"))
    return text, start, text.index("\n", start)


def scaled_script(tmp_path: Path, model_id: str, iterations: int) -> Path:
    """The runner's tests_performance.yaml with the model's `infer N W` at N = iterations (its --test_script
    option): a timed loop long enough in wall time for the runner to print its median throughput."""
    text, start, end = infer_step(model_id)
    warmups = text[start:end].split()[2]
    path = tmp_path / "tests_performance_long.yaml"
    path.write_text(text[:start] + f"infer {iterations} {warmups}" + text[end:])
    return path


def run_and_check(model_id: str, mode: str, files: int, builds: Builds, tmp_path: Path,
                  iterations: int | None = None, paced: bool | None = None) -> mlperf_runner.RunnerSession:
    model, elf = builds[model_id]
    data = write_dataset(tmp_path / "datasets", model_id, files)
    script = scaled_script(tmp_path, model_id, iterations) if iterations else None
    session = mlperf_runner.run(data.root, mode, elf=elf, out=tmp_path / "out", test_script=script,
                                timeout_s=1200, paced=paced)
    windows = [w for w in session.windows if "infer" in w]
    segments = {name: len(xs) for name, xs in data.inputs.items()}
    expected_windows = (sum(segments.values()) if model_id == "ad01" else files) if mode == "a" else 5
    assert len(windows) == expected_windows, [w.get("file") for w in windows]
    path = MODELS / BENCHMARKS[model_id].tflite
    seen: dict[str, int] = {}
    cache: dict[tuple[str, int], list[float]] = {}
    for w in windows:
        name = w["file"]
        segment = seen.get(name, 0) if mode == "a" else 0
        seen[name] = seen.get(name, 0) + 1
        key = (name, segment)
        if key not in cache:
            cache[key] = expected(model_id, path, model, data.inputs[name][segment])
        assert w["infer"]["results"] == cache[key], (name, segment, w["infer"]["results"], cache[key])
        assert w["infer"]["elapsed_time"] > 0
    print(f"runner scores {model_id} {mode}: " + "; ".join(
        line.split("ulp-mlperf:", 1)[-1].strip() for line in session.summary if "---" not in line and "=" in line
        or "Median" in line or "ERROR" in line))
    if mode == "a":
        scores = [line for line in session.summary if "Top 1% =" in line or "AUC =" in line]
        assert len(scores) == 2, session.summary
        for line in scores:
            float(line.rsplit("=", 1)[1])
    else:
        throughputs = [w["infer"]["throughput"] for w in windows]
        assert all(t > 0 for t in throughputs)
        for w in windows:   # the runner's throughput: N inferences over the two m-lap-us stamps (virtual time)
            infer = w["infer"]
            assert infer["throughput"] == pytest.approx(infer["iterations"] / (infer["elapsed_time"] / 1e6))
        median = [line for line in session.summary if "Median throughput is" in line]
        assert len(median) == 1, session.summary     # no ERROR 2: paced, the loop lasts >= 10 s of wall time
        value = float(median[0].split("is", 1)[1].split()[0])
        assert value == pytest.approx(float(np.median(throughputs)), abs=1e-3)
    return session


# ---- default suite: ad01 accuracy (the anomaly score), bad input ---------------------------------------


def test_ad01_accuracy_scores_equal_tflite_micro(builds: Builds, tmp_path: Path) -> None:
    session = run_and_check("ad01", "a", 4, builds, tmp_path)
    assert all(len(s) == 1 for s in session.scores)   # one anomaly score per input, as the reference prints


@pytest.mark.slow
@pytest.mark.parametrize("model_id,mode,files", [
    ("ic01", "a", 20), ("ic01", "p", 5), ("kws01", "a", 12), ("kws01", "p", 5),
    ("vww01", "a", 4), ("vww01", "p", 5), ("ad01", "a", 6), ("ad01", "p", 5),
])
def test_runner_benchmarks(model_id: str, mode: str, files: int, builds: Builds, tmp_path: Path) -> None:
    run_and_check(model_id, mode, files, builds, tmp_path)


@pytest.mark.slow
def test_error_2_comes_with_a_hint(builds: Builds, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Unpaced with the runner's own N, kws01's five timed loops end within 10 s: the runner's ERROR 2 is printed
    as its score, then a hint naming the pace and the way to a longer loop."""
    _, elf = builds["kws01"]
    data = write_dataset(tmp_path / "datasets", "kws01", 5)
    assert mlperf_runner.main(["--dataset", str(data.root), "--mode", "p", "--elf", str(elf), "--pace", "off",
                               "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "score    ERROR 2 - loop exited before 10 seconds elapsed." in lines
    (hint,) = [line for line in lines if line.startswith("hint ")]
    assert "the emulated board unpaced" in hint and "--test-script" in hint


@pytest.mark.slow
def test_runner_median_throughput_unpaced_with_a_longer_timed_loop(builds: Builds, tmp_path: Path) -> None:
    """Unpaced (`--pace off`), the emulated board beats the runner's 10 s wall-time floor with the fixed N of
    tests_performance.yaml; a longer timed loop gets the median all the same: kws01 at N = 700 (3.5 M
    instructions an inference: > 2 s of virtual time a window at one instruction per ns, and QEMU runs slower
    than that)."""
    run_and_check("kws01", "p", 5, builds, tmp_path, iterations=700, paced=False)


def launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host.mlperf_runner", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def assert_one_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_dataset_in_the_wrong_format(builds: Builds, tmp_path: Path) -> None:
    _, elf = builds["ad01"]
    data = write_dataset(tmp_path / "sizes", "ad01", 2)
    labels = data.root / "ad01" / "y_labels.csv"
    labels.write_text(labels.read_text().replace(",2560,", ",2000,"))
    assert_one_error(launch("--dataset", str(data.root), "--mode", "a", "--elf", str(elf), "--out",
                            str(tmp_path / "out")), "bytes_to_send is 2000 bytes", "takes 2560", "hint:")
    labels.write_text("ad01_000.bin;2;0\n")
    assert_one_error(launch("--dataset", str(data.root), "--mode", "a", "--elf", str(elf), "--out",
                            str(tmp_path / "out")), "y_labels.csv line 1", "file,classes,class,bytes_to_send,stride")
    assert_one_error(launch("--dataset", str(tmp_path / "nowhere"), "--elf", str(elf), "--out",
                            str(tmp_path / "out")), "no dataset folder")


def test_busy_port_and_silent_port(tmp_path: Path) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)   # the pty stays while the master is open; nobody holds (or answers on) the slave
    args = ("--dataset", str(tmp_path), "--port", path, "--out", str(tmp_path / "out"))
    try:
        with serial.Serial(path, 115200, exclusive=True):
            assert_one_error(launch(*args), f"{path} is busy", "hint:")
        assert_one_error(launch(*args), "no MLPerf Tiny answer", "MLPERF=1")
    finally:
        os.close(master)


def test_pace_is_for_the_emulated_board(tmp_path: Path) -> None:
    assert_one_error(launch("--dataset", str(tmp_path), "--port", "/dev/ttyACM0", "--pace", "on"),
                     "--pace is for the emulated board")


# The models' rows of make bench's table (docs/performance.md) for the benchmarks.
PERF_ROWS = {"ic01": "ResNet-8 (IC)", "kws01": "DS-CNN KWS", "vww01": "MobileNetV1-0.25 VWW", "ad01": "ToyCar AD"}
PACED_MARGIN = 1.2   # the loops must last 1.2 x the runner's 10 s: faster kernels must not bring back ERROR 2


def bench_instructions(model_row: str) -> int:
    """Instructions per inference of the optimized build on mps2-an386, as make bench last measured them."""
    for line in (ROOT / "docs" / "performance.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and cells[0] == model_row and cells[1] == BOARD:
            return int(cells[3].replace(",", ""))
    raise AssertionError(f"no {model_row} / {BOARD} row in docs/performance.md (run make bench)")


@pytest.mark.parametrize("model_id", sorted(PERF_ROWS))
def test_paced_loops_outlast_the_runners_10_s(model_id: str) -> None:
    """A tripwire for the default suite (the runs themselves are slow tests): at the launcher's pace, the five
    loops of the runner's own performance script (`infer N W`, warm-ups included; ad01's loop count times the
    windows of a write_dataset file) last at least PACED_MARGIN x 10 s by make bench's instruction counts, which
    leave out the MLPerf mode's own per-inference work (so the real loops are longer).  Kernels faster by more
    than the margin fail this, where they used to surface only as ERROR 2 in make test-slow: then lower the pace
    (PACED_SHIFT)."""
    text, start, end = infer_step(model_id)
    iterations, warmups = (int(v) for v in text[start:end].split()[1:3])
    loops = 5 * (AD_FRAMES_PER_FILE - 4 if model_id == "ad01" else 1)   # ad01: times the windows of a file
    ns_per_instruction = 2 ** mlperf_runner.PACED_SHIFT
    seconds = loops * (iterations + warmups) * bench_instructions(PERF_ROWS[model_id]) * ns_per_instruction / 1e9
    assert seconds >= PACED_MARGIN * 10.0, (
        f"{model_id}: the paced loops would take {seconds:.1f} s at {mlperf_runner.PACED_RATE}, under "
        f"{PACED_MARGIN} x the runner's 10 s (ERROR 2): raise PACED_SHIFT in host/mlperf_runner.py")

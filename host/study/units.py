"""A study's work, split into deterministic units that any worker process can run.

A run is a set of units (docs/cluster.md):

* `CraftUnit`: one attack at one ε on one shard of the inputs (the adversarial inputs; the
  query count of a black-box attack);
* `HostUnit`: one input set (clean, or one attack × ε) on one shard, on every host model: the
  float model, the host-simulated bit widths, TFLite Micro for each precision, and the same on
  each pre-processing defense's output;
* `ChipUnit`: one precision's firmware on one shard of one set, on a board the worker owns (its
  emulator, or a real board attached to its machine), optionally with a defense's pre-processing
  stage in the firmware;
* `GradientUnit`: the gradient misalignment of the float and quantized models (docs/metrics.md);
* `TrainUnit`: one trained defense's float model.

Every unit is a frozen dataclass with a `key`; what it computes depends only on the run's
`Context` and its own fields, and its randomness is seeded from the run's seed and its key
(`unit_seed`), so a result is byte-identical whichever worker runs it, in whatever order (but for
the chip's instruction count, which may differ by one SysTick tick between any two runs). Shards
are fixed by the config's `shard` size, never by the number of workers.

A worker keeps what it loaded (models, interpreters, booted boards) for the units that follow:
`WorkerState`, one per process. Files reach it by content (`Blob`: bytes plus sha256), written
once into its cache directory, so a worker on another machine needs no shared disk and
firmware is never rebuilt per unit.

Imports: host.core, host.engine, host.link, host.emulators, host.backends, host.quantization,
host.attacks, host.defenses, host.study.config.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.attacks import FloatModel, get_attack
from host.attacks.oracle import FloatOracle, QuantizedOracle
from host.backends.backend import DeviceBackend, ModelIO, NativeBackend, ReferenceBackend
from host.backends.pool import BackendPool
from host.backends.verify import cycle_counting
from host.core.boards import load_board
from host.core.errors import UserError
from host.core.files import write_bytes_whole
from host.core.quiet import import_tensorflow_quietly
from host.core.timing import CpuTiming, wait_states
from host.defenses import get_defense
from host.defenses.checkpoints import checkpointed
from host.emulators.cycles import CyclePlugin
from host.emulators.launch import boot_elf
from host.link.device import connect
from host.quantization.bitwidth import simulate
from host.quantization.qat import from_bytes as qat_from_bytes
from host.quantization.qat import train_qat
from host.quantization.quantize import load_float_keras
from host.study import metrics
from host.study.config import FLOAT, AttackSpec, DefenseSpec, attack_params

BOARD_PORTS_ENV = "SLINGSHOT_BOARD_PORTS"
GRADIENT_SAMPLES = 8          # clean inputs for gradient misalignment (FD estimates are query-hungry)
FD_DIRECTIONS = 32   # "board=URL,board2=URL2": real boards attached to a worker's machine


# ---------------------------------------------------------------- what every unit shares


@dataclass(frozen=True)
class Blob:
    """A file's bytes, known by their sha256 (how models and firmware reach the workers)."""

    sha256: str
    suffix: str
    data: bytes = field(repr=False)

    @classmethod
    def of(cls, data: bytes, suffix: str) -> Blob:
        return cls(hashlib.sha256(data).hexdigest(), suffix, data)

    @classmethod
    def read(cls, path: Path) -> Blob:
        return cls.of(Path(path).read_bytes(), Path(path).suffix)

    def path(self) -> Path:
        """This blob as a file in the worker's cache (written once, atomically)."""
        target = cache_dir() / f"{self.sha256}{self.suffix}"
        if not target.is_file():
            write_bytes_whole(target, self.data)
        return target


def cache_dir() -> Path:
    path = Path(os.environ.get("SLINGSHOT_WORKER_CACHE", Path(tempfile.gettempdir()) / "slingshot-worker"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ChipSpec:
    """One firmware on one board: an emulated board boots `firmware`; a real board (or a link URL)
    must already run it (checked by the model hash in the handshake)."""

    board: str
    model: Blob                       # the .tflite the firmware runs (its hash is checked on connect)
    firmware: Blob | None             # the ELF for an emulated board; None: a board behind a link
    url: str | None = None            # a link URL (--port, a labgrid place's port); None: emulated or per worker
    stage: Any = None                 # host.engine.preprocess.ChipStage built into this firmware
    window: int = 4
    max_restarts: int = 3
    backend: str = "device"           # or "native" (our engine built for the host), "reference" (TFLite Micro)
    cycles: bool = False              # estimate CPU cycles with QEMU's cycle plugin (emulated QEMU boards)

    @property
    def emulated(self) -> bool:
        return self.firmware is not None

    @property
    def resource(self) -> str | None:
        """The Dask worker resource a unit on this chip asks for (a real board attached to a worker)."""
        if self.backend != "device" or self.emulated or self.url is not None:
            return None
        return self.board


@dataclass(frozen=True)
class Context:
    """What every unit of one run (or one defended sub-study) shares; sent to each worker once."""

    seed: int
    input_range: tuple[float, float]
    float_model: Blob | Path          # a file's bytes, or a SavedModel directory every worker can read
    quantized: dict[str, Blob]        # precision -> .tflite
    bitwidths: tuple[Any, ...] = ()   # host.quantization.bitwidth.BitWidth
    calibration: np.ndarray | None = field(default=None, repr=False)   # for weights+activations bit widths
    defenses: tuple[DefenseSpec, ...] = ()     # pre-processing defenses (host side)
    chips: dict[str, ChipSpec] = field(default_factory=dict)            # precision -> its chip
    stage_chips: dict[tuple[str, str], ChipSpec] = field(default_factory=dict)   # (defense label, precision)
    qat_models: dict[str, Blob] = field(default_factory=dict)    # a QAT bit width's key -> qat.to_bytes


CALIBRATION_LIMIT = 500          # calibration images for activation ranges (weights+activations widths)


def unit_seed(run_seed: int, key: str) -> int:
    """A unit's seed: from the run's seed and the unit's key only (any worker, any order)."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}|{key}".encode()).digest()[:4], "little") & 0x7FFFFFFF


# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class CraftUnit:
    set_key: str
    spec: AttackSpec
    eps: float | None
    start: int
    stop: int
    whole_set: bool = False           # one unit for the set (Attack.craft_whole_set), not one per shard

    @property
    def key(self) -> str:
        return f"craft/{self.set_key}/{'all' if self.whole_set else self.start}"


@dataclass(frozen=True)
class HostUnit:
    set_key: str
    start: int
    stop: int

    @property
    def key(self) -> str:
        return f"host/{self.set_key}/{self.start}"


@dataclass(frozen=True)
class ChipUnit:
    set_key: str
    precision: str
    start: int
    stop: int
    stage: str | None = None          # a defense label: its pre-processing stage runs on the chip

    @property
    def key(self) -> str:
        where = self.precision if self.stage is None else f"{self.precision}+{self.stage}"
        return f"chip/{where}/{self.set_key}/{self.start}"


@dataclass(frozen=True)
class GradientUnit:
    """Gradient misalignment (docs/metrics.md) on the first GRADIENT_SAMPLES clean inputs."""

    scope: str
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)

    @property
    def key(self) -> str:
        return f"gradient/{self.scope}misalignment"


@dataclass(frozen=True)
class TrainUnit:
    label: str
    spec: DefenseSpec
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    # where its epoch checkpoints go (the run's directory, which every worker must reach), or None: a
    # stopped run's training goes on from its last epoch (host.defenses.checkpoints)
    checkpoints: Path | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"train/{self.label}"


@dataclass(frozen=True)
class QatUnit:
    """Quantization-aware training of one bit width (host.quantization.qat); the training pool comes as
    the unit's inputs and labels (shared once by every width's unit)."""

    scope: str
    width: Any                        # host.quantization.bitwidth.BitWidth, qat=True
    spec: Any                         # host.study.config.QatSpec: the schedule

    @property
    def key(self) -> str:
        return f"{self.scope}qat/{self.width.key}"


# ---------------------------------------------------------------- results (journaled as .npz)


@dataclass
class Crafted:
    x: np.ndarray                     # float32 adversarial inputs of the unit's inputs
    queries: int | None = None        # oracle queries (black-box attacks)
    start: int | None = None          # the index in the set of x[0] (None: journals before whole-set units,
                                      # whose craft units were one per shard: the consumer's own start)


@dataclass
class HostRun:
    preds: dict[str, np.ndarray]                  # model key -> predicted classes
    raw: dict[str, np.ndarray]                    # precision -> quantized outputs (n, bytes) as uint8
    defended: dict[str, HostRun] = field(default_factory=dict)   # defense label -> the same on its output


@dataclass
class ChipRun:
    output: np.ndarray                            # (n, output bytes) uint8: the chip's raw outputs
    instructions: np.ndarray                      # int64, -1 when the board does not count
    ticks: np.ndarray
    preprocess_instructions: np.ndarray
    stage_reference: np.ndarray | None = None     # TFLite Micro on the host's integer pre-processing
    cycles: np.ndarray | None = None              # (n, 2) int64 estimated cycles (low, high); -1: not counted


def to_npz(result: Any) -> bytes:
    """A unit's result as .npz bytes (the journal's format: docs/experiments.md, "results.sqlite")."""
    arrays: dict[str, np.ndarray] = {}
    if isinstance(result, Crafted):
        arrays = {"x": result.x, "queries": np.int64(-1 if result.queries is None else result.queries),
                  "start": np.int64(-1 if result.start is None else result.start)}
    elif isinstance(result, HostRun):
        arrays = _host_arrays(result, "")
    elif isinstance(result, ChipRun):
        arrays = {"output": result.output, "instructions": result.instructions, "ticks": result.ticks,
                  "preprocess_instructions": result.preprocess_instructions}
        if result.stage_reference is not None:
            arrays["stage_reference"] = result.stage_reference
        if result.cycles is not None:
            arrays["cycles"] = result.cycles
    elif isinstance(result, bytes):
        arrays = {"model": np.frombuffer(result, np.uint8)}
    elif isinstance(result, dict):
        arrays = {"json": np.frombuffer(json.dumps(result).encode(), np.uint8)}
    else:
        raise TypeError(f"not a unit result: {type(result).__name__}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _host_arrays(run: HostRun, prefix: str) -> dict[str, np.ndarray]:
    arrays = {f"{prefix}pred/{k}": v for k, v in run.preds.items()}
    arrays.update({f"{prefix}raw/{k}": v for k, v in run.raw.items()})
    for label, sub in run.defended.items():
        arrays.update(_host_arrays(sub, f"{prefix}defended/{label}/"))
    return arrays


def from_npz(kind: str, data: bytes) -> Any:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if kind == "craft":
        queries = int(arrays["queries"])
        start = int(arrays.get("start", -1))
        return Crafted(arrays["x"], None if queries < 0 else queries, None if start < 0 else start)
    if kind == "host":
        return _host_from(arrays, "")
    if kind == "chip":
        return ChipRun(arrays["output"], arrays["instructions"], arrays["ticks"], arrays["preprocess_instructions"],
                       arrays.get("stage_reference"), arrays.get("cycles"))
    if kind in ("train", "qat"):   # a trained model's bytes (a QAT width's: qat.to_bytes)
        return arrays["model"].tobytes()
    if kind == "gradient":
        return json.loads(arrays["json"].tobytes())
    raise ValueError(f"unknown unit kind {kind!r}")


def _host_from(arrays: dict[str, np.ndarray], prefix: str) -> HostRun:
    run = HostRun({}, {})
    labels = []
    for name, value in arrays.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if rest.startswith("pred/"):
            run.preds[rest[5:]] = value
        elif rest.startswith("raw/"):
            run.raw[rest[4:]] = value
        elif rest.startswith("defended/"):
            label = rest[len("defended/"):].rsplit("/", 2)[0]
            if label not in labels:
                labels.append(label)
    for label in labels:
        run.defended[label] = _host_from(arrays, f"{prefix}defended/{label}/")
    return run


def kind_of(key: str) -> str:
    return key.split("/", 1)[0]


# ---------------------------------------------------------------- running a unit (on a worker)


@dataclass
class Timed:
    """A unit's result, with how long it took and on which worker (for docs/bench.md's breakdown)."""

    result: Any
    seconds: float
    worker: str


def run_unit(context: Context, unit: Any, inputs: Any = None, labels: np.ndarray | None = None) -> Timed:
    """Run one unit in this process. `inputs`: the whole set's float inputs (sliced here to the
    unit's shard), or the `Crafted` shard that a craft unit made; `labels`: the whole set's labels."""
    started = time.perf_counter()
    result = _run(WorkerState.get(), context, unit, inputs, labels)
    return Timed(result, time.perf_counter() - started, f"{socket.gethostname()}:{os.getpid()}")


def _run(state: WorkerState, context: Context, unit: Any, inputs: Any, labels: np.ndarray | None) -> Any:
    if isinstance(inputs, Timed):
        inputs = inputs.result
    if isinstance(unit, QatUnit):     # the whole training pool
        assert inputs is not None and labels is not None
        return state.train_qat(context, unit, np.asarray(inputs, np.float32), np.asarray(labels, np.int64))
    x = None
    if isinstance(inputs, Crafted):   # a craft unit's inputs: this unit's slice of them
        offset = unit.start if inputs.start is None else inputs.start
        x = inputs.x[unit.start - offset: unit.stop - offset]
    elif inputs is not None:
        x = np.asarray(inputs)[unit.start:unit.stop]
    if isinstance(unit, CraftUnit):
        assert labels is not None
        return state.craft(context, unit, np.asarray(x, np.float32), np.asarray(labels, np.int64)[unit.start:unit.stop])
    if isinstance(unit, HostUnit):
        return state.host_run(context, np.asarray(x, np.float32))
    if isinstance(unit, ChipUnit):
        return state.chip_run(context, unit, np.asarray(x, np.float32))
    if isinstance(unit, TrainUnit):
        return state.train(context, unit)
    if isinstance(unit, GradientUnit):
        return state.gradient(context, unit)
    raise TypeError(f"not a unit: {type(unit).__name__}")


class WorkerState:
    """What one process loaded for its units: models and interpreters by content hash, and one
    board (emulator or real) per firmware, kept until the process ends."""

    _instance: WorkerState | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._float: dict[Any, FloatModel] = {}
        self._io: dict[str, tuple[ModelIO, ReferenceBackend]] = {}
        self._native: dict[str, NativeBackend] = {}
        self._simulated: dict[Any, Any] = {}
        self._defenses: dict[str, Any] = {}
        self._chips: dict[Any, BackendPool] = {}
        self._cycles: dict[Any, tuple[CyclePlugin, CpuTiming]] = {}   # chip key -> its QEMU's cycle plugin
        self._stack = ExitStack()
        self._chip_lock = threading.Lock()
        atexit.register(self.close)

    @classmethod
    def get(cls) -> WorkerState:
        with cls._lock:
            if cls._instance is None:
                configure_threads()
                cls._instance = cls()
            return cls._instance

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        self._chips.clear()
        self._cycles.clear()

    # ---- models

    def float_model(self, context: Context) -> FloatModel:
        key = (context.float_model if isinstance(context.float_model, Path) else context.float_model.sha256,
               context.input_range)
        if key not in self._float:
            path = context.float_model if isinstance(context.float_model, Path) else context.float_model.path()
            self._float[key] = FloatModel(load_float_keras(path), context.input_range)
        return self._float[key]

    def quantized(self, blob: Blob) -> tuple[ModelIO, ReferenceBackend]:
        if blob.sha256 not in self._io:
            model = ModelIO.from_bytes(blob.data, f"model {blob.sha256[:12]}")
            self._io[blob.sha256] = (model, ReferenceBackend(model))
        return self._io[blob.sha256]

    def native(self, blob: Blob) -> NativeBackend:
        """Our engine built for this host for the model (bit-exact with TFLite Micro: tests/engine), the
        query attacks' default oracle."""
        if blob.sha256 not in self._native:
            model, _ = self.quantized(blob)
            self._native[blob.sha256] = NativeBackend(model)
        return self._native[blob.sha256]

    def simulated(self, context: Context) -> dict[str, Any]:
        """The bit-width sweep's host models: post-training (simulate) and quantization-aware trained."""
        out = {}
        keras_model = self.float_model(context).keras_model
        for width in context.bitwidths:
            trained = context.qat_models.get(width.key) if width.qat else None
            key = (keras_model, width, None if trained is None else trained.sha256)
            if key not in self._simulated:
                if width.qat:
                    if trained is None:
                        raise UserError(f"{width.key}: no quantization-aware trained model in this run's context")
                    self._simulated[key] = qat_from_bytes(keras_model, width, trained.data)
                else:
                    self._simulated[key] = simulate(keras_model, width, self._calibration(context))
            out[width.key] = self._simulated[key]
        return out

    @staticmethod
    def _calibration(context: Context) -> np.ndarray | None:
        return None if context.calibration is None else context.calibration[:CALIBRATION_LIMIT]

    # ---- boards

    def chip(self, spec: ChipSpec) -> BackendPool:
        """This worker's board for `spec` (booted, or connected, at its first unit)."""
        key = _chip_key(spec)
        with self._chip_lock:
            if key not in self._chips:
                model, _ = self.quantized(spec.model)
                plugin = self._cycle_plugin(spec, key)
                pool = BackendPool(lambda slot: _open_chip(spec, model, plugin), devices=1, window=spec.window,
                                   max_restarts=spec.max_restarts)
                self._chips[key] = self._stack.enter_context(pool)
            return self._chips[key]

    def _cycle_plugin(self, spec: ChipSpec, key: Any) -> CyclePlugin | None:
        """QEMU's cycle plugin for this chip's emulator, when cycles are asked and the CPU has a model
        (the command checked both: host.study.runner.cycle_note)."""
        if not spec.cycles or spec.firmware is None:
            return None
        timing, plugin, _ = cycle_counting(load_board(spec.board), spec.firmware.path())
        if timing is None or plugin is None:
            return None
        self._stack.callback(plugin.discard)   # registered before the pool: runs after QEMU has stopped
        self._cycles[key] = (plugin, timing)
        return plugin

    def chip_cycles(self, spec: ChipSpec, n: int) -> np.ndarray | None:
        """The estimated cycles of the last `n` inferences on this chip, (n, 2) low/high; all -1 when the
        plugin did not see exactly n windows since the last call (the board was restarted in between)."""
        entry = self._cycles.get(_chip_key(spec))
        if entry is None:
            return None
        plugin, timing = entry
        windows = plugin.read_windows()
        if len(windows) != n:
            return np.full((n, 2), -1, np.int64)
        states = wait_states(load_board(spec.board))
        estimates = [timing.estimate(w.counts, states) for w in windows]
        return np.array([[e.low, e.high] for e in estimates], np.int64).reshape(n, 2)

    # ---- the units

    def craft(self, context: Context, unit: CraftUnit, x: np.ndarray, y: np.ndarray) -> Crafted:
        seed = unit_seed(context.seed, unit.key)
        seed_everything(seed)
        attack = get_attack(unit.spec.name, seed=seed, **attack_params(unit.spec),
                            **({} if unit.eps is None else {"eps": unit.eps}))
        if attack.needs != "oracle":
            return Crafted(attack.generate(self.float_model(context), x, y), start=unit.start)
        precision, via = unit.spec.params.get("target", "int8"), unit.spec.params.get("via", "native")
        if precision == FLOAT:
            oracle: Any = FloatOracle(self.float_model(context))
            return Crafted(attack.generate(oracle, x, y), attack.last_queries, unit.start)
        model, reference = self.quantized(context.quantized[precision])
        if via == "chip":
            pool = self.chip(context.chips[precision])
            oracle = QuantizedOracle(lambda x_q: _run_one(pool, x_q), model.input, model.output, context.input_range)
        elif via == "reference":
            oracle = QuantizedOracle.from_backend(reference, model, context.input_range)
        else:
            oracle = QuantizedOracle.from_backend(self.native(context.quantized[precision]), model,
                                                  context.input_range)
        x_adv = attack.generate(oracle, x, y)
        return Crafted(x_adv, attack.last_queries, unit.start)

    def host_run(self, context: Context, x: np.ndarray) -> HostRun:
        run = self._host_models(context, x)
        for spec in context.defenses:
            run.defended[spec.label] = self._host_models(context, x, bitwidths=False, defense=self.defense(spec))
        return run

    def defense(self, spec: DefenseSpec) -> Any:
        """A pre-processing defense, made once per process (pixel-defend loads its PixelCNN once)."""
        key = f"{spec.name}|{sorted(spec.params.items())!r}"
        if key not in self._defenses:
            self._defenses[key] = get_defense(spec.name, **spec.params)
        return self._defenses[key]

    def _host_models(self, context: Context, x: np.ndarray, bitwidths: bool = True,
                     defense: Any = None) -> HostRun:
        """Every host model's prediction on x, or on defense's output when a defense is given."""
        x_in = x if defense is None else defense.apply(x, context.input_range)
        preds = {FLOAT: self.float_model(context).predict(x_in).argmax(axis=1).astype(np.int64)}
        if bitwidths:
            for key, model in self.simulated(context).items():
                preds[key] = np.asarray(model.predict(x_in, verbose=0, batch_size=256)).argmax(axis=1).astype(np.int64)
        raw = {}
        for precision, blob in context.quantized.items():
            model, reference = self.quantized(blob)
            outputs = [reference.run(s).output for s in _quantized_input(model.input, x, x_in, defense,
                                                                          context.input_range)]
            raw[precision] = _byte_matrix(outputs, len(x))
            preds[precision] = argmax_bytes(outputs, model.output.dtype)
        return HostRun(preds, raw)

    def chip_run(self, context: Context, unit: ChipUnit, x: np.ndarray) -> ChipRun:
        spec = context.chips[unit.precision] if unit.stage is None else context.stage_chips[(unit.stage,
                                                                                             unit.precision)]
        model, reference = self.quantized(spec.model)
        x_q = model.input.quantize(x)
        results: dict[int, Any] = {}
        for batch in self.chip(spec).run(enumerate(x_q)):
            results.update(batch)
        ordered = [results[i] for i in range(len(x_q))]
        run = ChipRun(_byte_matrix([r.output for r in ordered], len(x_q)),
                      _counts(ordered, "instructions"), _counts(ordered, "ticks"),
                      _counts(ordered, "preprocess_instructions"), cycles=self.chip_cycles(spec, len(x_q)))
        if spec.stage is not None:
            staged = spec.stage.reference(x_q, model.input, context.input_range)
            run.stage_reference = _byte_matrix([reference.run(s).output for s in staged], len(x_q))
        return run

    def gradient(self, context: Context, unit: GradientUnit) -> dict[str, Any]:
        """Cosine between the float model's input gradient and FD estimates on each quantized model.

        A random-direction estimate only sees a FD_DIRECTIONS-dimensional projection of the gradient,
        so even an exact oracle gives a cosine of about sqrt(directions / dimensions): the same
        estimator on the float model itself ("float32 (FD baseline)") is the reference to read the
        quantized models' cosines against.
        """
        float_model = self.float_model(context)
        x, y = np.asarray(unit.x, np.float32), np.asarray(unit.y, np.int64)
        float_grad = metrics.float_input_gradient(float_model.keras_model, x, y)
        span = context.input_range[1] - context.input_range[0]
        fd = {"h": span / 64, "method": "random", "directions": FD_DIRECTIONS, "seed": 0, "clip": context.input_range}
        oracles: dict[str, Any] = {f"{FLOAT} (FD baseline)": float_model.predict}
        for precision, blob in context.quantized.items():
            model, reference = self.quantized(blob)
            oracles[precision] = QuantizedOracle.from_backend(reference, model, context.input_range)
        out = {}
        for key, oracle in oracles.items():
            estimate = metrics.finite_difference_gradient(oracle, x, labels=y, **fd)
            out[key] = {**metrics.gradient_misalignment(float_grad, estimate), "samples": len(x),
                        "queries": int(getattr(oracle, "queries", 0)) or len(x) * (FD_DIRECTIONS * 2),
                        "fd": f"random directions ({FD_DIRECTIONS}), h = range/64"}
        return json.loads(json.dumps(out, default=_json_default))

    def train_qat(self, context: Context, unit: QatUnit, x: np.ndarray, y: np.ndarray) -> bytes:
        epochs, rate = unit.spec.schedule(unit.width.bits)
        _, blob = train_qat(self.float_model(context).keras_model, unit.width, x, y,
                            self._calibration(context), epochs=epochs, batch_size=unit.spec.batch_size,
                            learning_rate=rate, seed=unit_seed(context.seed, unit.key),
                            decay=unit.spec.decay)
        return blob

    def train(self, context: Context, unit: TrainUnit) -> bytes:
        seed_everything(unit_seed(context.seed, unit.key))
        with checkpointed(unit.checkpoints):
            model = get_defense(unit.spec.name, **unit.spec.params).train(
                self.float_model(context).keras_model, unit.x, unit.y, input_range=context.input_range)
        path = cache_dir() / f"train-{os.getpid()}-{threading.get_ident()}.keras"
        try:
            model.save(path)
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)


def warm_worker() -> None:
    """Load TensorFlow (one thread) in this worker before its first unit."""
    WorkerState.get()


def close_worker_state() -> None:
    """Stop this process's boards (a worker about to exit, so that it exits at once)."""
    if WorkerState._instance is not None:
        WorkerState._instance.close()


def _chip_key(spec: ChipSpec) -> tuple[Any, ...]:
    return spec.board, spec.model.sha256, None if spec.firmware is None else spec.firmware.sha256, spec.url


def _open_chip(spec: ChipSpec, model: ModelIO,
               plugin: CyclePlugin | None = None) -> contextlib.AbstractContextManager[Any]:
    board = load_board(spec.board)

    @contextlib.contextmanager
    def opened() -> Iterator[Any]:
        if spec.backend == "reference":
            yield ReferenceBackend(model)
            return
        if spec.backend == "native":
            yield NativeBackend(model)
            return
        if spec.firmware is not None:
            # Not bound to a core: each worker process would bind its first emulator to the same one.
            with boot_elf(board, spec.firmware.path(), model.sha256, cpus=set(), plugin=plugin) as device:
                yield DeviceBackend(device, model, staged=spec.stage is not None)
            return
        url = spec.url or board_port(spec.board)
        with connect(board, url, model.sha256) as device:
            yield DeviceBackend(device, model)

    return opened()


def board_port(board: str) -> str:
    """The link URL of a real board attached to this worker's machine ($SLINGSHOT_BOARD_PORTS)."""
    for item in os.environ.get(BOARD_PORTS_ENV, "").split(","):
        name, _, url = item.partition("=")
        if name.strip() == board and url.strip():
            return url.strip()
    raise UserError(f"this worker offers board {board} but ${BOARD_PORTS_ENV} names no port for it",
                    hint=f'start the worker with {BOARD_PORTS_ENV}="{board}=/dev/ttyACM0" (docs/cluster.md)')


def _run_one(pool: BackendPool, x_q: np.ndarray) -> Any:
    for batch in pool.run([(0, x_q)]):
        return batch[0][1]
    raise UserError("the chip returned no result")


def _json_default(value: Any) -> Any:
    """NumPy scalars and arrays in a gradient result, as JSON numbers and lists."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _quantized_input(tensor: Any, x: np.ndarray, x_defended: np.ndarray, defense: Any,
                     input_range: Sequence[float]) -> np.ndarray:
    """What a quantized model sees: quantize(defended x), or the defense's own integer definition."""
    if defense is not None and defense.acts_on_quantized_input:
        return defense.apply_quantized(tensor.quantize(x), tensor.scale, tensor.zero_point, input_range)
    return tensor.quantize(x_defended)


def _byte_matrix(outputs: list[bytes], n: int) -> np.ndarray:
    if not outputs:
        return np.zeros((n, 0), np.uint8)
    return np.frombuffer(b"".join(outputs), np.uint8).reshape(n, -1).copy()


def _counts(results: list[Any], name: str) -> np.ndarray:
    return np.array([-1 if getattr(r, name, None) is None else int(getattr(r, name)) for r in results], np.int64)


def argmax_bytes(outputs: list[bytes] | np.ndarray, dtype: str) -> np.ndarray:
    """Predicted class per raw output (argmax of the quantized scores: scale > 0 keeps the order)."""
    rows = [np.frombuffer(bytes(b), dtype=dtype) for b in outputs]
    return np.array([int(r.argmax()) for r in rows], dtype=np.int64)


def seed_everything(seed: int) -> None:
    import_tensorflow_quietly()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


THREADS_SET: list[int] = []


def configure_threads(threads: int = 1) -> None:
    """One thread per worker process for TensorFlow (and OpenMP): workers scale by processes, and
    the same thread count everywhere keeps float results byte-identical between a serial run and
    any number of workers. Called before TensorFlow runs anything."""
    if THREADS_SET:
        return
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = str(threads)
    import_tensorflow_quietly()
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):   # already initialised: the environment above still holds
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()
    THREADS_SET.append(threads)


Runner = Callable[..., Any]

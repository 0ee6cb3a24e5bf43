"""`python -m host.bench_cluster`: how a study scales on Dask workers (docs/bench.md, "Dask workers").

* `speedup [--config C] [--workers 1,2] [--quick]`: the same study through
  host.study.runner.run_experiment on a Dask LocalCluster of 1, then 2 (…) worker processes;
  prints wall time (cluster start-up apart), the units phase, the speed-up over the first worker
  count, worker seconds per kind of unit, Dask's per-task overhead, and whether every run gave
  identical results (accuracies, and every journaled unit byte for byte). Without --config, a
  built-in study: the CIFAR-10 ResNet of ../shared (one PGD ε, 200 inputs in shards of 25, int8 on
  the emulated mps2-an386, int8 and int16x8 on TFLite Micro), or the digits model when ../shared
  is absent. Each run's journal is kept (--out) for `simulate`.
* `simulate RUN_DIR [--workers 1,2,4,8,16] [--overhead S]`: from a finished run's journal (unit
  keys and measured seconds), the makespan of the same units under a list scheduler like Dask's
  (units in plan order, the next ready unit to the first free worker, one unit at a time per
  worker, each worker its own core), with its speed-up, efficiency and critical path.

Chip units on emulators are CPU-bound QEMU: on a machine with C cores, more than C workers do
not help; the simulation assumes one core per worker.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import io
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.core.errors import UserError, run_cli
from host.core.paths import BUILD_DIR, ROOT, SHARED_DIR
from host.study.cluster import open_executor
from host.study.config import load_experiment
from host.study.journal import DB_NAME, Journal, experiment_fingerprint
from host.study.runner import prepare, run_context, run_experiment
from host.study.units import configure_threads, kind_of

CIFAR_DIR = SHARED_DIR / "models" / "david-goliath"
CIFAR_DATA = SHARED_DIR / "data" / "cifar10" / "test_first1017.npz"
DEFAULT_OVERHEAD_S = 0.05
NOOP_TASKS = 200

# the built-in study: one sharded attack set (plus the clean set), crafted on the host, run on the chip
_STUDY = """\
[experiment]
name = "bench-cluster-{name}"
seed = 0

[model]
float = "{float}"
int8 = "{int8}"
{int16}precisions = ["float32", "int16x8", "int8"]

[dataset]
path = "{data}"
num = 200
input_range = [0.0, 1.0]
{representative}
[chip]
board = "mps2-an386"
precisions = ["int8"]

[cluster]
shard = 25

[[attack]]
name = "pgd"
eps = [{eps}]
max_iter = 10
restarts = 1

[quick]
dataset_num = 100

[quick.attack_params]
pgd = {{ max_iter = 5 }}
"""


def builtin_config(directory: Path) -> Path:
    """The built-in study's config, written into `directory`: CIFAR when ../shared is there, else digits."""
    if (CIFAR_DIR / "cifar_resnet_float.h5").is_file() and CIFAR_DATA.is_file():
        text = _STUDY.format(name="cifar10", float=CIFAR_DIR / "cifar_resnet_float.h5",
                             int8=CIFAR_DIR / "cifar_resnet_int8.tflite",
                             int16=f'int16x8 = "{CIFAR_DIR / "cifar_resnet_int16.tflite"}"\n', data=CIFAR_DATA,
                             representative="", eps="0.004")
    else:
        text = _STUDY.format(name="digits", float=ROOT / "models" / "digits_cnn.keras",
                             int8=ROOT / "models" / "digits_cnn_int8.tflite", int16="", data="builtin:digits-test",
                             representative='\n[dataset.representative]\npath = "builtin:digits-train"\nnum = 200\n',
                             eps="0.1")
    path = directory / "bench-cluster.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- speedup


class TimedExecutor:
    """An executor that notes when the first unit was submitted and the last result arrived."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.first_submit: float | None = None
        self.last_result: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        if self.first_submit is None:
            self.first_submit = time.perf_counter()
        return self.inner.submit(*args, **kwargs)

    def completed(self, handles: Iterable[Any]) -> Iterator[Any]:
        for item in self.inner.completed(handles):
            self.last_result = time.perf_counter()
            yield item

    @property
    def units_seconds(self) -> float:
        return 0.0 if self.first_submit is None or self.last_result is None else self.last_result - self.first_submit


@dataclass
class Measured:
    workers: int
    startup_s: float
    wall_s: float
    units_phase_s: float
    units: int
    unit_seconds: dict[str, float]
    noop_task_s: float | None
    run_dir: Path
    accuracies: dict[str, float] = field(repr=False, default_factory=dict)


def _noop(i: int) -> int:
    return i


def noop_overhead(executor: Any, count: int = NOOP_TASKS) -> float | None:
    """Dask's cost per task on this cluster: `count` independent no-op tasks, wall / count."""
    client = getattr(executor, "client", None)
    if client is None:
        return None
    started = time.perf_counter()
    futures = client.map(_noop, range(count), pure=False)
    client.gather(futures)
    return (time.perf_counter() - started) / count


def accuracies(document: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """attack/eps/model -> accuracy, over the study and its defended sub-studies."""
    out = {}
    for evaluation in document.get("evaluations", []):
        for model, metrics in evaluation.get("models", {}).items():
            out[f"{prefix}{evaluation['attack']}/{evaluation['eps']}/{model}"] = metrics.get("accuracy")
    for label, sub in (document.get("defended_models") or {}).items():
        out.update(accuracies(sub, f"{prefix}{label}:"))
    return out


def compare_units(blobs: list[dict[str, bytes]]) -> tuple[list[str], tuple[int, int, int, float] | None]:
    """Units whose results differ between runs (a chip unit by its outputs only), and how much the
    chip's instruction counts drift: (inferences differing, inferences, max difference, max relative)."""
    differing, changed, total, worst, worst_rel = set(), 0, 0, 0, 0.0
    for other in blobs[1:]:
        for key in sorted(set(blobs[0]) | set(other)):
            a, b = blobs[0].get(key), other.get(key)
            if a is None or b is None:
                differing.add(key)
            elif kind_of(key) != "chip":
                if a != b:
                    differing.add(key)
            else:
                with np.load(io.BytesIO(a)) as x, np.load(io.BytesIO(b)) as y:
                    if not np.array_equal(x["output"], y["output"]):
                        differing.add(key)
                    ia, ib = x["instructions"].astype(np.int64), y["instructions"].astype(np.int64)
                if ia.shape == ib.shape and ia.size:
                    delta = np.abs(ia - ib)
                    changed, total = changed + int((delta > 0).sum()), total + ia.size
                    worst = max(worst, int(delta.max()))
                    worst_rel = max(worst_rel, float((delta / np.maximum(np.abs(ia), 1)).max()))
    return sorted(differing), ((changed, total, worst, worst_rel) if changed else None)


def journal_blobs(run_dir: Path) -> dict[str, bytes]:
    with contextlib.closing(sqlite3.connect(run_dir / DB_NAME)) as db:
        return {key: bytes(blob) for key, blob in db.execute("SELECT key, result FROM units")}


def _pin_process(core: int) -> int:
    """In a worker: bind every thread of this process to `core` (so are the emulators it starts)."""
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task), {core})
    return core


def pin_workers(executor: Any) -> list[int]:
    """Bind worker i of a LocalCluster to core i (mod the cores this process may use)."""
    cores = sorted(os.sched_getaffinity(0))
    addresses = sorted(executor.client.scheduler_info(n_workers=-1)["workers"])
    return [executor.client.run(_pin_process, cores[i % len(cores)], workers=[address])[address]
            for i, address in enumerate(addresses)]


def measure(exp: Any, prepared: tuple[Any, ...], workers: int, run_dir: Path, argv: list[str],
            pin: bool = False) -> Measured:
    started = time.perf_counter()
    with open_executor(workers=workers, log=lambda m: print(f"  {m}", file=sys.stderr)) as executor:
        if pin:
            print(f"  workers bound to cores {pin_workers(executor)}", file=sys.stderr)
        startup = time.perf_counter() - started
        timed = TimedExecutor(executor)
        journal = Journal.start(run_dir / DB_NAME, experiment_fingerprint(exp), argv, resume=False)
        try:
            began = time.perf_counter()
            document = run_experiment(exp, progress=False, journal=journal, executor=timed, prepared=prepared,
                                      log=lambda m: print(f"  {m}", file=sys.stderr))
            wall = time.perf_counter() - began
            journal.finish()
        finally:
            journal.close()
        noop = noop_overhead(executor)
    (run_dir / "run.json").write_text(json.dumps({**document["run"], "bench_wall_s": wall}, indent=1) + "\n")
    return Measured(workers, startup, wall, timed.units_seconds, document["run"]["units"],
                    document["run"]["unit_seconds"], noop, run_dir, accuracies(document))


def speedup(config: Path | None, workers: list[int], quick: bool, out: Path, pin: bool = False) -> int:
    configure_threads()   # before TensorFlow starts, as host.evaluate does
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        path = config or builtin_config(Path(tmp))
        exp = load_experiment(path, quick=quick)
        print(f"study {exp.name}{' (quick)' if quick else ''}: {exp.dataset.num or 'all'} inputs of "
              f"{exp.dataset.path}, shard {exp.shard}, {len(exp.attacks)} attack(s), chip "
              f"{exp.chip_board} {list(exp.chip_precisions)}; config {config or 'built-in'}", file=sys.stderr)
        prepared = prepare(exp)
        x, y, models, float_model, targets, calibration = prepared
        with run_context(exp, models, targets, calibration):   # firmware built once, before any timed run
            pass
        out.mkdir(parents=True, exist_ok=True)
        runs = []
        for n in workers:
            print(f"workers={n} …", file=sys.stderr)
            runs.append(measure(exp, prepared, n, out / f"workers{n}", ["bench_cluster", str(path), f"w{n}"], pin))
    print(render_speedup(exp.name + (", workers bound to one core each (--pin-workers)" if pin else ""), runs))
    return 0


def render_speedup(name: str, runs: list[Measured]) -> str:
    base = runs[0]
    kinds = sorted({k for r in runs for k in r.unit_seconds})
    lines = [f"study {name}: {base.units} units; wall = run_experiment (cluster start-up apart); units phase = first "
             "unit submitted → last result",
             "",
             "| workers | start-up s | wall s | units phase s | units | speed-up (wall) | speed-up (units phase) | "
             + " | ".join(f"{k} unit s" for k in kinds) + " | Dask no-op task ms |",
             "|---" * (8 + len(kinds)) + "|"]
    for r in runs:
        noop = "–" if r.noop_task_s is None else f"{r.noop_task_s * 1000:.1f}"
        lines.append(f"| {r.workers} | {r.startup_s:.1f} | {r.wall_s:.1f} | {r.units_phase_s:.1f} | {r.units} | "
                     f"{base.wall_s / r.wall_s:.2f}× | {base.units_phase_s / max(r.units_phase_s, 1e-9):.2f}× | "
                     + " | ".join(f"{r.unit_seconds.get(k, 0.0):.1f}" for k in kinds) + f" | {noop} |")
    lines.append("")
    for r in runs:
        busy = sum(r.unit_seconds.values())
        lines.append(f"workers={r.workers}: worker seconds in units {busy:.1f}; per unit outside the units "
                     f"(units phase × workers − busy) / units = "
                     f"{(r.units_phase_s * r.workers - busy) / max(r.units, 1):.3f} s; journal {r.run_dir}")
    same_metrics = all(r.accuracies == base.accuracies for r in runs[1:])
    blobs = [journal_blobs(r.run_dir) for r in runs]
    differing, drift = compare_units(blobs)
    lines.append(f"results identical across worker counts: accuracies {'yes' if same_metrics else 'NO'} "
                 f"({len(base.accuracies)} values); units byte for byte {'yes' if not differing else 'NO'} "
                 f"({len(blobs[0])} units; chip units: outputs compared, instruction and tick counts apart)")
    if differing:
        lines.append(f"differing units: {', '.join(differing[:10])}")
    if drift:
        lines.append(f"chip instruction counts differ between runs in {drift[0]} of {drift[1]} inferences "
                     f"(at most {drift[2]} instructions, {drift[3]:.1e} relative)")
    return "\n".join(lines)


# ---------------------------------------------------------------- simulate


@dataclass(frozen=True)
class Unit:
    key: str
    seconds: float
    deps: tuple[str, ...]
    scope: str


_ATTACK_SET = re.compile(r"attack-(\d+)-.*-eps(\d+)$")
_KIND_ORDER = {"craft": 0, "host": 1, "chip": 2}


_WHOLE_MODEL_KINDS = ("train", "qat")   # units that make a model the study's other units use


def parse_key(key: str) -> tuple[str, str, int, str]:
    """(kind, set key with its scope, shard start, chip variant) of a unit key; units without shards
    (train, qat, gradient) give (kind, scope + label, 0, '')."""
    for whole in _WHOLE_MODEL_KINDS:
        if key.startswith(f"{whole}/") or f":{whole}/" in key:
            scope, _, label = key.partition(f"{whole}/")
            return whole, scope + label, 0, ""
    kind = kind_of(key)
    if kind == "gradient":
        return kind, key[len("gradient/"):], 0, ""
    rest, _, start = key.rpartition("/")
    variant = ""
    if kind == "chip":
        variant, _, rest = rest[len("chip/"):].partition("/")
    else:
        rest = rest[len(kind) + 1:]
    return kind, rest, 0 if start == "all" else int(start), variant   # "all": a whole-set crafting unit


def scope_of(set_key: str) -> str:
    """'defense-<label>:' of a sub-study's set key, '' for the study's own."""
    return set_key.rpartition(":")[0] + ":" if set_key.startswith("defense-") and ":" in set_key else ""


def plan_order(keys: Iterable[str]) -> list[str]:
    """Unit keys in the runner's submission order (train units, then clean, attacks by index and ε,
    shards by start, craft → host → chip; each defended sub-study after the study)."""
    def rank(key: str) -> tuple[Any, ...]:
        kind, set_key, start, variant = parse_key(key)
        if kind in _WHOLE_MODEL_KINDS:
            return (0, "", 0, (), 0, 0, "", set_key)
        scope = scope_of(set_key)
        name = set_key[len(scope):]
        match = _ATTACK_SET.match(name)
        order = (1, int(match[1]), int(match[2])) if match else (0, 0, 0) if name == "clean" else (2, 0, 0, name)
        return (1 if not scope else 2, scope, 0, order, start, _KIND_ORDER.get(kind, 3), ("+" in variant, variant),
                key)
    return sorted(keys, key=rank)


def units_from(durations: list[tuple[str, float]], barrier: bool = False) -> list[Unit]:
    """Units with their dependencies: host/chip on the craft unit of their set and shard (when there is
    one); every unit of a (sub-)study on its QAT units; a sub-study's units on its train unit (the runner
    starts a defended sub-study once its training is in, a given model's at once) and, with `barrier`, on
    every unit of the studies before it in plan order (how runners before 2026-12-06 ran them: one
    sub-study after another, each once the study before it was in)."""
    seconds = dict(durations)
    parsed = {key: parse_key(key) for key in plan_order(seconds)}
    scopes = {key: "" if kind in _WHOLE_MODEL_KINDS else scope_of(set_key)
              for key, (kind, set_key, _, _) in parsed.items()}
    studied = [k for k, (kind, *_) in parsed.items() if kind not in _WHOLE_MODEL_KINDS]   # plan order
    first_of: dict[str, int] = {}
    for i, key in enumerate(studied):
        first_of.setdefault(scopes[key], i)
    qat = [k for k, (kind, *_) in parsed.items() if kind == "qat"]
    units = []
    for key, (kind, set_key, start, _) in parsed.items():
        scope = scopes[key]
        # the runner trains every QAT width of a (sub-)study before planning that study's other units
        deps = [] if kind in _WHOLE_MODEL_KINDS else [k for k in qat if k.startswith(scope + "qat/")]
        if kind in ("host", "chip"):
            deps += [c for c in (f"craft/{set_key}/{start}", f"craft/{set_key}/all") if c in seconds]
        if scope:
            train = f"train/{scope[len('defense-'):-1]}"
            if train in seconds:
                deps.append(train)
            if barrier:
                deps += studied[:first_of[scope]]
        units.append(Unit(key, seconds[key], tuple(deps), scope))
    return units


@dataclass
class Schedule:
    workers: int
    makespan: float
    busy: float           # Σ (unit seconds + overhead)


def simulate(units: list[Unit], workers: int, overhead: float = DEFAULT_OVERHEAD_S) -> Schedule:
    """A list scheduler: at every moment a worker is free, it takes the first unit (in `units` order)
    whose dependencies have finished; one unit at a time per worker."""
    finished: dict[str, float] = {}
    pending = list(units)
    running: list[tuple[float, int, str]] = []     # (finish, worker, key)
    free = list(range(workers))
    now = 0.0
    while pending or running:
        free.sort()
        while free:
            unit = next((u for u in pending if all(d in finished for d in u.deps)), None)
            if unit is None:
                break
            pending.remove(unit)
            heapq.heappush(running, (now + unit.seconds + overhead, free.pop(0), unit.key))
        if not running:
            missing = sorted({d for u in pending for d in u.deps if d not in finished})
            raise UserError(f"units wait for units that never run: {', '.join(missing[:5])}")
        now, worker, key = heapq.heappop(running)
        finished[key] = now
        free.append(worker)
        while running and running[0][0] == now:
            _, worker, key = heapq.heappop(running)
            finished[key] = now
            free.append(worker)
    return Schedule(workers, now, sum(u.seconds + overhead for u in units))


def critical_path(units: list[Unit], overhead: float = DEFAULT_OVERHEAD_S) -> tuple[float, list[str]]:
    """The longest dependency chain (seconds, its keys): no number of workers finishes sooner."""
    longest: dict[str, tuple[float, list[str]]] = {}
    for unit in units:   # plan order: dependencies come first
        before = max((longest[d] for d in unit.deps), key=lambda item: item[0], default=(0.0, []))
        longest[unit.key] = (before[0] + unit.seconds + overhead, [*before[1], unit.key])
    return max(longest.values(), key=lambda item: item[0], default=(0.0, []))


def read_journal(run_dir: Path) -> tuple[list[tuple[str, float]], dict[str, Any]]:
    db_path = run_dir / DB_NAME if run_dir.is_dir() else run_dir
    if not db_path.is_file():
        raise UserError(f"{run_dir}: no {DB_NAME}", hint="give a run directory of host.evaluate (results/<run-id>)")
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        durations = [(k, float(s)) for k, s in db.execute("SELECT key, seconds FROM units WHERE seconds IS NOT NULL")]
        meta = dict(db.execute("SELECT key, value FROM meta"))
    run: dict[str, Any] = {}
    for name in ("metrics.json", "run.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            document = json.loads((db_path.parent / name).read_text())
            run = document.get("run", document)
    return durations, {"meta": meta, "run": run}


def render_simulation(run_dir: Path, durations: list[tuple[str, float]], info: dict[str, Any], workers: list[int],
                      overhead: float) -> str:
    units = units_from(durations)
    barrier = units_from(durations, barrier=True)
    has_sub = any(u.scope for u in units)
    total = sum(s for _, s in durations)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for key, s in durations:
        by_kind[parse_key(key)[0]].append(s)
    lines = [f"{run_dir}: {len(units)} units, {total:.1f} worker seconds; per unit overhead {overhead:g} s",
             "kinds: " + "; ".join(f"{k} {len(v)} × mean {sum(v) / len(v):.2f} s (max {max(v):.2f})"
                                   for k, v in sorted(by_kind.items()))]
    run = info["run"]
    client = None
    if run.get("duration_s") is not None and "serial" in str(run.get("executor", "")):
        client = max(0.0, float(run["duration_s"]) - total)
        lines.append(f"serial run: {run['duration_s']} s wall, so ~{client:.1f} s of it outside units (client: "
                     "firmware builds, gradient misalignment, metrics, a sub-study's quantization); not parallel")
    length, chain = critical_path(units, overhead)
    lines.append(f"critical path {length:.1f} s over {len(chain)} unit(s): {' → '.join(chain)}")
    if has_sub:
        b_length, _ = critical_path(barrier, overhead)
        lines.append("with the barrier of runners before 2026-12-06 (each defended sub-study after the studies "
                     f"before it): critical path {b_length:.1f} s")
    head = "| workers | makespan s | speed-up | efficiency | bound max(critical path, Σ/W) s |"
    rule = "|---|---|---|---|---|"
    if has_sub:
        head += " makespan s, with the old barrier | speed-up |"
        rule += "---|---|"
    if client is not None:
        head += " est. wall s (+ client) |"
        rule += "---|"
    lines += ["", head, rule]
    one = simulate(units, 1, overhead).makespan
    one_b = simulate(barrier, 1, overhead).makespan
    for n in workers:
        schedule = simulate(units, n, overhead)
        row = (f"| {n} | {schedule.makespan:.1f} | {one / schedule.makespan:.2f}× | "
               f"{one / schedule.makespan / n:.0%} | {max(length, schedule.busy / n):.1f} |")
        slowest = schedule.makespan
        if has_sub:
            with_barrier = simulate(barrier, n, overhead)
            slowest = with_barrier.makespan
            row += f" {with_barrier.makespan:.1f} | {one_b / with_barrier.makespan:.2f}× |"
        if client is not None:
            row += f" {client + slowest:.1f} |"
        lines.append(row)
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected worker counts like 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.bench_cluster", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speedup", help="run one study on 1 and 2 (…) local Dask workers and compare")
    s.add_argument("--config", type=Path, help="a study config (default: the built-in small study)")
    s.add_argument("--workers", type=_counts, default=[1, 2], help="worker counts, comma-separated (default 1,2)")
    s.add_argument("--quick", action="store_true", help="the config's [quick] variant (built-in: 100 inputs, PGD-5)")
    s.add_argument("--out", type=Path, default=None,
                   help="where the runs' journals go (default build/bench_cluster/<time>)")
    s.add_argument("--pin-workers", action="store_true",
                   help="bind worker i (its threads and the emulator it boots) to core i; default: as host.evaluate")
    m = sub.add_parser("simulate", help="simulate a finished run's units on more workers")
    m.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (results/<run-id>)")
    m.add_argument("--workers", type=_counts, default=[1, 2, 4, 8, 16], help="worker counts (default 1,2,4,8,16)")
    m.add_argument("--overhead", type=float, default=DEFAULT_OVERHEAD_S,
                   help=f"seconds per unit beyond its own (Dask, transfers; default {DEFAULT_OVERHEAD_S})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "speedup":
        out = args.out or BUILD_DIR / "bench_cluster" / time.strftime("%Y%m%d-%H%M%S")
        return speedup(args.config, args.workers, args.quick, out, args.pin_workers)
    durations, info = read_journal(args.run_dir)
    if not durations:
        raise UserError(f"{args.run_dir}: the journal holds no timed unit")
    print(render_simulation(args.run_dir, durations, info, args.workers, args.overhead))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""A study (`python -m host.evaluate --config study.toml`): one float model, its int16x8 and int8
versions, many attacks × ε, every input on the float model, on TFLite Micro for each precision
and, for the precisions on a [chip], on the chip.

The run is planned as units (host.study.units) executed where host.study.cluster says (a Dask
cluster, or this process); this module plans them, journals each result as it arrives
(host.study.journal), and computes the metrics from the journal once every unit is in.

Metrics (docs/metrics.md) per attack × ε × precision: accuracy, attack success, transfer
float→int16→int8, perturbation norms, quantization shift, queries of black-box attacks,
chip-vs-reference agreement and instructions; per attack: distance to the decision boundary;
once: gradient misalignment and zero density of finite-difference gradients.

Imports: host.core, host.compiler, host.engine, host.emulators, host.backends, host.quantization,
host.attacks, host.defenses, host.study.{config, metrics, gallery, units, cluster, journal}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.attacks import FloatModel, attack_class, get_attack
from host.attacks.oracle import FloatOracle, QuantizedOracle
from host.backends.backend import ModelIO, ReferenceBackend
from host.compiler.compile import compile_bytes
from host.core.boards import load_board
from host.core.data import check_finite, check_number_arrays, load_digits_split
from host.core.errors import UserError
from host.core.paths import BUILD_DIR
from host.core.quiet import import_tensorflow_quietly
from host.core.timing import timing_for
from host.defenses import get_defense
from host.defenses.checkpoints import kept_epochs
from host.emulators.cycles import CyclesUnavailable, build_plugin
from host.emulators.launch import board_link
from host.engine.build import build_firmware
from host.link.device import LINK_ENV, connect
from host.quantization.quantize import check_labelled_data, experiment_models, load_float_keras
from host.study import metrics
from host.study.cluster import SerialExecutor
from host.study.config import FLOAT, AttackSpec, DefenseSpec, Experiment, SliceSpec, attack_params
from host.study.gallery import gallery_arrays, gallery_entry
from host.study.journal import Journal
from host.study.units import (
    GRADIENT_SAMPLES,
    Blob,
    ChipRun,
    ChipSpec,
    ChipUnit,
    Context,
    Crafted,
    CraftUnit,
    GradientUnit,
    HostRun,
    HostUnit,
    QatUnit,
    Timed,
    TrainUnit,
    argmax_bytes,
    configure_threads,
    run_unit,
)

CALIBRATION_IMAGES = 500      # a defended model's quantization set when the study has no representative set
GALLERY_SAMPLES = 8           # first inputs kept (clean and adversarial) for the report's gallery
CLEAN = "clean"
EMULATOR_PROGRAMS = {"qemu": "qemu-system-arm", "renode": "renode"}


@dataclass
class Target:
    """One quantized precision: its model and its reference."""

    precision: str
    model: Any                       # host.backends.backend.ModelIO
    reference: Any                   # host.backends.backend.ReferenceBackend
    origin: str = ""


@dataclass
class Outcome:
    """Predictions of every evaluated model on one input set."""

    preds: dict[str, np.ndarray] = field(default_factory=dict)          # "float32", "int8", "chip:int8", ...
    raw: dict[str, list[bytes]] = field(default_factory=dict)           # quantized outputs, for agreement
    instructions: dict[str, list[int]] = field(default_factory=dict)
    ticks: dict[str, list[int]] = field(default_factory=dict)
    cycles: dict[str, list[tuple[int, int]]] = field(default_factory=dict)   # estimated (low, high) per inference


@dataclass(frozen=True)
class InputSet:
    """Clean inputs, or one attack at one ε: the first n inputs, crafted shard by shard."""

    key: str
    n: int
    spec: AttackSpec | None = None
    eps: float | None = None
    attack_index: int = -1


# ---------------------------------------------------------------- data and models


def load_slice(spec: SliceSpec, input_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """x (float32 in input_range) and y of an .npz slice; uint8 pixels are mapped 0..255 -> range."""
    if str(spec.path).startswith("builtin:"):
        return _builtin_slice(spec)
    try:
        with np.load(spec.path, allow_pickle=False) as data:
            if "x" not in data:
                raise UserError(f"{spec.path}: no array 'x' (and 'y')")
            stop = None if spec.num is None else spec.start + spec.num
            x, y = data["x"][spec.start:stop], (data["y"][spec.start:stop] if "y" in data else None)
    except (OSError, ValueError) as err:
        raise UserError(f"{spec.path}: not a readable .npz ({err})") from None
    check_number_arrays(x, y, str(spec.path))
    if spec.num is not None and len(x) < spec.num:
        raise UserError(f"{spec.path}: asked for {spec.num} samples from {spec.start}, it has {len(x) + spec.start}")
    lo, hi = input_range
    if x.dtype == np.uint8:
        x = x.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    x = x.astype(np.float32)
    if len(x) == 0:
        raise UserError(f"{spec.path}: no samples from {spec.start}", hint="a slice of at least one input")
    check_finite(x, str(spec.path))
    if x.size and (x.min() < lo - 1e-6 or x.max() > hi + 1e-6):
        raise UserError(f"{spec.path}: values {x.min():g}..{x.max():g} outside input_range [{lo:g}, {hi:g}]",
                        hint="set [dataset] input_range to the range the model was trained on")
    labels = np.zeros(len(x), np.int64) if y is None else y.astype(np.int64).reshape(-1)
    return x, labels


def _builtin_slice(spec: SliceSpec) -> tuple[np.ndarray, np.ndarray]:
    x_train, y_train, x_test, y_test = load_digits_split()
    x, y = (x_test, y_test) if str(spec.path).endswith("test") else (x_train, y_train)
    stop = None if spec.num is None else spec.start + spec.num
    return x[spec.start:stop], y[spec.start:stop]


def prepare_targets(exp: Experiment, models: Any) -> dict[str, Target]:
    targets = {}
    for precision in exp.precisions:
        if precision == FLOAT:
            continue
        quantized = models[precision]
        io = ModelIO.from_bytes(quantized.data, f"{precision} model")
        targets[precision] = Target(precision, io, ReferenceBackend(io), origin=quantized.origin)
    return targets


def check_dataset_fits(exp: Experiment, x: np.ndarray, y: np.ndarray, float_model: FloatModel,
                       what: str | None = None) -> None:
    """A dataset's inputs and labels (the evaluated one by default) against the float model, before any long work."""
    check_labelled_data(x, y, (None, *float_model.input_shape[1:]), float_model.num_classes,
                        what or f"[dataset] {exp.dataset.path}", model=f"the float model {Path(exp.float_model).name}")


def chip_stages(exp: Experiment) -> dict[str, Any]:
    """The firmware stage of every pre-processing defense with on_chip = true, by its label."""
    return {d.label: get_defense(d.name, **d.params).chip_stage() for d in exp.defenses if d.on_chip}


def preprocessors(exp: Experiment) -> dict[str, Any]:
    return {d.label: get_defense(d.name, **d.params) for d in exp.defenses if d.kind == "preprocess"}


@contextlib.contextmanager
def run_context(exp: Experiment, models: Any, targets: dict[str, Target], calibration: np.ndarray | None,
                window: int = 4, max_restarts: int = 3, link: str | None = None) -> Iterator[Context]:
    """What every unit shares: the models by content, and one firmware per chip precision (and
    per on-chip defense stage), built here once. A board behind a link (--port, a labgrid place)
    stays connected-to by URL for the whole run; `link`: that URL, when the run holds it already
    (a defended model's study beside the undefended one)."""
    float_path = Path(exp.float_model)
    float_model: Blob | Path = float_path if float_path.is_dir() else Blob.read(float_path)
    quantized = {p: Blob.of(t.model.data, ".tflite") for p, t in targets.items()}
    with contextlib.ExitStack() as stack:
        url = link
        if url is None and (exp.chip_place is not None or exp.chip_port is not None):
            url = stack.enter_context(board_link(exp.chip_place, exp.chip_port))
        chips, stage_chips = {}, {}
        for precision in exp.chip_precisions:
            if precision not in targets:
                raise UserError(f"[chip] precisions lists {precision}, which is not in [model] precisions")
            chips[precision] = _chip_spec(exp, targets[precision], quantized[precision], url, None, window,
                                          max_restarts)
            for label, stage in chip_stages(exp).items():
                stage_chips[(label, precision)] = _chip_spec(exp, targets[precision], quantized[precision], url,
                                                             stage, window, max_restarts)
        yield Context(seed=exp.seed, input_range=exp.input_range, float_model=float_model, quantized=quantized,
                      bitwidths=tuple(exp.bitwidths), calibration=calibration,
                      defenses=tuple(d for d in exp.defenses if d.kind == "preprocess"),
                      chips=chips, stage_chips=stage_chips)


def _chip_spec(exp: Experiment, target: Target, model: Blob, url: str | None, stage: Any, window: int,
               max_restarts: int) -> ChipSpec:
    assert exp.chip_board is not None
    board = load_board(exp.chip_board)
    if exp.chip_backend != "device":
        return ChipSpec(board.name, model, None, None, None, window, max_restarts, backend=exp.chip_backend)
    if exp.chip_firmware is not None and url is None:
        return ChipSpec(board.name, model, Blob.read(exp.chip_firmware), None, stage, window, max_restarts,
                        cycles=exp.chip_cycles)
    firmware = None
    if url is None and board.emulated:
        compiled = compile_bytes(target.model.data, name=f"{exp.name}_{target.precision}")
        image = (build_firmware(compiled, board) if stage is None
                 else build_firmware(compiled, board, preprocess=stage, input_range=exp.input_range))
        firmware = Blob.read(image.elf)
    return ChipSpec(board.name, model, firmware, url, stage, window, max_restarts, cycles=exp.chip_cycles)


# ---------------------------------------------------------------- the plan


def input_sets(exp: Experiment, n: int, scope: str = "") -> list[InputSet]:
    sets = [InputSet(f"{scope}{CLEAN}", n)]
    for index, spec in enumerate(exp.attacks):
        size = min(n, spec.params.get("num", n))
        sets += [InputSet(f"{scope}attack-{index:02d}-{spec.name}-eps{k}", size, spec, eps, index)
                 for k, eps in enumerate(spec.eps)]
    return sets


def shards(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


@dataclass
class Plan:
    """Every unit of one run, by set; `units` in submission order."""

    sets: list[InputSet]
    units: list[Any] = field(default_factory=list)
    inputs_of: dict[str, str | None] = field(default_factory=dict)     # unit key -> its craft unit's key
    set_of: dict[str, str] = field(default_factory=dict)               # unit key -> its set's key


def craft_units(item: InputSet, shard: int) -> list[CraftUnit]:
    """An attack set's crafting units: one per shard, or one for the whole set for an attack that crafts
    best in one batch (Attack.craft_whole_set)."""
    assert item.spec is not None
    if attack_class(item.spec.name).craft_whole_set:
        return [CraftUnit(item.key, item.spec, item.eps, 0, item.n, whole_set=True)]
    return [CraftUnit(item.key, item.spec, item.eps, a, b) for a, b in shards(item.n, shard)]


def plan_units(exp: Experiment, sets: list[InputSet], context: Context) -> Plan:
    plan = Plan(sets)
    chip_limit = exp.chip_num
    for item in sets:
        crafts = craft_units(item, exp.shard) if item.spec is not None else []
        for craft_unit in crafts:
            _add(plan, craft_unit, item.key, None)
        for start, stop in shards(item.n, exp.shard):
            craft = next((c for c in crafts if c.start <= start < c.stop), None)
            _add(plan, HostUnit(item.key, start, stop), item.key, craft)
            chip_stop = stop if chip_limit is None else min(stop, chip_limit)
            if chip_stop <= start:
                continue
            for precision in context.chips:
                _add(plan, ChipUnit(item.key, precision, start, chip_stop), item.key, craft)
            for label, precision in context.stage_chips:
                _add(plan, ChipUnit(item.key, precision, start, chip_stop, stage=label), item.key, craft)
    return plan


def _add(plan: Plan, unit: Any, set_key: str, craft: CraftUnit | None) -> None:
    plan.units.append(unit)
    plan.set_of[unit.key] = set_key
    plan.inputs_of[unit.key] = None if craft is None else craft.key


def _placement(context: Context, unit: Any) -> tuple[dict[str, int] | None, bool]:
    """(Dask resources, run in this process) of a unit: a chip unit (or a chip-queried attack) on a real
    board asks for the board; one on this process's own link runs here."""
    spec = None
    if isinstance(unit, ChipUnit):
        spec = context.chips[unit.precision] if unit.stage is None else context.stage_chips[(unit.stage,
                                                                                             unit.precision)]
    elif isinstance(unit, CraftUnit) and unit.spec.params.get("via") == "chip":
        spec = context.chips.get(unit.spec.params.get("target", "int8"))
    if spec is None:
        return None, False
    return ({spec.resource: 1} if spec.resource else None), spec.url is not None


# ---------------------------------------------------------------- execution


@dataclass
class Execution:
    """The results of a run's units (journaled and new), and the attacks that failed."""

    results: dict[str, Any]
    failed: dict[int, BaseException] = field(default_factory=dict)   # attack index -> its first error
    seconds: dict[str, float] = field(default_factory=dict)          # unit key -> seconds (units run now)


@dataclass
class StudyRun:
    """One study while its units run: the undefended one, or a defended model's (`scope` prefixes its keys)."""

    exp: Experiment
    scope: str
    prepared: tuple[Any, ...]          # what prepare(exp) returned: x, y, models, float model, targets, calibration
    context: Context
    plan: Plan
    gradient: Any                      # (key, handle), or its journaled result
    trained: dict[str, Any]            # train-based defense label -> (key, handle), its journaled model, or an error
    extras_run: int                    # of gradient and training units, those computed in this session
    execution: Execution = field(default_factory=lambda: Execution({}))
    started: float = field(default_factory=time.time)
    link: str | None = None            # the board's link URL its sub-studies share (--port, a labgrid place)
    defense: dict[str, Any] | None = None   # a defended model's study: what its document says of the defense
    error: Exception | None = None     # a defended model's study that failed (left out of the results)


@dataclass
class Running:
    """Every study of a run whose units are in flight, on one executor: the undefended study, each
    defended model's beside it, and the trainings that a trained defense's study waits for."""

    executor: Any
    journal: Journal | None
    bar: Any
    stack: contextlib.ExitStack         # keeps each study's context (its firmware, its link) open to the end
    window: int
    max_restarts: int
    say: Callable[[str], None]
    units: dict[str, tuple[StudyRun, Any, Any]] = field(default_factory=dict)   # task key -> (study, unit, handle)
    trainings: dict[str, tuple[StudyRun, DefenseSpec, str, Any]] = field(default_factory=dict)
    subs: dict[str, StudyRun] = field(default_factory=dict)      # defense label -> its defended model's study
    failed: dict[str, Exception] = field(default_factory=dict)   # defense label -> why it is left out


def submit_units(run: StudyRun, running: Running) -> None:
    """Submit every unit of `run` the journal lacks (a unit whose craft unit is pending gets its handle)."""
    journal, executor, plan = running.journal, running.executor, run.plan
    results = run.execution.results
    if journal is not None:
        results.update({key: journal.get(key) for key in journal.done_keys() if key in plan.set_of})
    running.bar.total += len(plan.units)
    running.bar.update(len(results))
    x, y = run.prepared[0], run.prepared[1]
    shared_context, shared_x, shared_y = executor.share(run.context), executor.share(x), executor.share(y)
    by_key: dict[str, Any] = {}
    for unit in plan.units:
        if unit.key in results:
            continue
        source = plan.inputs_of[unit.key]
        inputs: Any = shared_x if source is None else results.get(source, by_key.get(source))
        resources, local = _placement(run.context, unit)
        labels = shared_y if isinstance(unit, CraftUnit) else None
        handle = executor.submit(run_unit, shared_context, unit, inputs, labels, key=_task_key(journal, unit.key),
                                 resources=resources, local=local, priority=unit_priority(unit))
        by_key[unit.key] = handle
        running.units[handle.key] = (run, unit, handle)


def run_all(running: Running) -> None:
    """Every submitted unit, journaled as it arrives; a finished training opens its defended study, whose
    units join the others."""
    try:
        while running.units or running.trainings:
            handles = [h for *_, h in running.units.values()] + [h for *_, h in running.trainings.values()]
            for handle, outcome in running.executor.completed(handles):
                if handle.key in running.trainings:
                    _training_done(running.trainings.pop(handle.key), outcome, running)
                    break   # the units awaited have changed
                entry = running.units.pop(handle.key, None)
                if entry is not None:   # else a unit of a defended model's study that was left out
                    _arrived(entry[0], entry[1], outcome, running)
    except BaseException:
        running.executor.cancel()
        raise


def _arrived(run: StudyRun, unit: Any, outcome: Any, running: Running) -> None:
    running.bar.update(1)
    if isinstance(outcome, BaseException):
        try:
            _failed(run.execution, _set_of(run, unit), unit, outcome, running.bar)
        except Exception as err:
            if run.defense is None:
                raise
            _leave_out(run, err, running)   # a defended model's study fails alone, as its opening may
        return
    assert isinstance(outcome, Timed)
    run.execution.results[unit.key] = outcome.result
    run.execution.seconds[unit.key] = outcome.seconds
    if running.journal is not None:
        running.journal.put(unit.key, outcome.result, outcome.seconds, outcome.worker)


def _set_of(run: StudyRun, unit: Any) -> InputSet:
    set_key = run.plan.set_of[unit.key]
    return next(s for s in run.plan.sets if s.key == set_key)


def _leave_out(run: StudyRun, err: Exception, running: Running) -> None:
    """A defended model's study that failed: its other units are no longer awaited."""
    run.error = err
    for key in [k for k, (r, *_) in running.units.items() if r is run]:
        del running.units[key]


# Longest first, so that the run does not end on one worker with one long unit: a query attack's
# shard takes minutes to half an hour (thousands of oracle calls per input), as does a whole-set
# crafting unit (AutoAttack), a white-box shard seconds to minutes, a host or chip shard seconds.
# Trained defenses start at once: a sub-study waits for them.  Priorities order the work only; every
# unit's result stays the same.
PRIORITY_TRAIN, PRIORITY_QUERY_ATTACK, PRIORITY_CRAFT, PRIORITY_EVALUATE = 3, 2, 1, 0


def unit_priority(unit: Any) -> int:
    if isinstance(unit, CraftUnit):
        long = attack_class(unit.spec.name).needs == "oracle" or unit.whole_set
        return PRIORITY_QUERY_ATTACK if long else PRIORITY_CRAFT
    return PRIORITY_EVALUATE


def _task_key(journal: Journal | None, key: str) -> str:
    """Dask task keys are cluster-wide: the run's own prefix keeps two runs on one cluster apart."""
    prefix = "serial" if journal is None else hashlib.sha256(str(journal.path.resolve()).encode()).hexdigest()[:12]
    return f"slingshot-{prefix}-{key}"


def _failed(execution: Execution, item: InputSet, unit: Any, err: BaseException, bar: Any) -> None:
    """A failed craft unit leaves its attack out of the study (reported, exit status 1; a resumed run
    tries it again); its dependents fail with it. Any other failure stops the run."""
    if item.spec is not None and (isinstance(unit, CraftUnit) or item.attack_index in execution.failed):
        if item.attack_index not in execution.failed:
            execution.failed[item.attack_index] = err
            bar.write(f"warning: attack '{item.spec.shown}' failed and is left out: {_message(err)}", file=sys.stderr)
        return
    raise err


def _message(err: BaseException) -> str:
    return err.message if isinstance(err, UserError) else f"{type(err).__name__}: {err}".strip()


# ---------------------------------------------------------------- assembling the results


def set_inputs(item: InputSet, plan: Plan, results: dict[str, Any], x: np.ndarray, shard: int) -> np.ndarray:
    if item.spec is None:
        return x[:item.n]
    return np.concatenate([results[c.key].x for c in craft_units(item, shard)])


def set_outcome(item: InputSet, exp: Experiment, context: Context, targets: dict[str, Target],
                results: dict[str, Any]) -> tuple[Outcome, dict[str, Outcome]]:
    """The set's predictions on every model (and per pre-processing defense), from its units."""
    host = [results[HostUnit(item.key, a, b).key] for a, b in shards(item.n, exp.shard)]
    outcome = _host_outcome(host, targets)
    defended = {label: _host_outcome([h.defended[label] for h in host], targets)
                for label in (d.label for d in context.defenses)}
    chip_shards = [(a, b if exp.chip_num is None else min(b, exp.chip_num)) for a, b in shards(item.n, exp.shard)]
    chip_shards = [(a, b) for a, b in chip_shards if b > a]
    for precision in context.chips:
        runs = [results[ChipUnit(item.key, precision, a, b).key] for a, b in chip_shards]
        _add_chip(outcome, f"chip:{precision}", runs, targets[precision].model.output.dtype)
    for label, precision in context.stage_chips:
        runs = [results[ChipUnit(item.key, precision, a, b, stage=label).key] for a, b in chip_shards]
        dtype = targets[precision].model.output.dtype
        _add_chip(defended[label], f"chip:{precision}", runs, dtype)
        reference = [bytes(row) for r in runs for row in r.stage_reference]
        defended[label].raw[f"stage-ref:{precision}"] = reference
        defended[label].preds[f"stage-ref:{precision}"] = argmax_bytes(reference, dtype)
        defended[label].instructions[f"chip-pre:{precision}"] = [
            int(v) for r in runs for v in r.preprocess_instructions if v >= 0]
    return outcome, defended


def _host_outcome(runs: list[HostRun], targets: dict[str, Target]) -> Outcome:
    outcome = Outcome()
    for key in runs[0].preds if runs else ():
        outcome.preds[key] = np.concatenate([r.preds[key] for r in runs])
    for precision in targets:
        outcome.raw[precision] = [bytes(row) for r in runs for row in r.raw[precision]]
    return outcome


def _add_chip(outcome: Outcome, key: str, runs: list[ChipRun], dtype: str) -> None:
    outcome.raw[key] = [bytes(row) for r in runs for row in r.output]
    outcome.preds[key] = argmax_bytes(outcome.raw[key], dtype)
    outcome.instructions[key] = [int(v) for r in runs for v in r.instructions if v >= 0]
    outcome.ticks[key] = [int(v) for r in runs for v in r.ticks if v >= 0]
    if any(r.cycles is not None for r in runs):
        outcome.cycles[key] = [(int(lo), int(hi)) for r in runs if r.cycles is not None for lo, hi in r.cycles
                               if lo >= 0]


def _subset(outcome: Outcome, n: int) -> Outcome:
    return Outcome({k: v[:n] for k, v in outcome.preds.items()}, {k: v[:n] for k, v in outcome.raw.items()},
                   outcome.instructions, cycles=outcome.cycles)


# ---------------------------------------------------------------- metrics


def evaluation_metrics(y: np.ndarray, x: np.ndarray, x_adv: np.ndarray, clean: Outcome, adv: Outcome,
                       precisions: list[str], target_class: int | None = None) -> dict[str, Any]:
    per_model = {}
    for key, pred in adv.preds.items():
        n = len(pred)
        entry = {"n": n, "accuracy": float(np.mean(pred == y[:n])) if n else None,
                 "attack_success": metrics.attack_success_rate(y[:n], clean.preds[key][:n], pred).as_dict()}
        if target_class is not None:
            entry["targeted_success"] = metrics.targeted_success_rate(y[:n], pred, target_class).as_dict()
        if key.startswith("chip:"):
            reference = adv.raw[key.split(":", 1)[1]][:n]
            same = [a == b for a, b in zip(adv.raw[key], reference, strict=True)]
            first = next((i for i, ok in enumerate(same) if not ok), None)
            entry["reference_agreement"] = {"identical": int(sum(same)), "of": n, "first_mismatch": first}
            instr = adv.instructions.get(key, [])
            entry["instructions_median"] = float(np.median(instr)) if instr else None
            if key in adv.cycles:
                entry["cycles_median"] = cycles_median(adv.cycles[key])
        per_model[key] = entry
    chain = [p for p in precisions if p in adv.preds]
    return {
        "models": per_model,
        "transfer": {k: v.as_dict() for k, v in metrics.transfer_chain(
            y, {p: clean.preds[p] for p in chain}, {p: adv.preds[p] for p in chain}, chain=tuple(chain)).items()},
        "perturbation": metrics.norm_summary(x, x_adv),
        "quantization_shift": {p: s.as_dict() for p, s in metrics.quantization_shifts(
            y, adv.preds[FLOAT], {p: adv.preds[p] for p in chain if p != FLOAT}).items()},
    }


def cycles_median(cycles: list[tuple[int, int]]) -> dict[str, Any] | None:
    """Median estimated cycles per inference at the CPU model's lowest and highest branch refill, and of how
    many inferences (those the cycle plugin counted: docs/performance.md)."""
    if not cycles:
        return None
    return {"low": float(np.median([c[0] for c in cycles])), "high": float(np.median([c[1] for c in cycles])),
            "n": len(cycles)}


def defended_metrics(y: np.ndarray, clean: dict[str, Outcome], adv: dict[str, Outcome]) -> dict[str, Any]:
    """Per pre-processing defense: accuracy and attack success of every host model on defended inputs;
    with the stage on the chip also the chip's ("chip:<precision>"), its agreement with the reference
    on the host's integer pre-processing ("stage-ref:<precision>") and its instructions."""
    return {name: {"models": {key: _defended_entry(y, clean[name], outcome, key) for key in outcome.preds}}
            for name, outcome in adv.items()}


def _defended_entry(y: np.ndarray, clean: Outcome, adv: Outcome, key: str) -> dict[str, Any]:
    pred = adv.preds[key]
    n = len(pred)
    entry: dict[str, Any] = {
        "accuracy": float(np.mean(pred == y[:n])) if n else None,
        "attack_success": metrics.attack_success_rate(y[:n], clean.preds[key][:n], pred).as_dict()}
    if not key.startswith("chip:"):
        return entry
    precision = key.split(":", 1)[1]
    same = [a == b for a, b in zip(adv.raw[key], adv.raw[f"stage-ref:{precision}"], strict=True)]
    pre, inference = adv.instructions.get(f"chip-pre:{precision}", []), adv.instructions.get(key, [])
    entry.update(n=n, reference_agreement={"identical": int(sum(same)), "of": n,
                                           "first_mismatch": next((i for i, ok in enumerate(same) if not ok), None)},
                 preprocess_instructions_median=_median(pre), instructions_median=_median(inference),
                 total_instructions_median=_median([a + b for a, b in zip(pre, inference, strict=True)]))
    return entry


def _median(values: list[int]) -> float | None:
    return float(np.median(values)) if values else None


def boundary_distances(y: np.ndarray, x: np.ndarray, sweep: list[tuple[np.ndarray, Outcome]], norm: str,
                       keys: list[str]) -> dict[str, Any]:
    """Mean minimal successful perturbation over the ε sweep, per model."""
    out = {}
    x_sweep = np.stack([x_adv for x_adv, _ in sweep])
    for key in keys:
        if not all(key in o.preds and len(o.preds[key]) == len(y) for _, o in sweep):
            continue
        preds = np.stack([o.preds[key] for _, o in sweep])
        r = metrics.minimal_successful_perturbation(x, y, x_sweep, preds, norm=_metric_norm(norm))
        out[key] = metrics.mean_boundary_distance(r)
    return out


def _metric_norm(norm: str) -> str:
    return {"inf": "linf", "2": "l2", "1": "l1", "0": "l0"}.get(norm, "linf")


# ---------------------------------------------------------------- the run


def make_attack(spec: AttackSpec, eps: float | None, seed: int) -> Any:
    return get_attack(spec.name, seed=seed, **attack_params(spec), **({} if eps is None else {"eps": eps}))


def preflight(exp: Experiment, x: np.ndarray, float_model: Any, targets: dict[str, Target]) -> None:
    """Every attack's model- and data-dependent checks (a patch's target class, GeoDA's square images,
    a chip oracle without a chip, ...) before the study's long work starts."""
    for spec in exp.attacks:
        attack = make_attack(spec, spec.eps[0], exp.seed)
        if attack.needs != "oracle":
            attack.check(float_model, x[:1])
            continue
        if spec.params.get("target") == FLOAT:
            attack.check(FloatOracle(float_model), x[:1])
            continue
        target = _oracle_target(spec, targets)
        if spec.params.get("via") == "chip" and target.precision not in exp.chip_precisions:
            raise UserError(f"attack '{spec.name}' queries the chip, but {target.precision} is not on the [chip]",
                            hint=f'add "{target.precision}" to [chip] precisions, or drop via = "chip"')
        attack.check(QuantizedOracle.from_backend(target.reference, target.model, exp.input_range), x[:1])


def _oracle_target(spec: AttackSpec, targets: dict[str, Target]) -> Target:
    precision = spec.params.get("target", "int8")
    if precision not in targets:
        raise UserError(f"attack '{spec.name}' queries the {precision} model, which this study does not have",
                        hint=f"add {precision!r} to [model] precisions, or set the attack's target to one of "
                             f"{sorted(targets)}")
    return targets[precision]


def attack_info(spec: AttackSpec, eps: float | None, seed: int, crafted: list[Crafted]) -> dict[str, Any]:
    """What a set's evaluation says about its attack (the per-unit seeds derive from `seed`)."""
    attack = make_attack(spec, eps, seed)
    info: dict[str, Any] = {"threat_model": attack.threat_model, "norm": attack.norm, "params": dict(attack.params)}
    if attack.target_class is not None:
        info["target_class"] = attack.target_class
    if attack.needs == "oracle":
        target = spec.params.get("target", "int8")
        via = "keras" if target == FLOAT else spec.params.get("via", "native")
        info.update(oracle=f"{via}:{target}",
                    queries=sum(c.queries or 0 for c in crafted))
    return info


def run_experiment(exp: Experiment, progress: bool = True, journal: Journal | None = None,
                   executor: Any = None, scope: str = "", window: int = 4, max_restarts: int = 3,
                   log: Callable[[str], None] | None = None, prepared: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """The whole study: plan its units, run the ones `journal` lacks on `executor` (default: this
    process), then its metrics. A defended model's study (its keys prefixed `defense-<label>:`) runs
    beside it on the same executor: a given model's from the start, a trained one's as soon as its
    training is done. `prepared`: what `prepare(exp)` returned, when the caller checked the study already."""
    from tqdm import tqdm

    say = log or (lambda message: print(message, file=sys.stderr))
    if not scope and (note := cycle_note(exp)):
        say(f"warning: {note}")
        exp = dataclasses.replace(exp, chip_cycles=False)
    executor = executor or SerialExecutor()   # the caller checked its placement (check_placement)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=0, unit="unit", file=sys.stderr, disable=not progress,
                                       dynamic_ncols=True, desc=f"{exp.name} units"))
        running = Running(executor, journal, bar, stack, window, max_restarts, say)
        main = open_study(exp, scope, running, prepared)
        for spec in (d for d in exp.defenses if d.kind in ("train", "model")):
            _start_defended_study(main, spec, running)
        run_all(running)
        document = finish_study(main, running)
        document["defended_models"], document["summary"]["failed_defenses"] = _defended_documents(main, running)
    return document


def open_study(exp: Experiment, scope: str, running: Running, prepared: tuple[Any, ...] | None = None,
               link: str | None = None) -> StudyRun:
    """A study checked, its context built and its units submitted (with its gradient and training units)."""
    configure_threads()
    started = time.time()
    prepared = prepared or prepare(exp)
    x, y, models, _, targets, calibration = prepared
    context = running.stack.enter_context(run_context(exp, models, targets, calibration, running.window,
                                                      running.max_restarts, link))
    context = with_qat_models(exp, context, running.executor, running.journal, scope, running.say)
    plan = plan_units(exp, input_sets(exp, len(x), scope), context)
    trained = _submit_training(exp, running.executor, running.journal, context, scope, running.say)
    gradient = _submit_gradient(running.executor, running.journal, context, x, y, scope)
    extras_run = sum(isinstance(e, tuple) for e in (gradient, *trained.values()))
    link = next((chip.url for chip in context.chips.values()), link)
    run = StudyRun(exp, scope, prepared, context, plan, gradient, trained, extras_run, started=started, link=link)
    submit_units(run, running)
    return run


def finish_study(run: StudyRun, running: Running) -> dict[str, Any]:
    """The metrics of a study whose units are all in."""
    x, y, _, _, targets, _ = run.prepared
    misalignment = _collect(run.gradient, running.executor, running.journal)
    document = _document(run.exp, run.plan, run.context, run.execution, x, y, targets, misalignment)
    document["run"] = {"duration_s": round(time.time() - run.started, 1), "units": len(run.plan.units) + 1 +
                       len(run.trained), "units_run": len(run.execution.seconds) + run.extras_run,
                       "executor": getattr(running.executor, "description", ""),
                       "workers": getattr(running.executor, "workers", 1),
                       "unit_seconds": _seconds_by_kind(run.execution.seconds)}
    return document


def cycle_note(exp: Experiment) -> str | None:
    """Why `[chip] cycles` / --cycles cannot be honoured (the run then reports instructions only), or None."""
    if not exp.chip_cycles:
        return None
    if exp.chip_board is None or exp.chip_backend != "device":
        return "cycles are estimated on an emulated board's chip: no chip here, no cycles"
    board = load_board(exp.chip_board)
    if timing_for(board) is None:
        return (f"board {board.name}: no cycle model for {board.cpu} (boards/cpus/{board.cpu}.toml is absent; "
                "docs/performance.md): instructions only")
    if board.emulator_kind != "qemu" or exp.chip_place or exp.chip_port or os.environ.get(LINK_ENV):
        return f"board {board.name}: cycles are counted in QEMU booted here only: instructions only"
    try:
        build_plugin()
    except CyclesUnavailable as error:
        return f"{error}: instructions only"
    return None


def prepare(exp: Experiment) -> tuple[np.ndarray, np.ndarray, Any, FloatModel, dict[str, Target], np.ndarray | None]:
    """Data and models, checked (the dataset against the model, every attack against both) before any
    run directory or long work exists."""
    import_tensorflow_quietly()
    x, y = load_slice(exp.dataset, exp.input_range)
    rep = load_slice(exp.representative, exp.input_range)[0] if exp.representative else None
    keras_model = load_float_keras(exp.float_model)
    float_model = FloatModel(keras_model, exp.input_range)
    check_dataset_fits(exp, x, y, float_model)   # before the conversions, which can take minutes
    models = experiment_models(exp.float_model, rep, exp.given, [p for p in exp.precisions if p != FLOAT],
                               float_model=keras_model)
    check_trained_models(exp, float_model, rep is not None)
    if exp.qat is not None:
        x_qat, y_qat = load_slice(exp.qat.data, exp.input_range)
        check_dataset_fits(exp, x_qat, y_qat, float_model, what=f"[bitwidth.qat] data {exp.qat.data.path}")
    for defense in preprocessors(exp).values():
        defense.check_inputs(tuple(float_model.input_shape[1:]), exp.input_range)
    targets = prepare_targets(exp, models)
    preflight(exp, x, float_model, targets)
    return x, y, models, float_model, targets, (rep if rep is not None else x)


def check_trained_models(exp: Experiment, float_model: FloatModel, representative: bool) -> None:
    """Every trained-model defense against the undefended model, before any long work: the same input shape
    and classes, its TFLite files likewise, and a representative set for a precision it does not give."""
    for spec in (d for d in exp.defenses if d.kind == "model"):
        what = f"defense '{spec.label}'"
        given = _given_files(exp, spec)
        missing = [p for p in exp.precisions if p != FLOAT and p not in given]
        if missing and not representative:
            files = ", ".join(f'{p} = "MODEL.tflite"' for p in missing)
            raise UserError(f"{what}: no {'/'.join(missing)} file, and no [dataset.representative] to quantize it",
                            hint=f"give {files} in its [[defense]], or a [dataset.representative] slice")
        defended = FloatModel(load_float_keras(spec.params["float"]), exp.input_range)
        shapes = {"float": (tuple(defended.input_shape[1:]), defended.num_classes)}
        for precision, path in given.items():
            io = ModelIO.from_bytes(path.read_bytes(), f"{what} {precision}")
            shapes[precision] = (tuple(io.input.shape[1:]), int(np.prod(io.output.shape[1:])))
        want = (tuple(float_model.input_shape[1:]), float_model.num_classes)
        for which, (shape, classes) in shapes.items():
            if (shape, classes) != want:
                raise UserError(f"{what}: its {which} model takes {shape} and has {classes} classes; the undefended "
                                f"model takes {want[0]} and has {want[1]}",
                                hint="a defended model must have the undefended one's inputs and classes")


def check_placement(executor: Any, exp: Experiment, targets: dict[str, Target]) -> None:
    """The [chip] can run where the units go: an emulated board's emulator is on every worker, a real
    board is some worker's resource, a board behind --port answers with the model's firmware (before any
    run directory or long work exists; a labgrid place is acquired with the run)."""
    if not exp.chip_board or exp.chip_place is not None or exp.chip_backend != "device":
        return   # no chip, a place, or a host backend
    if exp.chip_port is not None:
        with connect(load_board(exp.chip_board), exp.chip_port, targets[exp.chip_precisions[0]].model.sha256):
            return
    board = load_board(exp.chip_board)
    if board.emulated:
        executor.check_emulators({EMULATOR_PROGRAMS[board.emulator_kind or "qemu"]})
    else:
        executor.check_resources({board.name})


def _document(exp: Experiment, plan: Plan, context: Context, execution: Execution, x: np.ndarray, y: np.ndarray,
              targets: dict[str, Target], misalignment: dict[str, Any]) -> dict[str, Any]:
    results, keys = execution.results, [FLOAT, *targets]
    clean, clean_defended = set_outcome(plan.sets[0], exp, context, targets, results)
    evaluations = [{"attack": CLEAN, "eps": 0.0, "n": len(x), **evaluation_metrics(y, x, x, clean, clean, keys)}]
    if context.defenses:
        evaluations[-1]["defended"] = defended_metrics(y, clean_defended, clean_defended)
    gallery, boundary, sweeps = [], {}, defaultdict(list)
    evaluated = [(plan.sets[0], x, clean)]
    for item in plan.sets[1:]:
        if item.attack_index in execution.failed:
            continue
        assert item.spec is not None
        x_adv = set_inputs(item, plan, results, x, exp.shard)
        crafted = [results[c.key] for c in craft_units(item, exp.shard)]
        info = attack_info(item.spec, item.eps, exp.seed, crafted)
        adv, adv_defended = set_outcome(item, exp, context, targets, results)
        n = item.n
        evaluation = {"attack": item.spec.shown, "eps": item.eps if item.eps is not None else _budget(info), "n": n,
                      **info, "seconds": _set_seconds(execution.seconds, plan, item.key),
                      **evaluation_metrics(y[:n], x[:n], x_adv, _subset(clean, n), adv, keys,
                                           info.get("target_class"))}
        if context.defenses:
            evaluation["defended"] = defended_metrics(
                y[:n], {k: _subset(v, n) for k, v in clean_defended.items()}, adv_defended)
        evaluations.append(evaluation)
        evaluated.append((item, x_adv, adv))
        gallery.append(gallery_entry(item.spec.shown, evaluation["eps"], x_adv, adv.preds, GALLERY_SAMPLES))
        sweeps[item.attack_index].append((x_adv, adv, info["norm"]))
    for index, sweep in sweeps.items():
        spec, n = exp.attacks[index], len(sweep[0][0])
        boundary[spec.shown] = boundary_distances(y[:n], x[:n], [(a, o) for a, o, _ in sweep], sweep[-1][2],
                                                 [*keys, *(w.key for w in exp.bitwidths)])
    failures = [_failure("attack", exp.attacks[i].shown, err) for i, err in sorted(execution.failed.items())]
    return {
        "schema": 2,
        "experiment": _describe(exp, targets),
        "evaluations": evaluations,
        "boundary_distance": boundary,
        "gradient_misalignment": misalignment,
        "summary": {**_summary(evaluations), "failed_attacks": failures},
        "_gallery": gallery_arrays(x, y, clean.preds, gallery, exp.input_range, GALLERY_SAMPLES),
        "_sets": evaluated,   # (set, its inputs, its outcome) per evaluation: host.study.evaluation's view
    }


def _set_seconds(seconds: dict[str, float], plan: Plan, set_key: str) -> dict[str, float]:
    """Worker seconds spent on one set, per kind of unit (units read back from the journal count 0)."""
    out: dict[str, float] = defaultdict(float)
    for key, value in seconds.items():
        if plan.set_of.get(key) == set_key:
            out["craft" if key.startswith("craft/") else "run"] += value
    return {"craft": round(out["craft"], 1), "run": round(out["run"], 1)}


def _seconds_by_kind(seconds: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for key, value in seconds.items():
        out[key.split("/", 1)[0]] += value
    return {k: round(v, 1) for k, v in sorted(out.items())}


def _submit_gradient(executor: Any, journal: Journal | None, context: Context, x: np.ndarray, y: np.ndarray,
                     scope: str) -> Any:
    """Gradient misalignment as a unit of its own, beside the others (not after them, in the client)."""
    unit = GradientUnit(scope, x[:GRADIENT_SAMPLES], y[:GRADIENT_SAMPLES])
    if journal is not None and unit.key in journal.done_keys():
        return journal.get(unit.key)
    # Shared, not embedded in the task: a graph of megabytes slows the scheduler (and Dask warns).
    return unit.key, executor.submit(run_unit, executor.share(context), executor.share(unit),
                                     key=_task_key(journal, unit.key))


def _collect(entry: Any, executor: Any, journal: Journal | None) -> Any:
    """A unit submitted outside the plan (training, gradients): its result, journaled once it arrives."""
    if isinstance(entry, BaseException):
        raise entry
    if not isinstance(entry, tuple):
        return entry
    unit_key, handle = entry
    for _, outcome in executor.completed([handle]):
        return _kept(unit_key, outcome, journal)
    raise UserError(f"unit {unit_key} returned nothing")


def _kept(unit_key: str, outcome: Any, journal: Journal | None) -> Any:
    """An arrived unit outside the plan: its result, journaled (its error, raised)."""
    if isinstance(outcome, BaseException):
        raise outcome
    if journal is not None:
        journal.put(unit_key, outcome.result, outcome.seconds, outcome.worker)
    return outcome.result


# ---------------------------------------------------------------- quantization-aware training


def with_qat_models(exp: Experiment, context: Context, executor: Any, journal: Journal | None, scope: str,
                    say: Callable[[str], None]) -> Context:
    """The context with every QAT bit width trained (one unit each, in parallel, before the units that
    evaluate them; a resumed run takes them from the journal)."""
    widths = [w for w in exp.bitwidths if w.qat]
    if not widths or exp.qat is None:
        return context
    x_train, y_train = load_slice(exp.qat.data, exp.input_range)
    entries: dict[str, Any] = {}
    shared = None   # the context and the pool, sent to the workers once for every width
    for width in widths:
        unit = QatUnit(scope, width, exp.qat)
        if journal is not None and unit.key in journal.done_keys():
            entries[width.key] = journal.get(unit.key)
            continue
        shared = shared or (executor.share(context), executor.share(x_train), executor.share(y_train))
        entries[width.key] = (unit.key, executor.submit(run_unit, shared[0], unit, shared[1], shared[2],
                                                        key=_task_key(journal, unit.key), priority=PRIORITY_TRAIN))
    pending = sum(isinstance(e, tuple) for e in entries.values())
    if pending:
        schedules = sorted({exp.qat.schedule(w.bits)[0] for w in exp.bitwidths if w.qat})
        say(f"quantization-aware training: {pending} bit width(s), {'/'.join(map(str, schedules))} epoch(s) each on "
            f"{len(x_train)} images, before the study's other units")
    trained = {key: Blob.of(_collect(entry, executor, journal), ".npz") for key, entry in entries.items()}
    return dataclasses.replace(context, qat_models=trained)


# ---------------------------------------------------------------- trained defenses


def _submit_training(exp: Experiment, executor: Any, journal: Journal | None, context: Context,
                     scope: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Train every train-based defense as a unit, beside the study's other units."""
    out: dict[str, Any] = {}
    for spec in (d for d in exp.defenses if d.kind == "train"):
        unit_key = f"{scope}train/{spec.label}"
        if journal is not None and unit_key in journal.done_keys():
            out[spec.label] = journal.get(unit_key)
            continue
        try:
            x_train, y_train = load_slice(spec.train_data, exp.input_range)
        except UserError as err:
            out[spec.label] = err
            continue
        unit = TrainUnit(spec.label, spec, x_train, y_train, _checkpoint_dir(journal, unit_key))
        kept = kept_epochs(unit.checkpoints) if unit.checkpoints is not None else []
        if kept:
            say(f"training {spec.label}: goes on from its checkpoint (epochs done per phase: "
                f"{', '.join(map(str, kept))}; {unit.checkpoints})")
        out[spec.label] = (unit_key, executor.submit(run_unit, executor.share(context), executor.share(unit),
                                                     key=_task_key(journal, unit_key), priority=PRIORITY_TRAIN))
    return out


def _start_defended_study(main: StudyRun, spec: DefenseSpec, running: Running) -> None:
    """A given model's study opens now; a trained defense's once its model is trained (now, if the journal
    has it)."""
    if spec.kind == "train":
        entry = main.trained[spec.label]
        if isinstance(entry, tuple):
            running.trainings[entry[1].key] = (main, spec, *entry)
            return
    _open_defended(main, spec, main.trained.get(spec.label), running)


def _checkpoint_dir(journal: Journal | None, unit_key: str) -> Path | None:
    """Where a training unit keeps its epoch checkpoints: in the run's directory (none without a journal)."""
    if journal is None:
        return None
    return journal.path.parent / "checkpoints" / re.sub(r"[^A-Za-z0-9._-]+", "_", unit_key)


def _training_done(training: tuple[StudyRun, DefenseSpec, str, Any], outcome: Any, running: Running) -> None:
    main, spec, unit_key, _ = training
    try:
        main.trained[spec.label] = _kept(unit_key, outcome, running.journal)
    except Exception as err:  # noqa: BLE001  (_open_defended leaves the defense out)
        main.trained[spec.label] = err
    else:   # journaled: its epoch checkpoints are no longer needed
        checkpoints = _checkpoint_dir(running.journal, unit_key)
        if checkpoints is not None:
            shutil.rmtree(checkpoints, ignore_errors=True)
            with contextlib.suppress(OSError):
                checkpoints.parent.rmdir()   # the last one: no empty directory left
    _open_defended(main, spec, main.trained[spec.label], running)


def _open_defended(main: StudyRun, spec: DefenseSpec, model: Any, running: Running) -> None:
    """Open the study of one defended model; a defense that fails is left out, the others go on."""
    try:
        if isinstance(model, BaseException):
            raise model
        scope = f"{main.scope}defense-{spec.label}:"
        sub, defense = (_given_model(main.exp, spec) if spec.kind == "model" else
                        _trained_model(main.exp, spec, model, scope))
        run = open_study(sub, scope, running, link=main.link)
        run.defense = defense
        running.subs[spec.label] = run
    except Exception as err:  # noqa: BLE001  (the undefended results are written all the same)
        running.failed[spec.label] = err
        running.say(f"warning: defense '{spec.label}' failed and is left out: {_message(err)}")


def _defended_documents(main: StudyRun, running: Running) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The defended models' documents and the defenses left out, in the config's order."""
    documents, failures = {}, []
    for spec in (d for d in main.exp.defenses if d.kind in ("train", "model")):
        run = running.subs.get(spec.label)
        try:
            if spec.label in running.failed:
                raise running.failed[spec.label]
            assert run is not None
            if run.error is not None:
                raise run.error
            document = finish_study(run, running)
        except Exception as err:  # noqa: BLE001
            failures.append(_failure("defense", spec.label, err))
            if spec.label not in running.failed:
                running.say(f"warning: defense '{spec.label}' failed and is left out: {failures[-1]['error']}")
            continue
        for private in ("_gallery", "_sets"):
            document.pop(private, None)
        documents[spec.label] = {**document, "defense": run.defense}
    return documents, failures


def _trained_model(exp: Experiment, spec: DefenseSpec, model: bytes, scope: str) -> tuple[Experiment, dict[str, Any]]:
    """The study of a model trained by a defense: the defended float model, quantized with the
    representative set (without one: the first CALIBRATION_IMAGES of the defense's training images)."""
    digest = hashlib.sha256(f"{exp.float_model}|{spec}|{exp.seed}|{scope}".encode()).hexdigest()[:16]
    path = BUILD_DIR / "defended" / f"{exp.name}-{spec.name}-{digest}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model)
    assert spec.train_data is not None
    calibration = exp.representative or dataclasses.replace(
        spec.train_data, num=min(CALIBRATION_IMAGES, spec.train_data.num or CALIBRATION_IMAGES))
    sub = dataclasses.replace(exp, name=f"{exp.name}+{spec.name}", float_model=path, given={}, defenses=(),
                              representative=calibration)
    return sub, {"name": spec.name, "params": spec.params, "model": str(path),
                 "train_data": str(spec.train_data.path),
                 "calibration": {"path": str(calibration.path), "start": calibration.start, "num": calibration.num}}


def _given_model(exp: Experiment, spec: DefenseSpec) -> tuple[Experiment, dict[str, Any]]:
    """The study of a defended model trained elsewhere (a trained-model defense): its float model and the
    TFLite files it gives, the other precisions quantized with the study's representative set."""
    given = _given_files(exp, spec)
    sub = dataclasses.replace(exp, name=f"{exp.name}+{spec.label}", float_model=Path(spec.params["float"]),
                              given=given, defenses=())
    return sub, {"name": spec.name, "label": spec.label, "model": spec.params["float"],
                 "given": {p: str(path) for p, path in given.items()}}


def _given_files(exp: Experiment, spec: DefenseSpec) -> dict[str, Path]:
    """The TFLite files a trained-model defense gives, for the study's quantized precisions."""
    return {p: Path(spec.params[p]) for p in exp.precisions if p != FLOAT and spec.params.get(p)}


def _summary(evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    chip = [m["reference_agreement"] for e in evaluations for m in e["models"].values() if "reference_agreement" in m]
    staged = [m["reference_agreement"] for e in evaluations for d in e.get("defended", {}).values()
              for m in d["models"].values() if "reference_agreement" in m]
    return {"chip_inferences": sum(a["of"] for a in chip),
            "chip_mismatches": sum(a["of"] - a["identical"] for a in chip),
            "defended_chip_inferences": sum(a["of"] for a in staged),
            "defended_chip_mismatches": sum(a["of"] - a["identical"] for a in staged),
            "evaluations": len(evaluations)}


def _failure(kind: str, name: str, err: Exception) -> dict[str, str]:
    """What metrics.json keeps of a failed attack or defense: the message, and where an unexpected
    error came from."""
    if isinstance(err, UserError):
        return {kind: name, "error": err.message}
    return {kind: name, "error": f"{type(err).__name__}: {err}".strip(),
            "traceback": "".join(traceback.format_exception(err)[-6:])}


def _label(spec: AttackSpec, eps: float | None) -> str:
    return spec.shown if eps is None else f"{spec.shown} ε={eps:g}"


def _budget(info: dict[str, Any]) -> float | None:
    """The eps of a minimal-perturbation attack run without an explicit ε: its budget (None if unbounded)."""
    eps = info["params"].get("eps")
    return None if eps is None or eps == float("inf") else float(eps)


def _describe(exp: Experiment, targets: dict[str, Target]) -> dict[str, Any]:
    return {
        "name": exp.name, "config": str(exp.source), "seed": exp.seed,
        "float_model": str(exp.float_model),
        "precisions": {p: {"sha256": t.model.sha256.hex(), "origin": t.origin,
                           "input": {"scale": t.model.input.scale, "zero_point": t.model.input.zero_point}}
                       for p, t in targets.items()},
        "dataset": {"path": str(exp.dataset.path), "start": exp.dataset.start, "num": exp.dataset.num,
                    "input_range": list(exp.input_range)},
        "chip": {"board": exp.chip_board, "precisions": list(exp.chip_precisions), "num": exp.chip_num,
                 **({"place": exp.chip_place} if exp.chip_place else {}),
                 "preprocess_stages": {label: stage.label for label, stage in chip_stages(exp).items()}},
        "attacks": [{"name": a.name, **({"label": a.label} if a.label else {}), "eps": list(a.eps),
                     "params": a.params} for a in exp.attacks],
        **({"bitwidths": [w.key for w in exp.bitwidths]} if exp.bitwidths else {}),
        **({"qat": {"data": {"path": str(exp.qat.data.path), "start": exp.qat.data.start, "num": exp.qat.data.num},
                    "epochs": exp.qat.epochs, "learning_rate": exp.qat.learning_rate,
                    "batch_size": exp.qat.batch_size,
                    **({"by_bits": [list(row) for row in exp.qat.by_bits]} if exp.qat.by_bits else {}),
                    **({"learning_rate_decay": exp.qat.decay} if exp.qat.decay != "none" else {})}}
            if exp.qat is not None else {}),
    }

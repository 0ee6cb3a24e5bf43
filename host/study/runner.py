"""A configured study (`python -m host.evaluate --config study.toml`): one float model, its
int16x8 and int8 versions, many attacks × ε, every input on the float model, on TFLite Micro
for each precision and, for the precisions flashed to a board, on the chip.

Metrics (docs/metrics.md) per attack × ε × precision: accuracy, attack success, transfer
float→int16→int8, perturbation norms, quantization shift, queries of black-box attacks,
chip-vs-reference agreement and instructions; per attack: distance to the decision boundary;
once: gradient misalignment and zero density of finite-difference gradients.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host.attacks import FloatModel, get_attack
from host.attacks.oracle import QuantizedOracle
from host.backends.backend import DeviceBackend, ModelIO, ReferenceBackend
from host.compiler.compile import compile_bytes
from host.core.boards import load_board
from host.core.data import load_digits_split
from host.core.errors import UserError
from host.core.paths import BUILD_DIR
from host.core.quiet import import_tensorflow_quietly
from host.defenses import get_defense
from host.emulators.launch import board_link, boot_elf
from host.engine.build import build_firmware
from host.link.device import connect
from host.quantization.bitwidth import simulate
from host.quantization.quantize import experiment_models
from host.study import metrics
from host.study.checkpoint import StudyCheckpoint
from host.study.config import FLOAT, AttackSpec, Experiment, SliceSpec, attack_params
from host.study.gallery import gallery_arrays, gallery_entry

GRADIENT_SAMPLES = 8          # clean inputs for gradient misalignment (FD estimates are query-hungry)
FD_DIRECTIONS = 32
CALIBRATION_IMAGES = 500      # a defended model's quantization set when the study has no representative set
GALLERY_SAMPLES = 8           # first inputs kept (clean and adversarial) for the report's gallery


@dataclass
class Target:
    """One quantized precision: its model, its reference and (maybe) its chip."""

    precision: str
    model: Any                       # host.backends.backend.ModelIO
    reference: Any                   # host.backends.backend.ReferenceBackend
    chip: Any | None = None          # host.backends.backend.DeviceBackend
    origin: str = ""
    stage_chips: dict[str, StageChip] = field(default_factory=dict)   # defense label -> its on-chip stage


@dataclass
class StageChip:
    """A firmware with a defense's pre-processing stage (docs/defenses.md, "On the chip"): it gets the
    raw quantized input and squeezes or filters it itself before the inference."""

    device: Any                      # host.link.device.Device
    stage: Any                       # host.engine.preprocess.ChipStage
    input: Any                       # the model input's TensorInfo

    def run(self, x_q: np.ndarray) -> Any:
        return self.device.infer(np.ascontiguousarray(x_q, dtype=self.input.dtype).tobytes())


@dataclass
class Outcome:
    """Predictions of every evaluated model on one input set."""

    preds: dict[str, np.ndarray] = field(default_factory=dict)          # "float32", "int8", "chip:int8", ...
    raw: dict[str, list[bytes]] = field(default_factory=dict)           # quantized outputs, for agreement
    instructions: dict[str, list[int]] = field(default_factory=dict)


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
    if spec.num is not None and len(x) < spec.num:
        raise UserError(f"{spec.path}: asked for {spec.num} samples from {spec.start}, it has {len(x) + spec.start}")
    lo, hi = input_range
    if x.dtype == np.uint8:
        x = x.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    x = x.astype(np.float32)
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


@contextmanager
def chips(exp: Experiment, targets: dict[str, Target]) -> Iterator[None]:
    """Build and boot one firmware per chip precision; every emulator stops on exit."""
    if not exp.chip_board:
        yield
        return

    board = load_board(exp.chip_board)
    with ExitStack() as stack:
        url = None
        if exp.chip_place is not None or exp.chip_port is not None:  # a board that runs the flashed firmware
            url = stack.enter_context(board_link(exp.chip_place, exp.chip_port))
        for precision in exp.chip_precisions:
            target = targets.get(precision)
            if target is None:
                raise UserError(f"[chip] precisions lists {precision}, which is not in [model] precisions")
            compiled = compile_bytes(target.model.data, name=f"{exp.name}_{precision}")
            if url is not None:
                target.chip = DeviceBackend(stack.enter_context(connect(board, url, compiled.sha256)), target.model)
                continue
            image = build_firmware(compiled, board)
            device = stack.enter_context(boot_elf(board, image.elf, compiled.sha256))
            target.chip = DeviceBackend(device, target.model)
            for label, stage in chip_stages(exp).items():
                image = build_firmware(compiled, board, preprocess=stage, input_range=exp.input_range)
                device = stack.enter_context(boot_elf(board, image.elf, compiled.sha256))
                target.stage_chips[label] = StageChip(device, stage, target.model.input)
        yield


def chip_stages(exp: Experiment) -> dict[str, Any]:
    """The firmware stage of every pre-processing defense with on_chip = true, by its label."""
    return {d.label: get_defense(d.name, **d.params).chip_stage() for d in exp.defenses if d.on_chip}


# ---------------------------------------------------------------- running models


def run_all(x: np.ndarray, float_model: Any, targets: dict[str, Target], chip_num: int | None,
            bar: Any, use_chip: bool = True, simulated: dict[str, Any] | None = None) -> Outcome:
    out = Outcome()
    out.preds[FLOAT] = float_model.predict(x).argmax(axis=1)
    for key, model in (simulated or {}).items():
        out.preds[key] = np.asarray(model.predict(x, verbose=0, batch_size=256)).argmax(axis=1)
    for precision, target in targets.items():
        x_q = target.model.input.quantize(x)
        out.raw[precision] = [target.reference.run(s).output for s in x_q]
        out.preds[precision] = _argmax(out.raw[precision], target.model.output.dtype)
        bar.update(len(x))
        if target.chip is not None and use_chip:
            key = f"chip:{precision}"
            n = len(x) if chip_num is None else min(chip_num, len(x))
            results = []
            for s in x_q[:n]:
                results.append(target.chip.run(s))
                bar.update(1)
            out.raw[key] = [r.output for r in results]
            out.preds[key] = _argmax(out.raw[key], target.model.output.dtype)
            out.instructions[key] = [int(r.instructions) for r in results if r.instructions is not None]
    return out


def _argmax(outputs: list[bytes], dtype: str) -> np.ndarray:
    return np.array([int(np.frombuffer(b, dtype=dtype).argmax()) for b in outputs], dtype=np.int64)


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


def preprocessors(exp: Experiment) -> dict[str, Any]:
    return {d.label: get_defense(d.name, **d.params) for d in exp.defenses if d.kind == "preprocess"}


def run_defended(x: np.ndarray, defenses: dict[str, Any], float_model: Any, targets: dict[str, Target],
                 input_range: tuple[float, float], bar: Any, chip_num: int | None = None) -> dict[str, Outcome]:
    """Host models on each defense's pre-processed inputs (non-adaptive: attacks ignore the defense);
    a defense with its stage on the chip also runs there on the raw inputs."""
    outcomes = {}
    for name, d in defenses.items():
        outcome = run_all(d.apply(x, input_range), float_model, targets, None, bar, use_chip=False)
        for precision, target in targets.items():
            if name in target.stage_chips:
                run_stage_chip(outcome, x, precision, target, target.stage_chips[name], input_range, chip_num, bar)
        outcomes[name] = outcome
    return outcomes


def run_stage_chip(out: Outcome, x: np.ndarray, precision: str, target: Target, chip: StageChip,
                   input_range: tuple[float, float], chip_num: int | None, bar: Any) -> None:
    """The chip pre-processes the quantized input itself; its reference is TFLite Micro on the host's
    integer pre-processing of the same bytes (host/engine/integer.py)."""
    n = len(x) if chip_num is None else min(chip_num, len(x))
    x_q = target.model.input.quantize(x[:n])
    staged = chip.stage.reference(x_q, chip.input, input_range)
    out.raw[f"stage-ref:{precision}"] = [target.reference.run(s).output for s in staged]
    out.preds[f"stage-ref:{precision}"] = _argmax(out.raw[f"stage-ref:{precision}"], target.model.output.dtype)
    results = []
    for s in x_q:
        results.append(chip.run(s))
        bar.update(1)
    key = f"chip:{precision}"
    out.raw[key] = [r.output for r in results]
    out.preds[key] = _argmax(out.raw[key], target.model.output.dtype)
    out.instructions[key] = [int(r.instructions) for r in results if r.instructions is not None]
    out.instructions[f"chip-pre:{precision}"] = [int(r.preprocess_instructions) for r in results
                                                  if r.preprocess_instructions is not None]


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


def gradient_misalignment(x: np.ndarray, y: np.ndarray, float_model: Any, targets: dict[str, Target],
                          input_range: tuple[float, float]) -> dict[str, Any]:
    """Cosine between the float model's input gradient and FD estimates on each quantized model.

    A random-direction estimate only sees a FD_DIRECTIONS-dimensional projection of the gradient,
    so even an exact oracle gives a cosine of about sqrt(directions / dimensions): the same
    estimator on the float model itself ("float32 (FD baseline)") is the reference to read the
    quantized models' cosines against.
    """

    x, y = x[:GRADIENT_SAMPLES], y[:GRADIENT_SAMPLES]
    float_grad = metrics.float_input_gradient(float_model.keras_model, x, y)
    span = input_range[1] - input_range[0]
    fd = {"h": span / 64, "method": "random", "directions": FD_DIRECTIONS, "seed": 0, "clip": input_range}
    oracles: dict[str, Any] = {f"{FLOAT} (FD baseline)": float_model.predict}
    for precision, target in targets.items():
        oracles[precision] = QuantizedOracle.from_backend(target.reference, target.model, input_range)
    out = {}
    for key, oracle in oracles.items():
        estimate = metrics.finite_difference_gradient(oracle, x, labels=y, **fd)
        out[key] = {**metrics.gradient_misalignment(float_grad, estimate), "samples": len(x),
                    "queries": int(getattr(oracle, "queries", 0)) or len(x) * (FD_DIRECTIONS * 2),
                    "fd": f"random directions ({FD_DIRECTIONS}), h = range/64"}
    return out


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


def craft(spec: AttackSpec, eps: float | None, seed: int, x: np.ndarray, y: np.ndarray, float_model: Any,
          targets: dict[str, Target], input_range: tuple[float, float]) -> tuple[np.ndarray, Any, dict]:
    attack = make_attack(spec, eps, seed)
    info: dict[str, Any] = {"threat_model": attack.threat_model, "norm": attack.norm, "params": dict(attack.params)}
    if attack.target_class is not None:
        info["target_class"] = attack.target_class
    if attack.needs == "oracle":
        target = _oracle_target(spec, targets)
        backend = target.chip if spec.params.get("via") == "chip" else target.reference
        if backend is None:
            raise UserError(f"attack '{spec.name}' queries the chip, but {target.precision} is not on a [chip]")
        oracle = QuantizedOracle.from_backend(backend, target.model, input_range)
        x_adv = attack.generate(oracle, x, y)
        info.update(oracle=f"{'chip' if backend is target.chip else 'reference'}:{target.precision}",
                    queries=attack.last_queries)
    else:
        x_adv = attack.generate(float_model, x, y)
    return x_adv, attack, info


def run_experiment(exp: Experiment, progress: bool = True, checkpoint: StudyCheckpoint | None = None) -> dict[str, Any]:
    """The whole study; with a checkpoint, attacks and defense models finished before are read back."""
    from tqdm import tqdm


    import_tensorflow_quietly()
    started = time.time()
    x, y = load_slice(exp.dataset, exp.input_range)
    rep = load_slice(exp.representative, exp.input_range)[0] if exp.representative else None
    models = experiment_models(exp.float_model, rep, exp.given, [p for p in exp.precisions if p != FLOAT])
    float_model = FloatModel(models.float_model, exp.input_range)
    targets = prepare_targets(exp, models)
    simulated = simulated_models(exp, models.float_model, rep if rep is not None else x)
    preflight(exp, x, float_model, targets)
    _seed(exp.seed)
    evaluations, boundary, gallery, failures = [], {}, [], []
    with chips(exp, targets):
        total = _work(exp, len(x), targets)
        with tqdm(total=total, unit="inf", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
            bar.set_description("clean")
            clean = run_all(x, float_model, targets, exp.chip_num, bar, simulated=simulated)
            evaluations.append({"attack": "clean", "eps": 0.0, **evaluation_metrics(
                y, x, x, clean, clean, [FLOAT, *targets])})
            defenses = preprocessors(exp)
            clean_defended = run_defended(x, defenses, float_model, targets, exp.input_range, bar, exp.chip_num)
            if defenses:
                evaluations[-1]["defended"] = defended_metrics(y, clean_defended, clean_defended)
            for index, spec in enumerate(exp.attacks):
                key = f"attack-{index:02d}-{spec.name}"
                try:
                    done = checkpoint.load(key) if checkpoint is not None else None
                    if done is None:
                        done = _run_attack(spec, exp, x, y, clean, float_model, targets, bar, defenses,
                                           clean_defended, simulated, checkpoint, key)
                        if checkpoint is not None:
                            checkpoint.save(key, done)
                            checkpoint.discard(f"{key}-eps", len(spec.eps))   # the whole replaces its parts
                    else:
                        bar.write(f"{spec.name}: finished before, read back from {checkpoint.directory}",
                                  file=sys.stderr)
                    evaluations += done.evaluations
                    gallery += done.gallery
                    boundary[spec.name] = done.boundary
                except Exception as err:  # noqa: BLE001
                    # One attack failing (inside ART, TensorFlow, ...) must not stop an hours-long study:
                    # it is left out and reported (exit status 1); a resumed run tries it again.
                    failures.append(_failure("attack", spec.name, err))
                    print(f"warning: attack '{spec.name}' failed and is left out: {failures[-1]['error']}",
                          file=sys.stderr)
    misalignment = gradient_misalignment(x, y, float_model, targets, exp.input_range)
    trained, failed_defenses = {}, []
    for d in (d for d in exp.defenses if d.kind == "train"):
        try:
            trained[d.label] = defended_study(exp, d, models.float_model, progress,
                                              None if checkpoint is None else checkpoint.child(f"defense-{d.label}"))
        except Exception as err:  # noqa: BLE001  (the undefended results are written all the same)
            failed_defenses.append(_failure("defense", d.label, err))
            print(f"warning: defense '{d.label}' failed and is left out: {failed_defenses[-1]['error']}",
                  file=sys.stderr)
    return {
        "defended_models": trained,
        "schema": 2,
        "experiment": _describe(exp, targets),
        "evaluations": evaluations,
        "boundary_distance": boundary,
        "gradient_misalignment": misalignment,
        "summary": {**_summary(evaluations), "failed_attacks": failures, "failed_defenses": failed_defenses},
        "_gallery": gallery_arrays(x, y, clean.preds, gallery, exp.input_range, GALLERY_SAMPLES),
        "run": {"duration_s": round(time.time() - started, 1)},
    }


def defended_study(exp: Experiment, spec: Any, float_keras: Any, progress: bool,
                   checkpoint: StudyCheckpoint | None = None) -> dict[str, Any]:
    """Train the defended float model, then run the same study on it, quantized with the
    representative set (without one: the first CALIBRATION_IMAGES of the defense's training images)."""
    import dataclasses
    import hashlib


    key = hashlib.sha256(f"{exp.float_model}|{spec}".encode()).hexdigest()[:16]
    path = (BUILD_DIR / "defended" / f"{exp.name}-{spec.name}-{key}.keras" if checkpoint is None
            else checkpoint.directory / "model.keras")
    if checkpoint is not None and checkpoint.load("model") is not None:   # trained before an interruption
        print(f"defense '{spec.name}': the model trained before is read back from {path}", file=sys.stderr)
    else:
        x_train, y_train = load_slice(spec.train_data, exp.input_range)
        print(f"training defense '{spec.name}' on {len(x_train)} images …", file=sys.stderr)
        model = get_defense(spec.name, **spec.params).train(float_keras, x_train, y_train,
                                                            input_range=exp.input_range)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        if checkpoint is not None:
            checkpoint.save("model", str(path))   # only once the file is complete
    calibration = exp.representative or dataclasses.replace(
        spec.train_data, num=min(CALIBRATION_IMAGES, spec.train_data.num or CALIBRATION_IMAGES))
    sub = dataclasses.replace(exp, name=f"{exp.name}+{spec.name}", float_model=path, given={}, defenses=(),
                              representative=calibration)
    document = run_experiment(sub, progress, checkpoint)
    document.pop("_gallery", None)
    document["defense"] = {"name": spec.name, "params": spec.params, "model": str(path),
                           "train_data": str(spec.train_data.path),
                           "calibration": {"path": str(calibration.path), "start": calibration.start,
                                           "num": calibration.num}}
    return document


def _summary(evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    chip = [m["reference_agreement"] for e in evaluations for m in e["models"].values() if "reference_agreement" in m]
    staged = [m["reference_agreement"] for e in evaluations for d in e.get("defended", {}).values()
              for m in d["models"].values() if "reference_agreement" in m]
    return {"chip_inferences": sum(a["of"] for a in chip),
            "chip_mismatches": sum(a["of"] - a["identical"] for a in chip),
            "defended_chip_inferences": sum(a["of"] for a in staged),
            "defended_chip_mismatches": sum(a["of"] - a["identical"] for a in staged),
            "evaluations": len(evaluations)}


@dataclass
class AttackResults:
    """What one attack adds to a study (kept whole in a checkpoint)."""

    evaluations: list[dict[str, Any]]
    gallery: list[Any]
    boundary: dict[str, Any]


@dataclass
class EpsResults:
    """One ε of one attack: what the study keeps of it (a checkpoint part while the attack runs)."""

    evaluation: dict[str, Any]
    gallery: Any
    x_adv: np.ndarray
    adv: Outcome
    norm: str


def _run_attack(spec: AttackSpec, exp: Experiment, x: np.ndarray, y: np.ndarray, clean: Outcome,
                float_model: Any, targets: dict[str, Target], bar: Any, defenses: dict[str, Any],
                clean_defended: dict[str, Outcome], simulated: dict[str, Any],
                checkpoint: StudyCheckpoint | None = None, key: str = "") -> AttackResults:
    """Every ε of one attack: craft, run on every model, metrics; then its boundary distance.
    With a checkpoint each finished ε is kept too (a long attack resumes at its next ε)."""
    n = min(len(x), spec.params.get("num", len(x)))
    parts = []
    for index, eps in enumerate(spec.eps):
        part_key = f"{key}-eps{index}"
        part = checkpoint.load(part_key) if checkpoint is not None else None
        if part is None:
            part = _run_eps(spec, eps, exp, x[:n], y[:n], _subset(clean, n), float_model, targets, bar, defenses,
                            clean_defended, simulated)
            if checkpoint is not None:
                checkpoint.save(part_key, part)
        else:
            bar.write(f"{_label(spec, eps)}: finished before, read back", file=sys.stderr)
        parts.append(part)
    sweep = [(part.x_adv, part.adv) for part in parts]
    boundary = boundary_distances(y[:n], x[:n], sweep, parts[-1].norm, [FLOAT, *targets, *simulated])
    return AttackResults([part.evaluation for part in parts], [part.gallery for part in parts], boundary)


def _failure(kind: str, name: str, err: Exception) -> dict[str, str]:
    """What metrics.json keeps of a failed attack or defense: the message, and where an unexpected
    error came from."""
    if isinstance(err, UserError):
        return {kind: name, "error": err.message}
    return {kind: name, "error": f"{type(err).__name__}: {err}".strip(),
            "traceback": "".join(traceback.format_exception(err)[-6:])}


def _label(spec: AttackSpec, eps: float | None) -> str:
    return spec.name if eps is None else f"{spec.name} ε={eps:g}"


def _run_eps(spec: AttackSpec, eps: float | None, exp: Experiment, x: np.ndarray, y: np.ndarray, clean: Outcome,
             float_model: Any, targets: dict[str, Target], bar: Any, defenses: dict[str, Any],
             clean_defended: dict[str, Outcome], simulated: dict[str, Any]) -> EpsResults:
    """One ε of one attack: craft on x, run the adversarial set on every model, its metrics."""
    label = _label(spec, eps)
    bar.set_description(label)
    started = time.time()
    x_adv, _, info = craft(spec, eps, exp.seed, x, y, float_model, targets, exp.input_range)
    crafted = time.time() - started
    adv = run_all(x_adv, float_model, targets, exp.chip_num, bar, simulated=simulated)
    evaluation = {"attack": spec.name, "eps": eps if eps is not None else _budget(info), **info,
                  "seconds": {"craft": round(crafted, 1), "run": round(time.time() - started - crafted, 1)},
                  **evaluation_metrics(y, x, x_adv, clean, adv, [FLOAT, *targets], info.get("target_class"))}
    accuracy = ", ".join(f"{k} {100 * m['accuracy']:.1f} %"
                         for k, m in evaluation["models"].items() if m["accuracy"] is not None)
    bar.write(f"{label}: crafted in {crafted:.1f} s; accuracy {accuracy}", file=sys.stderr)
    if defenses:
        adv_defended = run_defended(x_adv, defenses, float_model, targets, exp.input_range, bar, exp.chip_num)
        evaluation["defended"] = defended_metrics(y, clean_defended, adv_defended)
    gallery = gallery_entry(spec.name, evaluation["eps"], x_adv, adv.preds, GALLERY_SAMPLES)
    return EpsResults(evaluation, gallery, x_adv, adv, info["norm"])


def simulated_models(exp: Experiment, float_keras: Any, calibration: np.ndarray) -> dict[str, Any]:
    """The [bitwidth] sweep: host-simulated b-bit versions of the float model (host.quantization.bitwidth)."""
    return {w.key: simulate(float_keras, w, calibration[:500]) for w in exp.bitwidths}


def _budget(info: dict[str, Any]) -> float | None:
    """The eps of a minimal-perturbation attack run without an explicit ε: its budget (None if unbounded)."""
    eps = info["params"].get("eps")
    return None if eps is None or eps == float("inf") else float(eps)


def _subset(outcome: Outcome, n: int) -> Outcome:
    return Outcome({k: v[:n] for k, v in outcome.preds.items()}, {k: v[:n] for k, v in outcome.raw.items()},
                   outcome.instructions)


def _work(exp: Experiment, n: int, targets: dict[str, Target]) -> int:
    per_set = n * len(targets) * (1 + len(preprocessors(exp))) + sum(
        min(n, exp.chip_num or n) * (1 + len(t.stage_chips)) for t in targets.values() if t.chip is not None)
    sets = 1 + sum(len(a.eps) for a in exp.attacks)
    return per_set * sets


def _seed(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


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
        "attacks": [{"name": a.name, "eps": list(a.eps), "params": a.params} for a in exp.attacks],
    }

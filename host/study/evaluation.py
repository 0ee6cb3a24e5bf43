"""The flag pipeline of `python -m host.evaluate` (host/evaluate.py is the command): adversarial
robustness of the flashed model, on the chip.

For clean inputs and every attack × ε, each input runs on (a) the float Keras
model, (b) the TFLite Micro reference with the int8-quantized input and (c) the
chip with the same int8 bytes.  Every inference is stored as it arrives in
results/<run-id>/results.sqlite (host.study.store); a dead emulator is restarted
(host.backends.pool, also several emulators sharing the inputs). See docs/evaluate.md.

Imports: host.core, host.engine, host.link, host.emulators, host.backends, host.attacks, host.study.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import host.emulators.qemu  # noqa: F401  (installs the SIGTERM handler that stops the emulators)
from host.attacks import attack_class, get_attack, load_float_model
from host.backends import backend as backends
from host.backends.backend import ModelIO, ReferenceBackend
from host.backends.pool import BackendPool
from host.core.data import digits_test_set, load_npz_dataset
from host.core.errors import UserError
from host.core.paths import ROOT
from host.study.store import BACKEND_ROLES, EvaluationRecord, ResultsDB

if TYPE_CHECKING:
    from host.backends.pool import BackendPool

DEFAULT_EPS = (0.05, 0.1, 0.2)
DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_SEED = 0
DEFAULT_WINDOW = 4
DEFAULT_MAX_RESTARTS = 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any TensorFlow import: no C++ log spam

DEFAULT_EPS = (0.05, 0.1, 0.2)

DEFAULT_ATTACKS = ("fgsm", "pgd")

DEFAULT_SEED = 0

DEFAULT_WINDOW = 4

DEFAULT_MAX_RESTARTS = 3



@dataclass(frozen=True)
class EvalConfig:
    model: Path
    float_model: Path
    board: str | None
    backend: str
    num: int | None                      # None: the whole dataset
    eps: tuple[float, ...]
    attacks: tuple[str, ...]
    attack_params: dict[str, dict[str, str]] = field(default_factory=dict)
    seed: int = DEFAULT_SEED
    dataset: Path | None = None          # None: the digits test split
    progress: bool = True
    devices: int = 1                     # emulator instances sharing the inputs (results identical)
    window: int = DEFAULT_WINDOW         # protocol pipelining window per device
    max_restarts: int = DEFAULT_MAX_RESTARTS
    pin_cpus: bool = True                # each emulator bound to one core (round-robin)



@dataclass
class RunOutputs:
    """What one evaluation (clean, or one attack at one ε) produced for n samples."""

    attack: str
    eps: float
    params: dict[str, Any]
    float_pred: np.ndarray
    reference_pred: np.ndarray
    chip_pred: np.ndarray
    reference_bytes: list[bytes]
    chip_bytes: list[bytes]
    instructions: list[int]
    ticks: list[int]
    linf_float: float                    # max |x_adv - x| as crafted (float)
    linf_int8: float                     # max |q(x_adv) - q(x)| · scale: what the int8 model sees


def build_attack(name: str, eps: float, seed: int, attack_params: dict[str, dict[str, str]]):  # noqa: ANN202
    takes_eps = any(p.name == "eps" for p in attack_class(name).params_spec)  # e.g. not the patch attack
    return get_attack(name, seed=seed, **attack_params.get(name, {}), **({"eps": eps} if takes_eps else {}))


def load_dataset(config: EvalConfig):  # noqa: ANN201
    dataset = load_npz_dataset(config.dataset) if config.dataset else digits_test_set()
    if config.num is not None:
        if config.num > len(dataset):
            raise UserError(
                f"--num {config.num} is more than the {len(dataset)} samples of {dataset.name}",
                hint=f"use --num 1..{len(dataset)} (or omit it for all)",
            )
        dataset = dataset.take(config.num)
    return dataset


def evaluate(config: EvalConfig, db: ResultsDB | Callable[[str], ResultsDB]) -> dict[str, Any]:
    """Run (or finish) the whole evaluation, every inference stored in `db` as it arrives;
    returns the metrics document (see host.report for the files).

    `db` is the run's database, or a function that creates it once the chip answered
    (given the chip's description), so a board that is not flashed leaves no run behind.
    """
    model = ModelIO.from_bytes(config.model.read_bytes(), str(config.model))
    dataset = load_dataset(config)
    dataset.check_model_shape(model.input.shape, f"int8 model {config.model.name}")
    dataset.check_num_classes(int(np.prod(model.output.shape[1:])), f"int8 model {config.model.name}")
    reference = ReferenceBackend(model)
    started = time.time()
    bar = _progress_bar(config)
    # The board first: "not flashed" or "other model flashed" must fail before TensorFlow loads.
    with tempfile.TemporaryDirectory(prefix="slingshot-fw-") as tmp, bar:
        firmware = pin_firmware(config, model, Path(tmp))
        with open_pool(config, model, firmware, log=lambda message: bar.write(message, file=sys.stderr)) as chip:
            db = db if isinstance(db, ResultsDB) else db(chip.description)
            runs, retries, shares, restarts, sessions = _evaluate_on(config, dataset, model, reference, chip, db,
                                                                     bar, firmware)
    document = _metrics_document(config, dataset, model, runs, chip.description, time.time() - started)
    document["config"]["firmware_sha256"] = None if firmware is None else firmware.sha256
    document["run"].update({
        "link_retries": retries, "devices": config.devices, "window": config.window,
        "inferences_per_device": shares, "device_restarts": restarts, "sessions": sessions,
    })
    return document


def pin_firmware(config: EvalConfig, model: Any, into: Path) -> Any:
    """The flashed firmware, copied for this session (None: not the device backend, or a board
    over a link)."""
    return backends.pin_firmware(model, config.board, into) if config.backend == "device" else None


def _evaluate_on(config, dataset, model, reference, chip, db, bar, firmware):  # noqa: ANN001, ANN202
    firmware_sha = "" if firmware is None else firmware.sha256
    stored_sha = db.meta("firmware_sha256")
    if stored_sha is None:
        db.set_meta("firmware_sha256", firmware_sha)
    elif stored_sha != firmware_sha:
        raise UserError(
            f"the board's firmware changed since the run started (sha256 {firmware_sha[:16] or 'none'}…, "
            f"the run used {stored_sha[:16] or 'none'}…): a resumed run must use the same firmware",
            hint="re-flash the firmware the run started with, or start a new run")
    restarts_before = int(db.meta("restarts", "0") or 0)
    float_model = load_float_model(config.float_model, dataset.input_range)
    dataset.check_model_shape(float_model.input_shape, f"float model {config.float_model.name}")
    _make_deterministic(config.seed)
    try:
        runs = _run_all(config, dataset, model, float_model, reference, chip, db, bar)
    finally:
        db.set_meta("restarts", str(restarts_before + chip.restarts))
    return runs, chip.retries, list(chip.done_by), restarts_before + chip.restarts, int(db.meta("sessions", "1") or 1)


def open_pool(config: EvalConfig, model: Any, firmware: Any = None,
              log: Callable[[str], None] | None = None) -> BackendPool:
    """config.devices instances of the backend (each its own emulator, booting the pinned
    `firmware` when given) behind one work queue."""
    def opener(slot: int) -> AbstractContextManager[Any]:
        if firmware is None:
            return backends.open_backend(config.backend, model, config.board)
        cpus = backends.cpu_for(slot) if config.pin_cpus else set()
        return backends.open_backend(config.backend, model, config.board, elf=firmware.elf, cpus=cpus)

    return BackendPool(opener, devices=config.devices, window=config.window, max_restarts=config.max_restarts,
                       log=log)


def _progress_bar(config: EvalConfig):  # noqa: ANN202
    from tqdm import tqdm

    return tqdm(total=0, unit="inf", desc="boot", file=sys.stderr, disable=not config.progress, dynamic_ncols=True)


def _make_deterministic(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def evaluation_plan(config: EvalConfig) -> list[tuple[str, float]]:
    return [("clean", 0.0)] + [(a, e) for a in config.attacks for e in config.eps]


def _run_all(config, dataset, model, float_model, reference, chip, db, bar) -> list[RunOutputs]:  # noqa: ANN001
    """Every evaluation in plan order; only what the database lacks is computed."""
    plan = evaluation_plan(config)
    n = len(dataset)
    bar.reset(total=len(plan) * n)
    bar.update(db.count("chip"))
    runs = []
    for position, (attack_name, eps) in enumerate(plan):
        key = _key(attack_name, eps)
        bar.set_description(f"{attack_name}" if attack_name == "clean" else f"{attack_name} ε={eps:g}")
        stored = db.evaluation(key)
        if stored is None or not _complete(db, key, n):
            _compute(config, dataset, model, float_model, reference, chip, db, bar, position, attack_name, eps,
                     stored)
        runs.append(_stored_run(db, key, model))
    return runs


def _complete(db: ResultsDB, key: str, n: int) -> bool:
    return all(len(db.done(key, role)) == n for role in BACKEND_ROLES)


def _compute(config, dataset, model, float_model, reference, chip, db, bar, position, attack_name, eps,  # noqa: ANN001
             stored: EvaluationRecord | None) -> None:
    """Craft this evaluation's inputs (checked against the stored hash when resuming), then run
    the float model, the reference and the chip on whatever the database lacks."""
    key, n = _key(attack_name, eps), len(dataset)
    if attack_name == "clean":
        x_eval, params = dataset.x, {}
    else:
        attack = build_attack(attack_name, eps, config.seed, config.attack_params)
        x_eval, params = attack.generate(float_model, dataset.x, dataset.y), dict(attack.params)
    x_q = model.input.quantize(x_eval)
    q_shift = np.abs(x_q.astype(np.int32) - model.input.quantize(dataset.x).astype(np.int32))
    record = EvaluationRecord(
        key=key, position=position, attack=attack_name, eps=float(eps),
        params=json.loads(json.dumps(params, sort_keys=True)), n=n,
        inputs_sha256=array_sha256(np.asarray(x_eval)), quantized_sha256=array_sha256(x_q),
        linf_float=float(np.max(np.abs(x_eval - dataset.x))) if len(x_eval) else 0.0,
        linf_int8=float(q_shift.max() * model.input.scale) if q_shift.size else 0.0,
    )
    if stored is None:
        db.add_evaluation(record, np.ascontiguousarray(x_q).tobytes())
    elif stored != record:
        what = "inputs" if stored.inputs_sha256 != record.inputs_sha256 else "evaluation"
        raise UserError(
            f"resumed run: the {what} re-crafted for {key} differ from the stored ones "
            f"(sha256 {record.inputs_sha256[:16]}… vs {stored.inputs_sha256[:16]}…); not continuing",
            hint="the attack, its parameters, the float model or the dataset changed since the run started; "
                 "start a new run")
    all_samples = set(range(n))
    if db.done(key, "float") != all_samples:
        scores = np.asarray(float_model.predict(x_eval), dtype=np.float32)
        have = db.done(key, "float")
        db.add(key, [(i, "float", scores[i].tobytes(), None, None) for i in range(n) if i not in have])
    missing_ref = all_samples - db.done(key, "reference")
    missing_chip = sorted(all_samples - db.done(key, "chip"))
    for batch in chip.run((i, x_q[i]) for i in missing_chip):
        rows = []
        for index, result in batch:
            rows.append((index, "chip", result.output, _int_or_none(result.ticks), _int_or_none(result.instructions)))
            if index in missing_ref:  # the reference runs here, while the chip computes the next inputs
                rows.append((index, "reference", reference.run(x_q[index]).output, None, None))
                missing_ref.discard(index)
        db.add(key, rows)
        bar.update(len(batch))
    if missing_ref:
        db.add(key, [(i, "reference", reference.run(x_q[i]).output, None, None) for i in sorted(missing_ref)])


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def array_sha256(x: np.ndarray) -> str:
    """sha256 over dtype, shape and the bytes of an array."""
    x = np.ascontiguousarray(x)
    digest = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    digest.update(x.tobytes())
    return digest.hexdigest()


def _stored_run(db: ResultsDB, key: str, model: Any) -> RunOutputs:
    """One evaluation's outputs, read back from the database in sample order (so a fresh, a
    resumed and a pooled run give the same document)."""
    record = db.evaluation(key)
    assert record is not None
    floats = db.rows(key, "float")
    refs, chips = db.rows(key, "reference"), db.rows(key, "chip")
    for rows in (floats, refs, chips):
        if [r.sample for r in rows] != list(range(record.n)):
            raise UserError(f"results database {db.path}: evaluation {key} is incomplete or has extra rows")
    ref_bytes, chip_bytes = [r.output for r in refs], [r.output for r in chips]
    float_pred = np.array([int(np.frombuffer(r.output, dtype=np.float32).argmax()) for r in floats], dtype=np.int64)
    return RunOutputs(
        attack=record.attack, eps=record.eps, params=record.params, float_pred=float_pred,
        reference_pred=_argmax_bytes(ref_bytes, model.output.dtype),
        chip_pred=_argmax_bytes(chip_bytes, model.output.dtype),
        reference_bytes=ref_bytes, chip_bytes=chip_bytes,
        instructions=[r.instructions for r in chips if r.instructions is not None],
        ticks=[r.ticks for r in chips if r.ticks is not None],
        linf_float=record.linf_float, linf_int8=record.linf_int8,
    )


def _argmax_bytes(outputs: list[bytes], dtype: str) -> np.ndarray:
    """Predicted class per raw output (argmax of the quantized scores: scale > 0 keeps the order)."""
    return np.array([int(np.frombuffer(b, dtype=dtype).argmax()) for b in outputs], dtype=np.int64)


def _rate(hits: np.ndarray, among: np.ndarray) -> dict[str, Any]:
    """Share of `among` (a mask) where `hits` holds; rate None when `among` is empty."""
    of = int(among.sum())
    count = int((hits & among).sum())
    return {"rate": count / of if of else None, "count": count, "of": of}


def run_metrics(y: np.ndarray, clean: RunOutputs, run: RunOutputs, indices: np.ndarray) -> dict[str, Any]:
    """Metrics of one evaluation; definitions in docs/evaluate.md."""
    float_ok_clean, chip_ok_clean = clean.float_pred == y, clean.chip_pred == y
    float_fooled, chip_fooled = run.float_pred != y, run.chip_pred != y
    is_attack = run.attack != "clean"
    both_ok_float_fooled = float_ok_clean & chip_ok_clean & float_fooled
    return {
        "attack": run.attack,
        "eps": run.eps,
        "params": run.params,
        "n": len(y),
        "float_accuracy": float(np.mean(run.float_pred == y)),
        "reference_accuracy": float(np.mean(run.reference_pred == y)),
        "chip_accuracy": float(np.mean(run.chip_pred == y)),
        "float_int8_agreement": float(np.mean(run.float_pred == run.reference_pred)),
        "attack_success_float": _rate(float_fooled, float_ok_clean) if is_attack else None,
        "transfer_success_chip": _rate(chip_fooled, chip_ok_clean) if is_attack else None,
        "transfer_rate": _rate(chip_fooled, both_ok_float_fooled) if is_attack else None,
        "chip_reference_agreement": _agreement(run, indices),
        "instructions_median": _median(run.instructions),
        "ticks_median": _median(run.ticks),
        "linf_float": run.linf_float,
        "linf_int8": run.linf_int8,
    }


def _agreement(run: RunOutputs, indices: np.ndarray) -> dict[str, Any]:
    same = [c == r for c, r in zip(run.chip_bytes, run.reference_bytes, strict=True)]
    first = next((i for i, ok in enumerate(same) if not ok), None)
    mismatch = None
    if first is not None:
        mismatch = {
            "sample": first,
            "dataset_index": int(indices[first]),
            "chip": run.chip_bytes[first].hex(),
            "reference": run.reference_bytes[first].hex(),
        }
    n = len(same)
    return {"rate": sum(same) / n if n else None, "identical": sum(same), "of": n, "first_mismatch": mismatch}


def _median(values: list[int]) -> float | None:
    return float(np.median(values)) if values else None


def _metrics_document(config, dataset, model, runs, chip_description, duration) -> dict[str, Any]:  # noqa: ANN001
    indices = np.arange(len(dataset))
    evaluations = [run_metrics(dataset.y, runs[0], run, indices) for run in runs]
    mismatched = sum(e["chip_reference_agreement"]["of"] - e["chip_reference_agreement"]["identical"]
                     for e in evaluations)
    return {
        "schema": 1,
        "config": {
            "model": _display_path(config.model),
            "model_sha256": model.sha256.hex(),
            "float_model": _display_path(config.float_model),
            "float_model_sha256": hashlib.sha256(config.float_model.read_bytes()).hexdigest(),
            "backend": config.backend,
            "chip": chip_description,
            "board": config.board,
            "dataset": dataset.name,
            "dataset_meta": {k: v for k, v in dataset.meta.items() if k != "path"},
            "num": len(dataset),
            "seed": config.seed,
            "eps": list(config.eps),
            "attacks": list(config.attacks),
            "input": _tensor_json(model.input),
            "output": _tensor_json(model.output),
            "input_range": list(dataset.input_range),
        },
        "evaluations": evaluations,
        "summary": {
            "bit_exact": mismatched == 0,
            "mismatched_inferences": mismatched,
            "inferences": sum(e["n"] for e in evaluations),
        },
        "run": {"duration_s": round(duration, 3)},
        "_predictions": {_run_key(r): r for r in runs},  # stripped before writing metrics.json
    }


def _run_key(run: RunOutputs) -> str:
    return _key(run.attack, run.eps)


def _key(attack: str, eps: float) -> str:
    return "clean" if attack == "clean" else f"{attack}_eps{eps:g}"


def _tensor_json(info) -> dict[str, Any]:  # noqa: ANN001
    return {"dtype": info.dtype, "shape": list(info.shape), "scale": info.scale, "zero_point": info.zero_point}


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def config_json(config: EvalConfig) -> dict[str, Any]:
    """The run's work-defining options (and the hashes of its files), as stored in results.sqlite."""
    return {
        "model": _display_path(config.model), "model_sha256": _file_sha256(config.model),
        "float_model": _display_path(config.float_model), "float_model_sha256": _file_sha256(config.float_model),
        "dataset": None if config.dataset is None else _display_path(config.dataset),
        "dataset_sha256": None if config.dataset is None else _file_sha256(config.dataset),
        "board": config.board, "backend": config.backend, "num": config.num, "seed": config.seed,
        "eps": list(config.eps), "attacks": list(config.attacks),
        "attack_params": {a: dict(sorted(p.items())) for a, p in sorted(config.attack_params.items())},
    }


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

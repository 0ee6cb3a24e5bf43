"""`python -m host.evaluate`: adversarial robustness of the flashed model, on the chip.

For clean inputs and every attack × ε, each input runs on (a) the float Keras
model, (b) the TFLite Micro reference with the int8-quantized input and (c) the
chip with the same int8 bytes.  Prints accuracies, attack/transfer success,
chip-vs-reference agreement and on-chip cost; writes results/<run-id>/.

Every inference is stored as it arrives in results/<run-id>/results.sqlite (host.results_db);
a dead emulator is restarted (host.pool, also `--devices N` emulators sharing the inputs) and
`--resume <run-id>` finishes a run whose host died. See docs/evaluate.md for every option and
the exact metric definitions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from host.errors import UserError, run_cli
from host.paths import DEFAULT_BOARD, DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, RESULTS_DIR, ROOT
from host.results_db import BACKEND_ROLES, DB_NAME, EvaluationRecord, ResultsDB

if TYPE_CHECKING:
    from host.pool import BackendPool

DEFAULT_EPS = (0.05, 0.1, 0.2)
DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_SEED = 0
DEFAULT_WINDOW = 4
DEFAULT_MAX_RESTARTS = 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any TensorFlow import: no C++ log spam

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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


# ---------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    from host.backends import BACKENDS

    p = argparse.ArgumentParser(
        prog="python -m host.evaluate",
        description="Evaluate adversarial robustness of the flashed int8 model on the chip "
        "against the float model and the TFLite Micro reference.",
        epilog="Attacks: run with --list-attacks.  Details: docs/evaluate.md",
    )
    p.add_argument("--num", type=int, default=None, metavar="N",
                   help="evaluate the first N samples of the test set (default: all)")
    p.add_argument("--eps", default=",".join(map(str, DEFAULT_EPS)), metavar="E1,E2,...",
                   help="L∞ radii in input units, comma-separated (default: %(default)s)")
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), metavar="A1,A2,...",
                   help="attacks from the registry, comma-separated, or 'none' (default: %(default)s)")
    p.add_argument("--attack-param", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                   help="override an attack parameter, e.g. pgd.max_iter=40 (repeatable)")
    p.add_argument("--list-attacks", action="store_true", help="list the attack registry and exit")
    p.add_argument("--board", default=None,
                   help=f"board to evaluate on (default: the flashed one, normally {DEFAULT_BOARD})")
    p.add_argument("--backend", choices=BACKENDS, default="device",
                   help="where the int8 model runs: device (the board, default), native (the same "
                   "C engine built for the host) or reference (TFLite Micro; no chip)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, metavar="M.tflite",
                   help="the int8 model that was flashed (default: %(default)s)")
    p.add_argument("--float-model", type=Path, default=DEFAULT_FLOAT_MODEL, metavar="F.keras",
                   help="the float model attacks are crafted on (default: %(default)s)")
    p.add_argument("--dataset", type=Path, default=None, metavar="D.npz",
                   help="an .npz with x (NHWC) and y; default: the digits test split")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for attack randomness (default: 0)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                   help="results directory (default: results/)")
    p.add_argument("--run-id", default=None, help="subdirectory name (default: date-time-backend-seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="finish the interrupted run --out/RUN_ID from its results.sqlite (its options are "
                   "read back; giving a different one is an error); with --config: continue that study from "
                   "its checkpoint (same config), skipping the attacks it finished")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="run N emulator instances of the flashed board and share the inputs (default: 1; "
                   "results are identical)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="W",
                   help="requests in flight per device (protocol pipelining; default: %(default)s)")
    p.add_argument("--max-restarts", type=int, default=DEFAULT_MAX_RESTARTS, metavar="K",
                   help="emulator restarts after a failed device before the run stops (default: %(default)s)")
    p.add_argument("--no-pin", action="store_true",
                   help="let the OS place the emulators (default: each bound to one core, round-robin)")
    p.add_argument("--config", type=Path, default=None, metavar="STUDY.toml",
                   help="run a configured study (precisions × attacks × ε; docs/experiments.md) instead")
    p.add_argument("--quick", action="store_true", help="with --config: the config's [quick] overrides (fewer samples)")
    return p


def parse_eps(text: str) -> tuple[float, ...]:
    values: list[float] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise UserError(f"--eps: '{item}' is not a number", hint="e.g. --eps 0.05,0.1,0.2") from None
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--eps: {item} must be a positive finite number (input units, e.g. 0.1)")
        if value not in values:
            values.append(value)
    if not values:
        raise UserError("--eps: give at least one radius", hint="e.g. --eps 0.05,0.1,0.2")
    return tuple(values)


def parse_attacks(text: str) -> tuple[str, ...]:
    from host.attacks import attack_class

    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    if names == ["none"]:
        return ()
    if not names:
        raise UserError("--attacks: give at least one attack, or 'none' for clean accuracy only")
    for name in names:
        attack_class(name)  # UserError listing the registry
    return tuple(dict.fromkeys(names))


def parse_attack_params(items: Sequence[str], attacks: Sequence[str]) -> dict[str, dict[str, str]]:
    params: dict[str, dict[str, str]] = {}
    for item in items:
        match = re.fullmatch(r"\s*([\w-]+)\.(\w+)\s*=\s*(.+?)\s*", item)
        if not match:
            raise UserError(f"--attack-param '{item}': expected ATTACK.KEY=VALUE, e.g. pgd.max_iter=40")
        name, key, value = match.group(1).lower(), match.group(2), match.group(3)
        if name not in attacks:
            raise UserError(f"--attack-param '{item}': attack '{name}' is not in --attacks {','.join(attacks)}")
        if key in ("eps", "seed"):
            raise UserError(f"--attack-param '{item}': set {key} with --{key}")
        params.setdefault(name, {})[key] = value
    return params


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    attacks = parse_attacks(args.attacks)
    eps = parse_eps(args.eps)
    attack_params = parse_attack_params(args.attack_param, attacks)
    for name in attacks:  # bad params fail now, not after minutes of inference
        _make_attack(name, eps[0], args.seed, attack_params)
    if args.num is not None and args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}")
    if args.devices > 1 and args.backend != "device":
        raise UserError(f"--devices {args.devices} needs --backend device (the {args.backend} backend is "
                        "one host process)")
    if args.window < 1:
        raise UserError(f"--window must be at least 1, got {args.window}")
    if args.max_restarts < 0:
        raise UserError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    _check_model_path(args.model)
    if not args.float_model.is_file():
        raise UserError(
            f"float model not found: {args.float_model}",
            hint="pass --float-model PATH.keras (the float model the .tflite was converted from)",
        )
    return EvalConfig(
        model=args.model, float_model=args.float_model, board=args.board, backend=args.backend,
        num=args.num, eps=eps, attacks=attacks, attack_params=attack_params, seed=args.seed,
        dataset=args.dataset, progress=not args.no_progress, devices=args.devices, window=args.window,
        max_restarts=args.max_restarts, pin_cpus=not getattr(args, "no_pin", False),
    )


def _check_model_path(path: Path) -> None:
    if not path.exists():
        raise UserError(f"model file not found: {path}", hint="pass --model PATH.tflite (the flashed model)")
    if path.is_dir() or path.suffix != ".tflite":
        raise UserError(f"--model must be a .tflite file, got {path}", hint="the int8 model given to make flash")


def resolve_run_id(run_id: str | None, backend: str, seed: int) -> str:
    if run_id is None:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{backend}-seed{seed}"
    if not RUN_ID_PATTERN.match(run_id):
        raise UserError(
            f"--run-id '{run_id}' is not a plain name",
            hint="letters, digits, '.', '_' and '-' only (it names a directory under --out)",
        )
    return run_id


# ---------------------------------------------------------------- evaluation


def _make_attack(name: str, eps: float, seed: int, attack_params: dict[str, dict[str, str]]):  # noqa: ANN202
    from host.attacks import attack_class, get_attack

    takes_eps = any(p.name == "eps" for p in attack_class(name).params_spec)  # e.g. not the patch attack
    return get_attack(name, seed=seed, **attack_params.get(name, {}), **({"eps": eps} if takes_eps else {}))


def load_dataset(config: EvalConfig):  # noqa: ANN201
    from host.data import digits_test_set, load_npz_dataset

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
    from host.backends import ModelIO, ReferenceBackend

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
    from host import backends

    return backends.pin_firmware(model, config.board, into) if config.backend == "device" else None


def _evaluate_on(config, dataset, model, reference, chip, db, bar, firmware):  # noqa: ANN001, ANN202
    from host.attacks import load_float_model

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
    from host import backends
    from host.pool import BackendPool

    if config.backend == "device":
        import host.emulator  # noqa: F401  (in the main thread: it installs the SIGTERM handler)

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
        attack = _make_attack(attack_name, eps, config.seed, config.attack_params)
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


# ---------------------------------------------------------------- metrics


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


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_attacks:
        from host.attacks import describe_registry

        print(describe_registry())
        return 0
    if args.config is not None:
        return run_study(args, argv)
    if args.quick:
        raise UserError("--quick applies to --config studies only")
    this_argv = list(sys.argv[1:] if argv is None else argv)
    if args.resume is not None:
        return resume_run(args, this_argv)
    config = config_from_args(args)
    run_id = resolve_run_id(args.run_id, config.backend, config.seed)
    out_dir = args.out / run_id
    if (out_dir / DB_NAME).exists():
        raise UserError(f"run '{run_id}' already exists in {args.out}",
                        hint=f"continue it with --resume {run_id}, or choose another --run-id")
    created: list[ResultsDB] = []

    def create(chip_description: str) -> ResultsDB:
        db = ResultsDB.create(out_dir / DB_NAME, config_json(config), this_argv)
        db.lock()
        db.set_meta("chip", chip_description)
        created.append(db)
        return db

    return _run_and_report(config, create, created, run_id, args.out, this_argv)


def resume_run(args: argparse.Namespace, this_argv: list[str]) -> int:
    """--resume RUN_ID: the run's options come from its database; finish what is missing."""
    run_id = args.resume
    if not RUN_ID_PATTERN.match(run_id):
        raise UserError(f"--resume '{run_id}' is not a plain run id", hint="the name of a directory under --out")
    if args.run_id is not None and args.run_id != run_id:
        raise UserError(f"--run-id {args.run_id} conflicts with --resume {run_id}", hint="give only --resume")
    out_dir = args.out / run_id
    db = ResultsDB.open(out_dir / DB_NAME)
    if db.finished:
        raise UserError(f"--resume {run_id}: this run is already finished; its results are in {out_dir}/",
                        hint="nothing to resume; start a new run (another --run-id) to evaluate again")
    db.lock()
    config = resumed_config(args, this_argv, db.config)
    db.set_meta("sessions", str(int(db.meta("sessions", "1") or 1) + 1))
    done = db.count("chip")
    print(f"resuming run {run_id}: {done} chip inference(s) already in {db.path}", file=sys.stderr)
    return _run_and_report(config, db, [db], run_id, args.out, db.argv, resumed_argv=this_argv)


def _run_and_report(config: EvalConfig, db: ResultsDB | Callable[[str], ResultsDB], created: list[ResultsDB],
                    run_id: str, out: Path, argv: list[str], resumed_argv: list[str] | None = None) -> int:
    from host.report import print_summary, write_results

    try:
        document = evaluate(config, db)
    except (UserError, KeyboardInterrupt) as err:
        if created and not created[0].finished:
            kept = created[0].count("chip")
            resume = f"python -m host.evaluate --resume {run_id}" + (f" --out {out}" if out != RESULTS_DIR else "")
            note = f"{kept} chip inference(s) so far are kept in {created[0].path}; continue with: {resume}"
            if isinstance(err, UserError):
                err.hint = f"{err.hint}\n  {note}" if err.hint else note
            else:
                print(note, file=sys.stderr)
        raise
    db_final = created[0]
    out_dir = out / run_id
    document["run"].update({"id": run_id, "argv": argv})
    if resumed_argv is not None:
        document["run"]["resume_argv"] = resumed_argv
    paths = write_results(document, out_dir)
    db_final.set_meta("status", "finished")
    print_summary(document, paths)
    if not document["summary"]["bit_exact"]:
        raise UserError(
            f"the chip's outputs differ from the TFLite Micro reference in "
            f"{document['summary']['mismatched_inferences']} inference(s); details in {paths['report']}",
            exit_code=1,
        )
    return 0


# Options that decide which inferences a run makes: stored in its database, fixed on --resume.
WORK_OPTIONS = ("num", "eps", "attacks", "attack_param", "board", "backend", "model", "float_model", "dataset",
                "seed")


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


def _given_options(argv: list[str]) -> set[str]:
    """The options the user actually typed (argparse defaults suppressed)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def resumed_config(args: argparse.Namespace, argv: list[str], stored: dict[str, Any]) -> EvalConfig:
    """The stored run's config; an option given now that differs from it is an error."""
    def path(text: str | None) -> Path | None:
        return None if text is None else (Path(text) if Path(text).is_absolute() else ROOT / text)

    stored_args = {
        "num": stored["num"], "seed": stored["seed"], "board": stored["board"], "backend": stored["backend"],
        "eps": ",".join(repr(float(e)) for e in stored["eps"]),
        "attacks": ",".join(stored["attacks"]) or "none",
        "attack_param": [f"{a}.{k}={v}" for a, params in stored["attack_params"].items() for k, v in params.items()],
        "model": path(stored["model"]), "float_model": path(stored["float_model"]), "dataset": path(stored["dataset"]),
    }
    given = _given_options(argv) & set(WORK_OPTIONS)
    execution = {k: getattr(args, k) for k in ("devices", "window", "max_restarts", "no_progress", "no_pin")}
    candidate = argparse.Namespace(**{**stored_args, **{k: getattr(args, k) for k in given}}, **execution)
    try:
        config = config_from_args(candidate)
    except UserError as err:
        if not given:
            raise
        raise UserError(f"--resume {args.resume}: {', '.join('--' + k.replace('_', '-') for k in sorted(given))} "
                        f"conflict(s) with the run's options: {err.message}",
                        hint="a resumed run keeps its own options: drop them") from None
    now = config_json(config)

    def norm(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "board": d.get("board") or DEFAULT_BOARD}

    differ = [k for k in sorted(set(now) | set(stored)) if norm(now).get(k) != norm(stored).get(k)]
    if differ:
        files = [k for k in differ if k.endswith("_sha256")]
        options = [k for k in differ if not k.endswith("_sha256")]
        if options:
            detail = "; ".join(f"{k}: run has {stored.get(k)!r}, given {now.get(k)!r}" for k in options)
            raise UserError(f"--resume {args.resume}: options conflict with the run's ({detail})",
                            hint="a resumed run keeps its own options: drop them (only --devices, --window, "
                                 "--max-restarts, --no-progress and --out may be given)")
        raise UserError(f"--resume {args.resume}: file(s) changed since the run started: "
                        + ", ".join(k.removesuffix("_sha256") for k in files),
                        hint="restore them, or start a new run")
    if given:  # equal to the stored values: run with the stored spelling (same metrics document)
        config = config_from_args(argparse.Namespace(**stored_args, **execution))
    return config


def run_study(args: argparse.Namespace, argv: list[str] | None) -> int:
    from host.config import load_experiment
    from host.experiment import run_experiment
    from host.report import chip_mismatches, print_study, write_study
    from host.study_checkpoint import StudyCheckpoint

    experiment = load_experiment(args.config, quick=args.quick)
    if args.resume is not None:
        if args.run_id is not None and args.run_id != args.resume:
            raise UserError(f"--run-id {args.run_id} conflicts with --resume {args.resume}", hint="give only --resume")
        run_id = resolve_run_id(args.resume, "", 0)
    else:
        run_id = resolve_run_id(args.run_id, experiment.name + ("-quick" if args.quick else ""), experiment.seed)
    checkpoint = StudyCheckpoint.start(args.out / run_id / "checkpoint", experiment, resume=args.resume is not None)
    print(f"run {run_id}: each finished attack is kept in {checkpoint.directory}; if the run stops, continue it "
          f"with: python -m host.evaluate --config {args.config}{' --quick' if args.quick else ''} "
          f"--resume {run_id}" + (f" --out {args.out}" if args.out != RESULTS_DIR else ""), file=sys.stderr)
    document = run_experiment(experiment, progress=not args.no_progress, checkpoint=checkpoint)
    document["run"].update({"id": run_id, "argv": list(sys.argv[1:] if argv is None else argv)})
    paths = write_study(document, args.out / run_id)
    print_study(document, paths)
    mismatches = chip_mismatches(document)
    failed = [f"attack {f['attack']}" for f in document["summary"].get("failed_attacks", [])]
    failed += [f"defense {f['defense']}" for f in document["summary"].get("failed_defenses", [])]
    if failed:
        raise UserError(f"{len(failed)} part(s) of the study failed ({', '.join(failed)}); the other results are "
                        f"in {paths['report'].parent}", hint=f"continue it with --resume {run_id}", exit_code=1)
    if mismatches:
        raise UserError(f"the chip's outputs differ from the TFLite Micro reference in {mismatches} inference(s); "
                        f"details in {paths['report']}", exit_code=1)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

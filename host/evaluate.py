"""`python -m host.evaluate`: adversarial robustness of the flashed model, on the chip.

For clean inputs and every attack × ε, each input runs on (a) the float Keras
model, (b) the TFLite Micro reference with the int8-quantized input and (c) the
chip with the same int8 bytes.  Prints accuracies, attack/transfer success,
chip-vs-reference agreement and on-chip cost; writes results/<run-id>/.
See docs/evaluate.md for every option and the exact metric definitions.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.errors import UserError, run_cli
from host.paths import DEFAULT_BOARD, DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, RESULTS_DIR, ROOT

DEFAULT_EPS = (0.05, 0.1, 0.2)
DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_SEED = 0
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
    _check_model_path(args.model)
    if not args.float_model.is_file():
        raise UserError(
            f"float model not found: {args.float_model}",
            hint="pass --float-model PATH.keras (the float model the .tflite was converted from)",
        )
    return EvalConfig(
        model=args.model, float_model=args.float_model, board=args.board, backend=args.backend,
        num=args.num, eps=eps, attacks=attacks, attack_params=attack_params, seed=args.seed,
        dataset=args.dataset, progress=not args.no_progress,
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


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation; returns the metrics document (see host.report for the files)."""
    from host.attacks import load_float_model
    from host.backends import ModelIO, ReferenceBackend, open_backend

    model = ModelIO.from_bytes(config.model.read_bytes(), str(config.model))
    dataset = load_dataset(config)
    dataset.check_model_shape(model.input.shape, f"int8 model {config.model.name}")
    dataset.check_num_classes(int(np.prod(model.output.shape[1:])), f"int8 model {config.model.name}")
    reference = ReferenceBackend(model)
    started = time.time()
    # The board first: "not flashed" or "other model flashed" must fail before TensorFlow loads.
    with open_backend(config.backend, model, config.board) as chip:
        float_model = load_float_model(config.float_model, dataset.input_range)
        dataset.check_model_shape(float_model.input_shape, f"float model {config.float_model.name}")
        _make_deterministic(config.seed)
        runs = _run_all(config, dataset, model, float_model, reference, chip)
        retries = getattr(chip, "retries", None)
    document = _metrics_document(config, dataset, model, runs, chip.description, time.time() - started)
    document["run"]["link_retries"] = retries
    return document


def _make_deterministic(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _run_all(config, dataset, model, float_model, reference, chip) -> list[RunOutputs]:  # noqa: ANN001
    from tqdm import tqdm

    plan = [("clean", 0.0)] + [(a, e) for a in config.attacks for e in config.eps]
    bar = tqdm(total=len(plan) * len(dataset), unit="inf", desc="clean", file=sys.stderr,
               disable=not config.progress, dynamic_ncols=True)
    runs = []
    with bar:
        for attack_name, eps in plan:
            bar.set_description(f"{attack_name}" if attack_name == "clean" else f"{attack_name} ε={eps:g}")
            if attack_name == "clean":
                x_eval, params = dataset.x, {}
            else:
                attack = _make_attack(attack_name, eps, config.seed, config.attack_params)
                x_eval, params = attack.generate(float_model, dataset.x, dataset.y), dict(attack.params)
            runs.append(_run_one(attack_name, eps, params, dataset.x, x_eval, model, float_model,
                                 reference, chip, bar))
    return runs


def _run_one(attack, eps, params, x_clean, x_eval, model, float_model, reference, chip, bar) -> RunOutputs:  # noqa: ANN001
    float_pred = float_model.predict(x_eval).argmax(axis=1)
    x_q = model.input.quantize(x_eval)
    ref_bytes, chip_bytes, instructions, ticks = [], [], [], []
    for sample in x_q:
        ref_bytes.append(reference.run(sample).output)
        result = chip.run(sample)
        chip_bytes.append(result.output)
        if result.instructions is not None:
            instructions.append(int(result.instructions))
        if result.ticks is not None:
            ticks.append(int(result.ticks))
        bar.update(1)
    q_shift = np.abs(x_q.astype(np.int32) - model.input.quantize(x_clean).astype(np.int32))
    return RunOutputs(
        attack=attack, eps=eps, params=params, float_pred=float_pred,
        reference_pred=_argmax_bytes(ref_bytes, model.output.dtype),
        chip_pred=_argmax_bytes(chip_bytes, model.output.dtype),
        reference_bytes=ref_bytes, chip_bytes=chip_bytes, instructions=instructions, ticks=ticks,
        linf_float=float(np.max(np.abs(x_eval - x_clean))) if len(x_eval) else 0.0,
        linf_int8=float(q_shift.max() * model.input.scale) if q_shift.size else 0.0,
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
    import hashlib

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
    return "clean" if run.attack == "clean" else f"{run.attack}_eps{run.eps:g}"


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
    config = config_from_args(args)
    run_id = resolve_run_id(args.run_id, config.backend, config.seed)
    out_dir = args.out / run_id
    document = evaluate(config)

    from host.report import print_summary, write_results

    document["run"].update({"id": run_id, "argv": list(sys.argv[1:] if argv is None else argv)})
    paths = write_results(document, out_dir)
    print_summary(document, paths)
    if not document["summary"]["bit_exact"]:
        raise UserError(
            f"the chip's outputs differ from the TFLite Micro reference in "
            f"{document['summary']['mismatched_inferences']} inference(s); details in {paths['report']}",
            exit_code=1,
        )
    return 0


def run_study(args: argparse.Namespace, argv: list[str] | None) -> int:
    from host.config import load_experiment
    from host.experiment import run_experiment
    from host.report import print_study, write_study

    experiment = load_experiment(args.config, quick=args.quick)
    run_id = resolve_run_id(args.run_id, experiment.name + ("-quick" if args.quick else ""), experiment.seed)
    document = run_experiment(experiment, progress=not args.no_progress)
    document["run"].update({"id": run_id, "argv": list(sys.argv[1:] if argv is None else argv)})
    paths = write_study(document, args.out / run_id)
    print_study(document, paths)
    mismatches = document["summary"]["chip_mismatches"]
    failed = document["summary"].get("failed_attacks", [])
    if failed:
        raise UserError(f"{len(failed)} attack(s) failed ({', '.join(f['attack'] for f in failed)}); the other "
                        f"results are in {paths['report'].parent}", exit_code=1)
    if mismatches:
        raise UserError(f"the chip's outputs differ from the TFLite Micro reference in {mismatches} inference(s); "
                        f"details in {paths['report']}", exit_code=1)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

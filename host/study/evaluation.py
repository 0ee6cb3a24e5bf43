"""The flag run's view of a study (`python -m host.evaluate` without --config; docs/evaluate.md).

The flags describe a study like a config file does (one precision: the flashed model; its chip:
the flashed board, or the host's engine or TFLite Micro with --backend) and run through the same
runner, journal and report writer. This module adds to that study's document the fields the flag
run has always written (per evaluation: float/reference/chip accuracy, attack and transfer success,
chip-vs-reference agreement with the first mismatch, instructions and ticks, L∞ sizes; a `config`
and the bit-exact summary) and the arrays of predictions.npz, so its console table and metrics.json
keep their fields.

Imports: host.core, host.study.config.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from host.core.paths import ROOT
from host.study.config import FLOAT, Experiment

DEFAULT_EPS = (0.05, 0.1, 0.2)
DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_SEED = 0
DEFAULT_WINDOW = 4
DEFAULT_MAX_RESTARTS = 3


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


def add_flag_view(document: dict[str, Any], exp: Experiment, model: Any, y: np.ndarray, x: np.ndarray,
                  dataset: dict[str, Any]) -> None:
    """Add the flag run's fields to a study document (module docstring); `model` is the flashed
    model's host.backends.backend.ModelIO."""
    precision = exp.chip_precisions[0]
    runs = [_outputs(item, x_set, outcome, x, precision, model, document["evaluations"][i])
            for i, (item, x_set, outcome) in enumerate(document.pop("_sets"))]
    indices = np.arange(len(y))
    for evaluation, run in zip(document["evaluations"], runs, strict=True):
        evaluation.update(run_metrics(y[:len(run.float_pred)], runs[0], run, indices))
        cycles = evaluation.get("models", {}).get(f"chip:{precision}", {}).get("cycles_median")
        if cycles is not None:
            evaluation["cycles_median"] = cycles
    mismatched = sum(e["chip_reference_agreement"]["of"] - e["chip_reference_agreement"]["identical"]
                     for e in document["evaluations"])
    document["config"] = _config(exp, model, dataset, len(y))
    document["summary"].update({"bit_exact": mismatched == 0, "mismatched_inferences": mismatched,
                                "inferences": sum(e["n"] for e in document["evaluations"])})
    document["_predictions"] = {_key(r.attack, r.eps): r for r in runs}


def _outputs(item: Any, x_set: np.ndarray, outcome: Any, x: np.ndarray, precision: str, model: Any,
             evaluation: dict[str, Any]) -> RunOutputs:
    chip = f"chip:{precision}"
    n = len(x_set)
    q_shift = np.abs(model.input.quantize(x_set).astype(np.int32) - model.input.quantize(x[:n]).astype(np.int32))
    return RunOutputs(
        attack=evaluation["attack"], eps=float(evaluation["eps"] or 0.0), params=evaluation.get("params", {}),
        float_pred=outcome.preds[FLOAT], reference_pred=outcome.preds[precision], chip_pred=outcome.preds[chip],
        reference_bytes=outcome.raw[precision], chip_bytes=outcome.raw[chip],
        instructions=outcome.instructions.get(chip, []), ticks=outcome.ticks.get(chip, []),
        linf_float=float(np.max(np.abs(x_set - x[:n]))) if n else 0.0,
        linf_int8=float(q_shift.max() * model.input.scale) if q_shift.size else 0.0,
    )


def _rate(hits: np.ndarray, among: np.ndarray) -> dict[str, Any]:
    """Share of `among` (a mask) where `hits` holds; rate None when `among` is empty."""
    of = int(among.sum())
    count = int((hits & among).sum())
    return {"rate": count / of if of else None, "count": count, "of": of}


def run_metrics(y: np.ndarray, clean: RunOutputs, run: RunOutputs, indices: np.ndarray) -> dict[str, Any]:
    """Metrics of one evaluation; definitions in docs/evaluate.md."""
    n = len(y)
    float_ok_clean, chip_ok_clean = clean.float_pred[:n] == y, clean.chip_pred[:n] == y
    float_fooled, chip_fooled = run.float_pred != y, run.chip_pred != y
    is_attack = run.attack != "clean"
    both_ok_float_fooled = float_ok_clean & chip_ok_clean & float_fooled
    return {
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


def _config(exp: Experiment, model: Any, dataset: dict[str, Any], n: int) -> dict[str, Any]:
    precision = exp.chip_precisions[0]
    return {
        "model": display_path(exp.given[precision]),
        "model_sha256": model.sha256.hex(),
        "float_model": display_path(Path(exp.float_model)),
        "float_model_sha256": hashlib.sha256(Path(exp.float_model).read_bytes()).hexdigest(),
        "backend": exp.chip_backend,
        "chip": dataset.get("chip", ""),
        "board": dataset.get("board"),
        "dataset": dataset["name"],
        "dataset_meta": dataset.get("meta", {}),
        "num": n,
        "seed": exp.seed,
        "eps": sorted({e for a in exp.attacks for e in a.eps if e is not None}, key=lambda e: e),
        "attacks": list(dict.fromkeys(a.name for a in exp.attacks)),
        "input": _tensor_json(model.input),
        "output": _tensor_json(model.output),
        "input_range": list(exp.input_range),
    }


def _key(attack: str, eps: float) -> str:
    return "clean" if attack == "clean" else f"{attack}_eps{eps:g}"


def _tensor_json(info: Any) -> dict[str, Any]:
    return {"dtype": info.dtype, "shape": list(info.shape), "scale": info.scale, "zero_point": info.zero_point}


def display_path(path: Path) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)

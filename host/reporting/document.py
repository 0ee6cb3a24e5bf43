"""A run's metrics document read for display: model keys in order with their labels, attacks grouped with
their ε sweep, row labels, class names of the dataset, and the accuracy series (attack, ε, model) of either
schema.

Imports: host.core (paths), host.reporting.text (no HTML, no plots).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from host.core.paths import ROOT
from host.reporting.text import json_default

MODEL_ORDER = ("float32", "int16x8", "int8")


def as_json(document: dict[str, Any]) -> dict[str, Any]:
    """The document as metrics.json holds it (NumPy values to plain ones), so that a report rendered from the
    experiment's result and one regenerated from metrics.json are the same."""
    return json.loads(json.dumps({k: v for k, v in document.items() if not k.startswith("_")},
                                 default=json_default))


# ---------------------------------------------------------------- schema 2: a configured study


def model_keys(document: dict[str, Any]) -> list[str]:
    """Model keys of a study in display order: host precisions first, then the chips."""
    keys: list[str] = []
    for e in document["evaluations"]:
        keys += [k for k in e["models"] if k not in keys]

    return sorted(keys, key=model_order)


def model_order(key: str) -> tuple[bool, int, str]:
    """Sort key of a model key: host models before chips, float32, int16x8, int8, then the rest."""
    base = key.split(":", 1)[-1]
    return (key.startswith("chip:"), MODEL_ORDER.index(base) if base in MODEL_ORDER else 9, key)


def model_labels(document: dict[str, Any]) -> dict[str, str]:
    clean = document["evaluations"][0]["models"]
    full = max((m["n"] for m in clean.values()), default=0)
    return {k: k + ("" if m["n"] == full else f" (first {m['n']})") for k, m in clean.items()}


def attack_groups(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in document["evaluations"]:
        if e["attack"] != "clean":
            groups.setdefault(e["attack"], []).append(e)
    return groups


def norm_name(norm: str | None) -> str:
    return {"inf": "L∞", "2": "L2", "1": "L1", "0": "L0", "patch": "patch"}.get(str(norm), str(norm or "?"))


def row_label(e: dict[str, Any]) -> str:
    if e["attack"] == "clean":
        return "clean"
    if e.get("eps"):
        return f"{e['attack']} ε={e['eps']:g}"
    if e.get("norm") == "patch":
        return e["attack"]
    return f"{e['attack']} (min {norm_name(e.get('norm'))})"


def is_swept(evals: list[dict[str, Any]]) -> bool:
    """True when an attack's evaluations cover at least two ε (a sweep to plot against ε)."""
    return len({e["eps"] for e in evals if e.get("eps")}) >= 2


def input_range(document: dict[str, Any]) -> list[float]:
    return list(document["experiment"].get("dataset", {}).get("input_range", [0.0, 1.0]))


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def class_names(document: dict[str, Any], labels: Any = ()) -> list[str] | None:
    """Names of the dataset's classes for display, or None (show the label numbers, e.g. digits 0-9):
    experiment.dataset.class_names when the document has them, else a class_names array stored in the
    dataset .npz (path as given, or relative to the config's directory or the checkout), else the CIFAR-10
    names for a dataset path naming CIFAR-10 whose labels (those given) are 0..9."""
    ds = document.get("experiment", {}).get("dataset", {}) or {}
    given = ds.get("class_names")
    if isinstance(given, list) and given and all(isinstance(c, str) for c in given):
        return list(given)
    path = str(ds.get("path", ""))
    stored = _stored_class_names(path, str(document.get("experiment", {}).get("config", "")))
    if stored:
        return stored
    values = [int(v) for v in np.asarray(labels).ravel() if int(v) >= 0]
    if re.search(r"cifar[-_ ]?10(?!\d)", path.lower()) and all(v < len(CIFAR10_CLASSES) for v in values):
        return list(CIFAR10_CLASSES)
    return None


def _stored_class_names(path: str, config: str) -> list[str] | None:
    if not path.endswith(".npz") or path.startswith("builtin:"):
        return None
    candidates = [Path(path)] if Path(path).is_absolute() else [
        Path(config).parent / path, ROOT / Path(config).parent / path, ROOT / path, Path(path)]
    for candidate in candidates:
        try:
            if candidate.is_file():
                with np.load(candidate, allow_pickle=False) as npz:
                    if "class_names" in npz.files:
                        return [str(c) for c in npz["class_names"]]
                return None
        except (OSError, ValueError):
            return None
    return None


def label_text(label: int, names: list[str] | None) -> str:
    """A class label for display: its name when the dataset has names (and the label one of them), else the number."""
    return names[label] if names is not None and 0 <= label < len(names) else str(label)


# ---------------------------------------------------------------- accuracy series of either schema


def classic_series(document: dict[str, Any]) -> dict[tuple[str, float, str], tuple[float, int]]:
    """(attack, ε, model) -> (accuracy, n) of a schema-1 run, with schema-2 model names."""
    names = {"float_accuracy": "float32", "reference_accuracy": "int8", "chip_accuracy": "chip:int8"}
    out = {}
    for e in document["evaluations"]:
        for key, model in names.items():
            if e.get(key) is not None:
                out[(e["attack"], float(e["eps"] or 0.0), model)] = (float(e[key]), int(e.get("n", 0)))
    return out


def study_series(document: dict[str, Any]) -> dict[tuple[str, float, str], tuple[float, int]]:
    """(attack, ε, model) -> (accuracy, n) of a schema-2 study (ε 0 when the attack has none)."""
    return {(e["attack"], float(e["eps"] or 0.0), k): (float(m["accuracy"]), int(m["n"]))
            for e in document["evaluations"] for k, m in e["models"].items() if m.get("accuracy") is not None}


def accuracy_series(document: dict[str, Any]) -> dict[tuple[str, float, str], tuple[float, int]]:
    return study_series(document) if document.get("schema") == 2 else classic_series(document)

"""A run's metrics document read for display: model keys in order with their labels, attacks grouped with
their ε sweep, row labels, and the accuracy series (attack, ε, model) of either schema.

Imports: host.reporting.text only (no HTML, no plots).
"""

from __future__ import annotations

import json
from typing import Any

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

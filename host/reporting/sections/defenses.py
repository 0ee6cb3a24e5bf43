"""Defenses: accuracy per attack × ε with each defense beside the undefended model, and its stage on the chip.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import model_keys, model_labels, row_label
from host.reporting.html import esc, plot_or_note, table
from host.reporting.text import defended_model_label, defense_chip_rows, defense_rows

ANCHOR, TITLE = "defenses", "defenses"


def defense_series(document: dict[str, Any], model: str) -> tuple[list[str], dict[str, list[float | None]]]:
    """Accuracy of `model` per attack × ε (rows) and defense (series): none, each pre-processing
    defense (on the host model's inputs) and each adversarially trained model."""
    evaluations = document["evaluations"]
    series: dict[str, list[float | None]] = {"none": [e["models"].get(model, {}).get("accuracy") for e in evaluations]}
    for name in sorted({n for e in evaluations for n in e.get("defended", {})}):
        series[name] = [e.get("defended", {}).get(name, {}).get("models", {}).get(model, {}).get("accuracy")
                        for e in evaluations]
    for name, sub in document.get("defended_models", {}).items():
        trained = {(e["attack"], e["eps"]): e["models"].get(model, {}).get("accuracy") for e in sub["evaluations"]}
        series[defended_model_label(name, sub)] = [trained.get((e["attack"], e["eps"])) for e in evaluations]
    return [row_label(e) for e in evaluations], series


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    parts = [f'<h2 id="{ANCHOR}">Defenses</h2>']
    if not document.get("defended_models") and not any("defended" in e for e in document["evaluations"]):
        return "\n".join([*parts, '<p class="note">No defense in this study.</p>'])
    parts.append("<p>Accuracy with each defense next to the undefended model, on the same adversarial inputs. "
                 "Pre-processing defenses are applied to inputs crafted without them (non-adaptive attacks); "
                 "defended models (trained here, or given: the study's own) are attacked like the original, on the "
                 "host and on the chip.</p>")
    hosts = [k for k in model_keys(document) if not k.startswith(("chip:", "sim:"))]
    for model in [k for k in ("int8", "int16x8", "float32") if k in hosts][:2] or hosts[:1]:
        groups, series = defense_series(document, model)
        parts.append(f"<h3>{esc(model_labels(document).get(model, model))}</h3>")
        parts.append(plot_or_note(lambda g=groups, s=series, m=model: plots.grouped_bars(g, s, f"accuracy ({m})"),
                                  f"defense comparison, {model}"))
    header, rows = defense_rows(document)
    parts += ["<h3>Table</h3>", table(header, rows, numeric=range(3, len(header)))]
    chip_header, chip_rows = defense_chip_rows(document)
    if chip_rows:
        parts += ["<h3>Pre-processing on the chip</h3>",
                  "<p>The firmware's pre-processing stage ran on the chip; its output is compared with the TFLite "
                  "Micro reference on the host's integer pre-processing of the same bytes. Instructions are "
                  "medians per inference.</p>",
                  table(chip_header, chip_rows, numeric=range(4, len(chip_header)))]
    return "\n".join(parts)

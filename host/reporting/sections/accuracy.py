"""Accuracy under attack: accuracy vs ε per swept attack, bars for attacks without a sweep, and the table.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import (
    attack_groups,
    input_range,
    is_swept,
    model_keys,
    model_labels,
    norm_name,
    row_label,
)
from host.reporting.html import plot_or_note, table
from host.reporting.text import study_rows

ANCHOR, TITLE = "accuracy", "accuracy"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    keys = [k for k in model_keys(document) if not k.startswith("sim:")]  # their own section
    labels = model_labels(document)
    clean = {k: m["accuracy"] for k, m in document["evaluations"][0]["models"].items()}
    lo, hi = input_range(document)
    groups = attack_groups(document)
    swept = {a: evals for a, evals in groups.items() if is_swept(evals)}
    single = [e for a, evals in groups.items() if a not in swept for e in evals]
    parts = [f'<h2 id="{ANCHOR}">Accuracy under attack</h2>',
             "<p>Share of the inputs each model classifies correctly, per attack and ε (the attack's radius in "
             f"input units; inputs in [{lo:g}, {hi:g}]). White-box attacks are crafted on the float32 model; "
             "every precision then sees the same inputs, quantized with its own input scale. Dashed/hatched: "
             "the chip (on its first inputs only).</p>"]
    if swept:
        panels = []
        for attack, evals in swept.items():
            series = {k: [(e["eps"], e["models"][k]["accuracy"]) for e in evals if e.get("eps") and k in e["models"]]
                      for k in keys}
            first = evals[0]
            n = max(m["n"] for m in first["models"].values())
            panels.append((f"{attack} ({first.get('threat_model', '')}, n={n})",
                           f"ε ({norm_name(first.get('norm'))} radius, input units)",
                           {k: v for k, v in series.items() if v}))
        parts.append(plot_or_note(lambda: plots.accuracy_sweeps(panels, clean, labels), "accuracy vs epsilon"))
    if single:
        rows = [document["evaluations"][0], *single]
        groups_labels = [row_label(e) + f" (n={max(m['n'] for m in e['models'].values())})" for e in rows]
        series = {k: [e["models"].get(k, {}).get("accuracy") for e in rows] for k in keys}
        parts += ["<h3>Attacks without an ε sweep</h3>",
                  "<p>Single-ε attacks and minimal-perturbation attacks (budget as ε, or none), with clean accuracy "
                  "for reference.</p>",
                  plot_or_note(lambda: plots.grouped_bars(groups_labels, series, "accuracy", labels=labels),
                               "accuracy of attacks without a sweep")]
    header, rows = study_rows(document)
    parts += ["<h3>Table</h3>", table(header, rows, numeric=range(2, len(header)))]
    return "\n".join(parts)

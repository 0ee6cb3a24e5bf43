"""Bit-widths and targeted attacks: host-simulated widths beside the deployed precisions, targeted success.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import attack_groups, is_swept, model_keys, model_labels, norm_name, row_label
from host.reporting.html import plot_or_note, table
from host.reporting.text import bitwidth_rows, targeted_models, targeted_rows

ANCHOR, TITLE = "bitwidth", "bit-widths"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    """The host-simulated bit-widths next to the deployed precisions, and targeted success (the patch)."""
    parts = [f'<h2 id="{ANCHOR}">Bit-widths and targeted attacks</h2>']
    has_sims = any(k.startswith("sim:") for k in document["evaluations"][0]["models"])
    t_header, t_rows = targeted_rows(document)
    if not has_sims and not t_rows:
        return "\n".join([*parts, '<p class="note">No bit-width sweep and no targeted attack in this study.</p>'])
    if has_sims:
        header, rows = bitwidth_rows(document)
        parts += ["<p>Host-simulated models beyond what TFLite deploys: wN quantizes every kernel to N bits "
                  "(symmetric, per output channel), wNaN also every tensor a deployed network holds (the outputs "
                  "of its fused operators); float32 and the deployed "
                  "precisions for reference. Dotted lines: clean accuracy.</p>"]
        panels = bitwidth_panels(document)
        if panels:
            clean = {k: m["accuracy"] for k, m in document["evaluations"][0]["models"].items()}
            parts.append(plot_or_note(lambda: plots.accuracy_sweeps(panels, clean, model_labels(document)),
                                      "accuracy vs epsilon per bit-width"))
        parts.append(table(header, rows, numeric=range(2, len(header))))
    if t_rows:
        keys = targeted_models(document)
        targeted = [e for e in document["evaluations"] if "target_class" in e]
        groups = [f"{row_label(e)} → class {e['target_class']}" for e in targeted]
        series = {k: [e["models"].get(k, {}).get("targeted_success", {}).get("rate") for e in targeted]
                  for k in keys}
        parts += ["<h3>Targeted success</h3>",
                  "<p>Share of the inputs not of the target class that each model puts in the target class "
                  "(the patch is trained once on the float model).</p>",
                  plot_or_note(lambda: plots.grouped_bars(groups, series, "targeted success",
                                                          labels=model_labels(document)), "targeted success"),
                  table(t_header, t_rows, numeric=range(3, len(t_header)))]
    return "\n".join(parts)


def bitwidth_panels(document: dict[str, Any]) -> list[tuple[str, str, dict[str, list[tuple[float, float]]]]]:
    """Accuracy-vs-ε panels of every swept attack: weights-only widths, then weights + activations,
    each beside float32 and the deployed precisions."""
    keys = model_keys(document)
    deployed = [k for k in keys if not k.startswith(("sim:", "chip:"))]
    widths = {k: w for k in keys if (w := plots.simulated_width(k)) is not None}
    panels = []
    for attack, evals in attack_groups(document).items():
        if not is_swept(evals):
            continue
        for title, with_activations in (("weights", False), ("weights + activations", True)):
            chosen = deployed + [k for k, (_, activations) in widths.items() if activations == with_activations]
            if len(chosen) == len(deployed):
                continue
            series = {k: [(e["eps"], e["models"][k]["accuracy"]) for e in evals if e.get("eps") and k in e["models"]]
                      for k in chosen}
            panels.append((f"{attack}: {title} at N bits", f"ε ({norm_name(evals[0].get('norm'))} radius, input units)",
                           {k: v for k, v in series.items() if v}))
    return panels

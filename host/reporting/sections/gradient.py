"""Gradient misalignment: cosine of the float gradient with finite differences on each quantized model.

Imports: host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.html import plot_or_note, table
from host.reporting.text import fmt

ANCHOR, TITLE = "gradient", "gradient misalignment"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    gm = document.get("gradient_misalignment", {})
    rows = [[p, fmt(v.get("mean"), ".3f"), fmt(v.get("zero_density"), ".3f"),
             f"{v.get('undefined', '–')}/{v.get('samples', len(v.get('cosine', [])))}", v.get("queries", "–"),
             v.get("fd", "")] for p, v in gm.items()]
    parts = [f'<h2 id="{ANCHOR}">Gradient misalignment</h2>',
             "<p>Cosine between the float32 model's input gradient of the true-class score (what white-box attacks "
             "follow) and a finite-difference estimate of the same gradient on each quantized model (1: aligned, "
             "0: orthogonal). Undefined when the estimate is all zero — the quantized model is flat at that step; "
             "<em>zero density</em> is the share of exactly-zero components of the estimates (gradient masking "
             "by quantization).</p>",
             table(["precision", "mean cosine", "zero density", "undefined", "oracle queries", "estimator"], rows,
                   numeric=(1, 2, 3, 4)) if rows else '<p class="note">not measured</p>']
    cosines = {p: list(v["cosine"]) for p, v in gm.items() if len(v.get("cosine") or ()) > 0}
    if cosines:
        parts.append(plot_or_note(lambda: plots.cosine_strips(cosines), "gradient cosines"))
    return "\n".join(parts)

"""Gradient misalignment: cosine of the float gradient with finite differences on each quantized model, beside
the same estimator on the float32 model itself (the "float32 (FD baseline)" entry), the reference to read them by.

Imports: host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.html import plot_or_note, table
from host.reporting.text import FD_BASELINE, fmt, gradient_rows

ANCHOR, TITLE = "gradient", "gradient misalignment"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    gm = document.get("gradient_misalignment", {})
    baseline = gm.get(FD_BASELINE, {}).get("mean")
    rows = [[label, fmt(v.get("mean"), ".3f"), fmt(None if baseline is None or v.get("mean") is None or p == FD_BASELINE
                                                   else v["mean"] - baseline, "+.3f"),
             fmt(v.get("zero_density"), ".3f"),
             f"{v.get('undefined', '–')}/{v.get('samples', len(v.get('cosine', [])))}", v.get("queries", "–"),
             v.get("fd", "")] for p, label, v in gradient_rows(gm)]
    parts = [f'<h2 id="{ANCHOR}">Gradient misalignment</h2>',
             "<p>Cosine between the float32 model's input gradient of the true-class score (what white-box attacks "
             "follow) and a finite-difference estimate of the same gradient on each quantized model (1: aligned, "
             "0: orthogonal). Undefined when the estimate is all zero — the quantized model is flat at that step; "
             "<em>zero density</em> is the share of exactly-zero components of the estimates (gradient masking "
             "by quantization).</p>",
             "<p>The estimate sees only a few random directions, so even an exact model gives a cosine well below 1: "
             "the <b>float32 baseline</b> row is the same estimator on the float32 model itself. Read each quantized "
             "model's cosine against it (<em>vs baseline</em>: its mean minus the baseline's); only a drop below "
             "the baseline is misalignment due to quantization.</p>" if baseline is not None else
             '<p class="note">No float32 baseline in this run (it predates it): the cosines below have no '
             "reference point; the random-direction estimator alone keeps them well below 1.</p>",
             table(["model", "mean cosine", "vs baseline", "zero density", "undefined", "oracle queries", "estimator"],
                   rows, numeric=(1, 2, 3, 4, 5)) if rows else '<p class="note">not measured</p>']
    cosines = {label: list(v["cosine"]) for _, label, v in gradient_rows(gm) if len(v.get("cosine") or ()) > 0}
    if cosines:
        parts.append(plot_or_note(lambda: plots.cosine_strips(cosines, baseline=baseline), "gradient cosines"))
    return "\n".join(parts)

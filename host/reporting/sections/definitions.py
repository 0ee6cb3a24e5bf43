"""Definitions: one line per metric, each with its section of docs/metrics.md (named as text, not linked:
the report is one self-contained file).

Imports: host.reporting.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting.html import doc_ref, esc

ANCHOR, TITLE = "definitions", "definitions"
METRICS_DOC = "docs/metrics.md"      # in the slingshot repository
REPORT_DOC = "docs/report.md"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    items = [
        ("accuracy", "share of the n inputs whose predicted label equals the true label", None),
        ("attack success", "among inputs the model classifies correctly when clean, the share it misclassifies "
                           "under attack", "Attack success rate"),
        ("transfer rate S → T", "among inputs S and T both classify correctly when clean and whose adversarial "
                                "version fools S, the share that also fools T", "Transfer rate (source → target)"),
        ("perturbation size", "L0/L1/L2/L∞ norm of x_adv − x per input; mean and max", "Perturbation size"),
        ("quantization shift", "shift, attenuation and amplification, as shares of the attacked inputs",
         "Quantization shift"),
        ("distance to the decision boundary", "mean minimal measured perturbation that fools the model over the ε "
                                              "sweep", "Distance to the decision boundary"),
        ("gradient misalignment", "cosine between the float gradient and finite differences on the quantized "
                                  "model", "Gradient misalignment"),
        ("zero density", "share of exactly-zero components of the finite-difference gradients", "Zero density"),
        ("chip = reference", "inferences whose output bytes on the chip equal the TFLite Micro reference's", None),
    ]
    body = "".join(f"<dt>{esc(name)}</dt><dd>{esc(text)}" + (f" — {doc_ref(METRICS_DOC, h)}" if h else "") + "</dd>"
                   for name, text, h in items)
    return "\n".join([f'<h2 id="{ANCHOR}">Definitions</h2>', f"<dl>{body}</dl>",
                      f'<p class="note">Full definitions and formulas: {doc_ref(METRICS_DOC)}; this report: '
                      f"{doc_ref(REPORT_DOC)} (in the slingshot repository).</p>"])

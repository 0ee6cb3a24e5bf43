"""report.html of a `python -m host.evaluate` run (metrics.json schema 1): its report.md as HTML with an
accuracy-vs-ε plot (float, int8 reference, chip).

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import as_json, classic_series
from host.reporting.html import markdown_to_html, page, plot_or_note
from host.reporting.text import render_markdown


def render_classic_html(document: dict[str, Any], out_dir: Path | None = None) -> str:
    """report.html of a `python -m host.evaluate` run (schema 1): its report.md as HTML plus a plot."""
    document = as_json(document)
    body = markdown_to_html(render_markdown(document))
    series = classic_series(document)
    clean = {m: acc for (a, _, m), (acc, _) in series.items() if a == "clean"}
    panels = []
    for attack in dict.fromkeys(a for a, _, _ in series if a != "clean"):
        per = {m: [(e, acc) for (a, e, mm), (acc, _) in series.items() if a == attack and mm == m]
               for m in ("float32", "int8", "chip:int8")}
        panels.append((attack, "ε (L∞ radius, input units)", {m: v for m, v in per.items() if v}))
    labels = {"float32": "float (host)", "int8": "int8 reference (TFLite Micro)", "chip:int8": "int8 on chip"}
    plot = ""
    if panels:
        plot = "<h2>Accuracy vs ε</h2>\n" + plot_or_note(lambda: plots.accuracy_sweeps(panels, clean, labels),
                                                          "accuracy vs epsilon")
    marker = "<h2>Attacks</h2>"
    body = body.replace(marker, plot + "\n" + marker, 1) if marker in body else body + plot
    return page(f"Robustness evaluation {document.get('run', {}).get('id', '')}", [body])

"""Transfer float32 → int16x8 → int8: transfer rate per attack × ε and ordered model pair, heat map and table.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from host.reporting import plots
from host.reporting.document import row_label
from host.reporting.html import plot_or_note, table
from host.reporting.text import eps_text, rate_text

ANCHOR, TITLE = "transfer", "transfer"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    evals = document["evaluations"][1:]
    parts = [f'<h2 id="{ANCHOR}">Transfer float32 → int16x8 → int8</h2>',
             "<p>Among inputs both models classify correctly when clean and whose adversarial version fools the "
             "source model, the share that also fools the target. Grey: undefined (no such input).</p>"]
    if not evals:
        return "\n".join([*parts, '<p class="note">no attacks</p>'])
    pairs: list[str] = []
    for e in evals:
        pairs += [p for p in e["transfer"] if p not in pairs]
    rows = [row_label(e) for e in evals]
    rates = np.array([[np.nan if e["transfer"].get(p, {}).get("rate") is None else e["transfer"][p]["rate"]
                       for p in pairs] for e in evals], dtype=float)
    notes = [[f"{e['transfer'][p]['count']}/{e['transfer'][p]['of']}" if p in e["transfer"] else "" for p in pairs]
             for e in evals]
    columns = [p.replace("->", " → ") for p in pairs]
    if pairs:
        parts.append(plot_or_note(lambda: plots.heatmap(rows, columns, rates, notes, "transfer rate (source → target)",
                                                        "transfer rate"), "transfer heat map"))
    parts.append(table(["attack", "ε", *columns], [[e["attack"], eps_text(e["eps"]),
                                                   *[rate_text(e["transfer"].get(p)) for p in pairs]] for e in evals],
                       numeric=range(2, 2 + len(pairs))))
    return "\n".join(parts)

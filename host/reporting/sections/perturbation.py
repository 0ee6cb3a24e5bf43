"""Perturbation size: mean and max L0/L1/L2/L∞ norm of x_adv − x per attack × ε, per-input histograms, table.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import row_label
from host.reporting.html import plot_or_note, table
from host.reporting.text import eps_text, fmt

ANCHOR, TITLE = "perturbation", "perturbation"
HISTOGRAM_BINS_TEXT = "log-spaced bins from the smallest to the largest non-zero value"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    evals = document["evaluations"][1:]
    norms = [n for n in ("l0", "l1", "l2", "linf") if any(n in e["perturbation"] for e in evals)]
    parts = [f'<h2 id="{ANCHOR}">Perturbation size</h2>',
             "<p>Norms of x<sub>adv</sub> − x per input, as crafted (float, before quantization): mean (bar) "
             "and max (tick) over the attacked inputs. L0 counts changed components; L1, L2, L∞ are in input "
             "units.</p>"]
    if not evals or not norms:
        return "\n".join([*parts, '<p class="note">no perturbation norms</p>'])
    rows = [row_label(e) for e in evals]
    data = {n: ([e["perturbation"].get(n, {}).get("mean") for e in evals],
                [e["perturbation"].get(n, {}).get("max") for e in evals]) for n in norms}
    parts.append(plot_or_note(lambda: plots.norm_bars(rows, data), "perturbation norms"))
    t_rows = [[e["attack"], eps_text(e["eps"]),
               *[f"{fmt(e['perturbation'].get(n, {}).get('mean'))} / {fmt(e['perturbation'].get(n, {}).get('max'))}"
                 for n in norms]] for e in evals]
    parts.append(table(["attack", "ε", *[f"{plots.NORM_LABELS[n].split()[0]} mean / max" for n in norms]], t_rows,
                       numeric=range(2, 2 + len(norms))))
    histograms = {n: [e["perturbation"].get(n, {}).get("histogram") for e in evals] for n in norms}
    if any(h for per_row in histograms.values() for h in per_row):
        parts += ["<h3>Distribution over the inputs</h3>",
                  f"<p>Histogram of each input's perturbation ({HISTOGRAM_BINS_TEXT}), one ridge per attack "
                  "and ε, each scaled to its tallest bin; <em>k unchanged</em>: inputs the attack left as they "
                  "were (norm 0).</p>",
                  plot_or_note(lambda: plots.norm_histograms(rows, histograms), "perturbation histograms")]
    else:
        parts.append('<p class="note">No per-input histograms: this run predates them (metrics.json kept '
                     "mean and max only); the gallery shows individual perturbations.</p>")
    return "\n".join(parts)

"""Quantization shift: per quantized precision, shift, attenuation and amplification per attack × ε.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import row_label
from host.reporting.html import plot_or_note, table
from host.reporting.text import eps_text, rate_text

ANCHOR, TITLE = "shift", "quantization shift"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    evals = document["evaluations"][1:]
    parts = [f'<h2 id="{ANCHOR}">Quantization shift</h2>',
             "<p>On the same adversarial inputs, compare the float32 label with the quantized model's label, as a "
             "share of the attacked inputs. <b>Attenuation</b>: float32 fooled, quantized model correct "
             "(quantization masks the attack). <b>Amplification</b>: quantized model fooled, float32 correct. "
             "<b>Shift</b> (grey): the labels differ at all.</p>"]
    precisions: list[str] = []
    for e in evals:
        precisions += [p for p in e["quantization_shift"] if p not in precisions]
    if not evals or not precisions:
        return "\n".join([*parts, '<p class="note">no quantized precision</p>'])
    rows = [row_label(e) for e in evals]
    panels = {p: {key: [e["quantization_shift"].get(p, {}).get(key, {}).get("rate") for e in evals]
                  for key in ("shift", "attenuation", "amplification")} for p in precisions}
    parts.append(plot_or_note(lambda: plots.shift_bars(rows, panels), "quantization shift"))
    t_rows = [[e["attack"], eps_text(e["eps"]), p, *[rate_text(v.get(key)) for key in
                                                     ("shift", "attenuation", "amplification")]]
              for e in evals for p, v in e["quantization_shift"].items()]
    parts.append(table(["attack", "ε", "precision", "shift", "attenuation", "amplification"], t_rows,
                       numeric=(3, 4, 5)))
    return "\n".join(parts)

"""On-chip vs host reference: identical outputs and median instructions per attack × ε and chip precision.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting import plots
from host.reporting.document import model_keys
from host.reporting.html import Raw, esc, plot_or_note, table
from host.reporting.text import eps_text, fmt

ANCHOR, TITLE = "chip", "chip vs host"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    chips = [k for k in model_keys(document) if k.startswith("chip:")]
    parts = [f'<h2 id="{ANCHOR}">On-chip vs host reference</h2>']
    if not chips:
        return "\n".join([*parts, '<p class="note">No precision ran on a chip in this study.</p>'])
    parts.append("<p>Every input the chip ran was also run by the TFLite Micro reference interpreter on the host, "
                 "with identical input bytes; <em>identical</em> counts inferences whose output bytes are equal "
                 "(must be all). Instructions: median retired instructions per on-chip inference (QEMU counts "
                 "instructions, not cycles).</p>")
    header = ["attack", "ε"]
    for k in chips:
        header += [f"{k} identical", f"{k} instr/inference"]
    rows = []
    for e in document["evaluations"]:
        row: list[Any] = [e["attack"], eps_text(e["eps"])]
        for k in chips:
            m = e["models"].get(k)
            agreement = (m or {}).get("reference_agreement")
            if agreement:
                bad = agreement["identical"] != agreement["of"]
                first = agreement.get("first_mismatch")
                text = f"{agreement['identical']}/{agreement['of']}" + ("" if first is None else
                                                                         f" (first mismatch: sample {first})")
                row.append(Raw(esc(text), ["bad"] if bad else []))
            else:
                row.append("–")
            row.append(fmt((m or {}).get("instructions_median"), ",.0f"))
        rows.append(row)
    parts.append(table(header, rows, numeric=range(2, len(header))))
    clean = document["evaluations"][0]["models"]
    cost = {k: clean[k]["instructions_median"] for k in chips if clean.get(k, {}).get("instructions_median")}
    if cost:
        parts.append(plot_or_note(lambda: plots.value_bars(list(cost), list(cost.values()),
                                                           "median instructions per inference (clean inputs)"),
                                  "instructions per inference"))
    return "\n".join(parts)

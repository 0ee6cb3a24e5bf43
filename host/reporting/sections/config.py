"""Configuration section: the study, run, models, dataset, chip and attacks, and the chip-vs-reference verdict.

Imports: host.reporting.html, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting.html import esc, table
from host.reporting.text import agreement_text, chip_agreement, fmt, wall_time

ANCHOR, TITLE = "config", "configuration"


def _chip_verdict(what: str, same: int, of: int) -> str:
    return (f'<p class="{"ok" if same == of else "fail"}">'
            f'{esc(what.replace("reference", "TFLite Micro reference", 1))}: {agreement_text(same, of)}</p>')


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    exp, run = document["experiment"], document.get("run", {})
    ds, chip = exp["dataset"], exp["chip"]
    rows: list[list[Any]] = [
        ["study", f"{exp['name']} (config {exp['config']}, seed {exp['seed']})"],
        ["run", f"{run.get('id', '')}: {wall_time(run)} wall time; argv "
                f"{' '.join(run.get('argv', []))}"],
        ["float model", exp["float_model"]],
    ]
    for p, v in exp["precisions"].items():
        q = v.get("input", {})
        rows.append([p, f"sha256 {v['sha256'][:16]}… ({v['origin']}); input scale {fmt(q.get('scale'), '.6g')}, "
                        f"zero point {q.get('zero_point', '–')}"])
    rows += [
        ["dataset", f"{ds['path']} from {ds['start']}, {ds['num']} samples, input range {ds['input_range']}"],
        ["chip", f"{chip['board'] or 'none'} running {', '.join(chip['precisions']) or '–'} on the first "
                 f"{chip['num']} inputs of every set" if chip["board"] else "none (host reference only)"],
    ]
    verdict = "\n".join(_chip_verdict(what, same, of) for what, same, of in chip_agreement(document))
    a_rows = [[a["name"], ", ".join(f"{e:g}" for e in a["eps"] if e is not None) or "– (minimal perturbation)",
               ", ".join(f"{k}={v}" for k, v in a["params"].items()) or "defaults"] for a in exp["attacks"]]
    return "\n".join([f'<h2 id="{ANCHOR}">Configuration</h2>', verdict, table(["", "value"], rows),
                      "<h3>Attacks</h3>", table(["attack", "ε", "parameters (config)"], a_rows)])

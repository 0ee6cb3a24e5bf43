"""Distance to the decision boundary: per attack and model, the mean minimal successful perturbation.

Imports: host.reporting.document, host.reporting.html, host.reporting.text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting.document import attack_groups, norm_name
from host.reporting.html import table
from host.reporting.text import fmt

ANCHOR, TITLE = "boundary", "boundary distance"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    norms = {a: evals[0].get("norm") for a, evals in attack_groups(document).items()}
    rows = []
    for attack, per in document.get("boundary_distance", {}).items():
        for key, v in per.items():
            rows.append([attack, norm_name(norms.get(attack)), key, fmt(v.get("mean")), v.get("found", "–"),
                         v.get("unbroken", "–")])
    return "\n".join([
        f'<h2 id="{ANCHOR}">Distance to the decision boundary</h2>',
        "<p>Per input, the smallest <em>measured</em> perturbation (in the attack's norm) among the ε of the sweep "
        "that changes the model's label; the mean is over inputs the sweep fooled (<em>found</em>). "
        "<em>unbroken</em> inputs were never fooled: their distance exceeds the largest ε, so the mean is biased "
        "low when unbroken &gt; 0. One ε only gives a coarse bound.</p>",
        table(["attack", "norm", "model", "mean distance", "found", "unbroken"], rows, numeric=(3, 4, 5))
        if rows else '<p class="note">none</p>'])

"""Gallery: from the run's gallery.npz, per attack and ε the first inputs, clean, adversarial and difference,
with every model's prediction (class names where the dataset has them: CIFAR-10's airplane..truck).

Imports: host.core, host.study.gallery (the file format), host.reporting.document, host.reporting.html,
host.reporting.plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.reporting import plots
from host.reporting.document import class_names, label_text, model_order
from host.reporting.html import Raw, esc, img_tag, plot_or_note, table
from host.study.gallery import GALLERY_FILE, load_gallery

ANCHOR, TITLE = "gallery", "gallery"


def render(document: dict[str, Any], out_dir: Path | None) -> str:
    parts = [f'<h2 id="{ANCHOR}">Gallery</h2>']
    path = None if out_dir is None else out_dir / GALLERY_FILE
    if path is None or not path.exists():
        return "\n".join([*parts, f'<p class="note">No {GALLERY_FILE} in this run: the experiment did not save '
                                  "example images (format in docs/report.md), so there is nothing to show.</p>"])
    if not plots.available():
        return "\n".join([*parts, plot_or_note(lambda: b"", "")])
    try:
        g = load_gallery(path)
    except UserError as err:
        return "\n".join([*parts, f'<p class="note">{esc(err)}</p>'])
    models = [str(m) for m in g["models"]]
    columns = sorted(range(len(models)), key=lambda j: model_order(models[j]))      # host models, then chips
    input_range = g["input_range"]
    names = class_names(document, g["y"])
    parts.append("<p>The first inputs of the dataset: clean, adversarial, and the difference x<sub>adv</sub> − x "
                 "scaled to its own largest component (|δ|∞ given; red +, blue − for one channel, mid-grey = 0 for "
                 "colour). Predictions: clean → adversarial; <span class=\"wrong\">red</span> = wrong; – = not run "
                 "on this input.</p>")
    clean_png = [plots.image_png(img, input_range) for img in g["x_clean"]]
    by_attack: dict[str, list[int]] = {}
    for i, a in enumerate(g["attack"]):
        by_attack.setdefault(str(a), []).append(i)
    for n, (attack, indices) in enumerate(by_attack.items()):
        parts.append(f"<details{' open' if n == 0 else ''}><summary>{esc(attack)} "
                     f"({len(indices)} ε)</summary>")
        for i in indices:
            eps = g["eps"][i]
            parts.append(f"<h3>{esc(attack)} {'ε=' + format(eps, 'g') if np.isfinite(eps) else '(no ε)'}</h3>")
            rows = []
            for s in range(len(g["x_clean"])):
                adv = g["x_adv"][i, s]
                if not np.all(np.isfinite(adv)):
                    continue
                diff, peak = plots.difference_png(adv - g["x_clean"][s])
                y = int(g["y"][s])
                cells: list[Any] = [str(s), label_text(y, names), Raw(img_tag(clean_png[s], f"clean {s}", "sample")),
                                    Raw(img_tag(plots.image_png(adv, input_range), f"adversarial {s}", "sample")),
                                    Raw(img_tag(diff, f"difference {s}", "sample") + f"<br>|δ|∞ = {peak:.3g}")]
                for j in columns:
                    cells.append(Raw(_pred_html(int(g["pred_clean"][j, s]), y, names) + " → "
                                     + _pred_html(int(g["pred"][i, j, s]), y, names)))
                rows.append(cells)
            header = ["#", "label", "clean", "adversarial", "difference", *[models[j] for j in columns]]
            parts.append(table(header, rows)
                         if rows else '<p class="note">no attacked inputs among the first ones</p>')
        parts.append("</details>")
    return "\n".join(parts)


def _pred_html(pred: int, label: int, names: list[str] | None) -> str:
    if pred < 0:
        return "–"
    text = esc(label_text(pred, names))
    return f'<span class="wrong">{text}</span>' if pred != label else text

"""The study report (report.html of a configured study, metrics.json schema 2): SECTIONS, its sections in page
order, and render_study_html, which puts them on one page behind a navigation bar.

Every section is a module here with ANCHOR (its id on the page), TITLE (its link in the navigation bar) and
render(document, out_dir) -> str (the section's HTML; out_dir is where the report goes: gallery.npz, doc links).
A section module imports host.core, host.study.gallery and host.reporting.{text, document, html, plots}, never
this package (nor another section) and never host.study's runner or a command module.

Imports: host.reporting.document, host.reporting.html and the section modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.reporting.document import as_json
from host.reporting.html import esc, page
from host.reporting.sections import (
    accuracy,
    bitwidth,
    boundary,
    chip,
    config,
    defenses,
    definitions,
    gallery,
    gradient,
    perturbation,
    shift,
    transfer,
)

SECTIONS = (config, accuracy, transfer, perturbation, chip, defenses, shift, bitwidth, boundary, gradient, gallery,
            definitions)


def render_study_html(document: dict[str, Any], out_dir: Path | None = None) -> str:
    """report.html of a configured study (schema 2); out_dir is where it goes (gallery.npz, doc links)."""
    document = as_json(document)
    exp, run = document["experiment"], document.get("run", {})
    title = f"Study {exp['name']} — run {run.get('id', '')}"
    nav = "<nav>" + "".join(f'<a href="#{s.ANCHOR}">{esc(s.TITLE)}</a>' for s in SECTIONS) + "</nav>"
    return page(title, [f"<h1>{esc(title)}</h1>", nav, *(s.render(document, out_dir) for s in SECTIONS)])

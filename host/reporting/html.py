"""The page machinery of the HTML reports: CSS, escaping, tables (Raw cells), embedded PNGs, a plot or the note
that there is none, the page around the body, references to the docs (as text: no link leaves the file) and
the small Markdown subset of report.md as HTML. One self-contained file: inline CSS, plots as base64 PNG, no
scripts, no network, no link but the page's own #anchors.

The reports are built on it by host.reporting.sections (a study, schema 2), host.reporting.classic
(schema 1) and host.reporting.comparison (two runs). Number formatting lives in host.reporting.text.

Imports: host.reporting.plots.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from host.reporting import plots

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d1d1f; line-height: 1.45; }
h1 { margin-top: 28px; font-size: 1.6em; } h2 { margin-top: 36px; border-bottom: 2px solid #e4e4e7;
  padding-bottom: 4px; } h3 { margin-top: 22px; }
nav { background: #f4f4f5; padding: 8px 14px; border-radius: 6px; font-size: 0.92em; display: flex;
      flex-wrap: wrap; gap: 2px 14px; }
nav a { white-space: nowrap; }
table { border-collapse: collapse; margin: 10px 0; font-size: 0.88em; }
div.table { max-width: 100%; overflow-x: auto; }   /* a table wider than the page scrolls, not the page */
th, td { border: 1px solid #d4d4d8; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f5; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pos { color: #15803d; } td.neg { color: #b91c1c; } td.bad { color: #b91c1c; font-weight: 600; }
code { background: #f4f4f5; padding: 1px 4px; border-radius: 3px; font-size: 0.92em; }
img.plot { max-width: 100%; border: 1px solid #e4e4e7; margin: 8px 0; }
img.sample { image-rendering: pixelated; width: 96px; height: 96px; border: 1px solid #d4d4d8; }
.ok { color: #15803d; font-weight: 600; } .fail { color: #b91c1c; font-weight: 600; }
.note { color: #52525b; font-size: 0.92em; } .wrong { color: #b91c1c; font-weight: 600; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
dl dt { font-weight: 600; margin-top: 8px; } dl dd { margin-left: 18px; }
.doc { font-family: ui-monospace, monospace; font-size: 0.88em; color: #52525b; }
"""


# ---------------------------------------------------------------- small HTML helpers


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def img_tag(png: bytes, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped unless given as Raw."""
    out = ['<div class="table"><table>', "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = []
            if i in numeric:
                cls.append("num")
            if isinstance(cell, Raw):
                cls += cell.classes
                text = cell.html
            else:
                text = esc(cell)
            cells.append(f"<td{' class=' + chr(34) + ' '.join(cls) + chr(34) if cls else ''}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


@dataclass
class Raw:
    """A table cell given as HTML (not escaped), with optional CSS classes."""

    html: str
    classes: list[str] = field(default_factory=list)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def doc_ref(doc: str, heading: str | None = None) -> str:
    """A reference to a doc of the repository as text, not a link: report.html is self-contained and gets
    moved or mailed, where a relative or file:// link to docs/ would break. E.g. docs/metrics.md § Zero density."""
    return f'<span class="doc">{esc(doc)}{" § " + esc(heading) if heading else ""}</span>'


def page(title: str, body: Sequence[str]) -> str:
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", *body,
                      "</body>", "</html>", ""])


def plot_or_note(make: Callable[[], bytes], alt: str) -> str:
    """Run a plot function (returns PNG bytes) and embed it, or say why there is no plot."""
    if not plots.available():
        return '<p class="note">(no plot: matplotlib is not installed — <code>pip install matplotlib</code>, ' \
               'then <code>python -m host.report RUN</code>)</p>'
    return img_tag(make(), alt)


# ---------------------------------------------------------------- report.md as HTML


def markdown_to_html(text: str) -> str:
    """The small Markdown subset report.md uses: headings, bullet lists, tables, paragraphs, **bold**, `code`."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and (lines[i].startswith("- ") or (items and lines[i].startswith("  "))):
                if lines[i].startswith("- "):
                    items.append(lines[i][2:])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(it)}</li>" for it in items) + "</ul>")
            continue
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            head = "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>"
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f'<div class="table"><table>{head}{body}</table></div>')
            continue
        elif line.strip():
            para = [line]
            while i + 1 < len(lines) and lines[i + 1].strip() and lines[i + 1][0] not in "#-|":
                i += 1
                para.append(lines[i])
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        i += 1
    return "\n".join(out)


def _inline(text: str) -> str:
    text = esc(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)

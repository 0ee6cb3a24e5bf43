"""A run's files: metrics.json, report.md, report.html, predictions.npz and gallery.npz written,
read back and regenerated; two runs compared (docs/report.md).

Imports: host.core, host.study.gallery (the gallery.npz format), host.reporting.{text, classic, comparison,
sections}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.paths import RESULTS_DIR
from host.reporting.classic import render_classic_html
from host.reporting.comparison import differences, render_comparison_html
from host.reporting.sections import render_study_html
from host.reporting.text import json_default, render_markdown, render_study_markdown
from host.study.gallery import GALLERY_FILE, write_gallery


def write_results(document: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write metrics.json, report.md and predictions.npz into out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = document.pop("_predictions", {})
    paths = {
        "metrics": out_dir / "metrics.json",
        "report": out_dir / "report.md",
        "predictions": out_dir / "predictions.npz",
    }
    paths["metrics"].write_text(json.dumps(document, indent=2) + "\n")
    paths["report"].write_text(render_markdown(document))
    _write_predictions(runs, paths["predictions"])
    return paths


def _write_predictions(runs: dict[str, Any], path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    for key, run in runs.items():
        arrays[f"{key}/float"] = run.float_pred
        arrays[f"{key}/reference"] = run.reference_pred
        arrays[f"{key}/chip"] = run.chip_pred
        arrays[f"{key}/chip_output"] = np.frombuffer(b"".join(run.chip_bytes), dtype=np.uint8).reshape(
            len(run.chip_bytes), -1
        ) if run.chip_bytes else np.zeros((0, 0), np.uint8)
    np.savez_compressed(path, **arrays)


def write_study(document: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write metrics.json, report.md, report.html and (when document["_gallery"] holds the arrays of
    host.study.gallery.gallery_arrays) gallery.npz into out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    gallery = document.pop("_gallery", None)
    predictions = document.pop("_predictions", None)
    paths = {"metrics": out_dir / "metrics.json", "report": out_dir / "report.md"}
    if predictions is not None:   # a flag run (host.study.evaluation): predictions.npz as it always wrote
        paths["predictions"] = out_dir / "predictions.npz"
        _write_predictions(predictions, paths["predictions"])
    paths["metrics"].write_text(json.dumps(document, indent=2, default=json_default) + "\n")
    paths["report"].write_text(render_study_markdown(document))
    if gallery is not None:
        paths["gallery"] = write_gallery(gallery, out_dir / GALLERY_FILE)
    html = _write_html(document, out_dir)
    if html is not None:
        paths["html"] = html
    return paths


def _write_html(document: dict[str, Any], out_dir: Path) -> Path | None:
    """report.html next to report.md; a failure here must not lose a finished run's metrics."""
    path = out_dir / "report.html"
    try:
        render = render_study_html if document.get("schema") == 2 else render_classic_html
        path.write_text(render(document, out_dir))
    except Exception as err:  # noqa: BLE001 - report it, keep metrics.json and report.md
        print(f"warning: report.html not written ({type(err).__name__}: {err}); "
              f"retry with: python -m host.report {out_dir}", file=sys.stderr)
        return None
    return path


def resolve_run(name: str) -> Path:
    """A results directory from a path or a run id under results/; UserError when it is none."""
    path = Path(name)
    candidates = [path] if path.is_absolute() or path.exists() else [path, RESULTS_DIR / name]
    directory = next((c for c in candidates if c.is_dir()), None)
    if directory is None:
        if path.is_file():
            raise UserError(f"{name} is a file, not a results directory",
                            hint="give a run id under results/ or the directory that holds metrics.json")
        raise UserError(f"no run '{name}': neither a directory nor {RESULTS_DIR / name}",
                        hint="give a run id under results/ (ls results/) or a results directory")
    if not (directory / "metrics.json").is_file():
        raise UserError(f"{directory} is not a results directory (no metrics.json)",
                        hint="point at results/<run-id>/ written by python -m host.evaluate")
    return directory


def load_run(directory: Path) -> dict[str, Any]:
    """metrics.json of a results directory, with a known schema (1 or 2)."""
    path = directory / "metrics.json"
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: not a metrics document (top level is not an object)")
    schema = document.get("schema")
    if schema not in (1, 2):
        raise UserError(f"{path}: unknown metrics.json schema {schema!r}",
                        hint="host.report reads schema 1 (python -m host.evaluate) and 2 (--config studies)")
    return document


def regenerate(directory: Path) -> dict[str, Path]:
    """Rewrite report.md and report.html of a run from its metrics.json."""
    document = load_run(directory)
    try:
        if document["schema"] == 2:
            markdown, html = render_study_markdown(document), render_study_html(document, directory)
        else:
            markdown, html = render_markdown(document), render_classic_html(document, directory)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise UserError(f"{directory / 'metrics.json'}: incomplete or malformed schema-{document['schema']} "
                        f"document ({type(err).__name__}: {err})") from None
    paths = {"report": directory / "report.md", "html": directory / "report.html"}
    paths["report"].write_text(markdown)
    paths["html"].write_text(html)
    return paths


def compare(dir_a: Path, dir_b: Path, out: Path) -> Path:
    """comparison.html of two runs; a warning on stderr when they differ in n, dataset or models."""
    a, b = load_run(dir_a), load_run(dir_b)
    try:
        differ = differences(a, b)
        text = render_comparison_html(a, b, dir_a.resolve().name, dir_b.resolve().name)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise UserError(f"cannot compare {dir_a} and {dir_b}: malformed metrics.json ({type(err).__name__}: {err})"
                        ) from None
    if differ:
        print(f"warning: {dir_a.resolve().name} and {dir_b.resolve().name} are not like for like, they differ in: "
              f"{'; '.join(differ)}", file=sys.stderr)
    if out.is_dir():
        out = out / "comparison.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    return out

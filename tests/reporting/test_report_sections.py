"""host.reporting's layout: one module per section of report.html, SECTIONS in page order driving
render_study_html, one copy of each formatting helper, and the import rules (host imports at module top
level, only host.core, host.study.gallery and host.reporting, no cycle)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from host.core.paths import ROOT
from host.reporting import sections, text
from host.reporting.document import as_json
from host.reporting.sections import SECTIONS, render_study_html
from tests.reporting.test_report_html import SECTIONS as ANCHORS
from tests.reporting.test_report_html import synthetic_study, with_bitwidths_and_patch

REPORTING = ROOT / "host" / "reporting"
ALLOWED = ("host.core", "host.study.gallery", "host.reporting")


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of host.reporting."""
    out = {}
    for path in sorted(REPORTING.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _host_imports(tree: ast.Module, name: str, is_package: bool) -> list[tuple[ast.stmt, str]]:
    """(statement, imported module) of every import of a host module anywhere in the file, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names if a.name.split(".")[0] == "host"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "host":
                continue
            for alias in node.names:                      # `from pkg import module` imports pkg.module
                found.append((node, f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base))
    return found


def _parse(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def test_sections_are_one_module_each_in_page_order(tmp_path: Path) -> None:
    assert [s.ANCHOR for s in SECTIONS] == list(ANCHORS)
    assert {s.__name__.rpartition(".")[2] for s in SECTIONS} == set(ANCHORS)
    document = as_json(with_bitwidths_and_patch(synthetic_study()))
    for section in SECTIONS:
        doc = section.__doc__ or ""
        assert doc.strip() and doc.splitlines()[0].strip(), f"{section.__name__}: no docstring"
        assert section.TITLE and section.ANCHOR in section.__name__
        html = section.render(document, tmp_path)
        assert html.startswith(f'<h2 id="{section.ANCHOR}">'), section.__name__


def test_study_html_is_its_sections_in_order(tmp_path: Path) -> None:
    document = synthetic_study()
    html = render_study_html(document, tmp_path)
    position = 0
    for section in SECTIONS:
        assert f'<a href="#{section.ANCHOR}">' in html
        part = section.render(as_json(document), tmp_path)
        found = html.find(part, position)
        assert found >= position, section.__name__
        position = found + len(part)


def test_every_reporting_module_says_its_job_and_imports() -> None:
    for name in MODULES:
        doc = ast.get_docstring(_parse(name))
        assert doc and "Imports" in doc, f"{name}: its docstring must say its job and what it may import"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_reporting_imports_are_top_level_and_allowed(name: str) -> None:
    tree = _parse(name)
    top = {id(node) for node in tree.body}
    for node, target in _host_imports(tree, name, MODULES[name].name == "__init__.py"):
        assert id(node) in top, f"{name}:{node.lineno}: import of {target} inside a function"
        assert target.startswith(ALLOWED), f"{name}:{node.lineno}: imports {target} (allowed: {', '.join(ALLOWED)})"
        if name.startswith("host.reporting.sections."):
            assert not target.startswith("host.reporting.sections"), f"{name} imports {target}: sections stand alone"


def test_no_import_cycle_between_reporting_modules() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        own = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}   # packages imported before it
        edges = set()
        for _, target in _host_imports(_parse(name), name, path.name == "__init__.py"):
            # importing a.b.c runs a.b's __init__ too (unless it is one of this module's own packages)
            chain = {target.rsplit(".", k)[0] for k in range(target.count(".") + 1)} - own - {name}
            edges |= {t for t in chain if t in MODULES}
        graph[name] = edges
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [])
    assert "host.reporting.sections.config" in graph["host.reporting.sections"]


def test_one_copy_of_each_helper() -> None:
    """No function is defined twice across host.reporting (a section's `render` excepted)."""
    seen: dict[str, str] = {}
    for name in MODULES:
        for node in _parse(name).body:
            if isinstance(node, ast.FunctionDef) and node.name != "render":
                helper = node.name.lstrip("_")
                assert helper not in seen, f"{node.name}: defined in {seen.get(helper)} and {name}"
                seen[helper] = name
    assert seen["pct"] == seen["rate_text"] == seen["fmt"] == seen["eps_text"] == "host.reporting.text"


def test_number_formatting() -> None:
    assert text.pct(0.123) == "12.3 %" and text.pct(None) == "–" and text.pct(math.nan) == "–"
    assert text.pct(0.5, 0) == "50 %"
    assert text.rate_text({"rate": 0.25, "count": 1, "of": 4}) == "25.0 % (1/4)"
    assert text.rate_text({"rate": 1.0, "identical": 3, "of": 3}) == "100.0 % (3/3)"
    assert text.rate_text({"rate": None, "count": 0, "of": 0}) == "–" and text.rate_text(None) == "–"
    assert text.fmt(1_349_360.0, ",.0f") == "1,349,360" and text.fmt(None) == "–" and text.fmt(math.inf) == "–"
    assert text.eps_text(0.004) == "0.004" and text.eps_text(None) == "–" and text.eps_text(0.0) == "–"
    # the console/report.md cells and report.html format alike
    assert text.format_cell("reference_accuracy", 0.98) == text.pct(0.98)
    assert text.format_cell("instructions_median", 1_349_680.0) == "1,349,680"
    assert text.format_cell("eps", 0.0) == "–"


def test_sections_package_is_importable_alone() -> None:
    assert sections.render_study_html is render_study_html

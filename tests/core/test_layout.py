"""The layout of host/ (docs/architecture.md): every package says its job and what it may import,
`host` modules import each other at module level, and no `host` module pulls in TensorFlow or
ART when it is imported (so commands answer --help at once and imports need no deferring).
The layers themselves are import-linter's contracts in pyproject.toml (`make lint`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from host.core.paths import ROOT

HOST = ROOT / "host"
MODULES = sorted(p for p in HOST.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def function_level_host_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                      if n == "host" or n.startswith("host.")]
    return found


def test_host_imports_are_at_module_level() -> None:
    found = [hit for path in MODULES for hit in function_level_host_imports(path)]
    assert found == [], "move these imports to the top of their module:\n" + "\n".join(found)


@pytest.mark.parametrize("package", sorted(p.parent.name for p in HOST.glob("*/__init__.py")))
def test_every_package_says_its_job_and_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((HOST / package / "__init__.py").read_text())) or ""
    assert len(doc) > 40 and "Imports:" in doc, f"host/{package}/__init__.py: say its job and 'Imports: …'"


def test_no_host_module_imports_tensorflow_or_art_when_imported() -> None:
    names = [module_name(p) for p in MODULES]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in ('tensorflow', 'art', 'keras', 'tf_keras') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported at module level: {result.stdout.strip()}"

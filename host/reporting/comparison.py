"""comparison.html: two runs of either schema side by side: a warning when they differ in n, dataset or models,
configurations (differences in red), accuracy of every common (attack, ε, model) with the difference, an
accuracy-vs-ε overlay and what only one run has.

Imports: host.reporting.document, host.reporting.html, host.reporting.plots, host.reporting.text.
"""

from __future__ import annotations

import json
from typing import Any

from host.reporting import plots
from host.reporting.document import accuracy_series
from host.reporting.html import Raw, esc, page, plot_or_note, table
from host.reporting.text import eps_text, pct


def flat_config(document: dict[str, Any]) -> dict[str, str]:
    """A run's configuration as dotted keys -> text (schema 2: experiment; schema 1: config)."""
    source = document.get("experiment") if document.get("schema") == 2 else document.get("config")
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
            for v in value:
                walk(f"{prefix}.{v['name']}", {k: w for k, w in v.items() if k != "name"})
        else:
            out[prefix] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    walk("", source or {})
    run = document.get("run", {})
    out["run.id"] = str(run.get("id", ""))
    out["run.duration_s"] = str(run.get("duration_s", ""))
    out["schema"] = str(document.get("schema"))
    return out


def run_identity(document: dict[str, Any]) -> dict[str, str]:
    """What makes two runs' accuracies comparable: the number of inputs, the dataset and the models."""
    if document.get("schema") == 2:
        exp = document.get("experiment", {})
        ds = exp.get("dataset", {})
        clean = (document.get("evaluations") or [{}])[0].get("models", {})
        n = ds.get("num") if ds.get("num") is not None else max((m.get("n", 0) for m in clean.values()), default=None)
        models = [f"float {exp.get('float_model')}"] + [f"{p} {str(v.get('sha256', ''))[:12]}"
                                                        for p, v in exp.get("precisions", {}).items()]
        return {"n": str(n), "dataset": f"{ds.get('path')} from {ds.get('start', 0)}", "models": ", ".join(models)}
    config = document.get("config", {})
    return {"n": str(config.get("num")), "dataset": str(config.get("dataset")),
            "models": f"float {config.get('float_model')}, int8 {str(config.get('model_sha256', ''))[:12]}"}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """One text per way the two runs are not like for like (n, dataset, models): empty when comparable."""
    ia, ib = run_identity(a), run_identity(b)
    return [f"{key} ({ia[key]} vs {ib[key]})" for key in ia if ia[key] != ib[key]]


def render_comparison_html(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    """Two runs side by side: configurations, accuracy per common (attack, ε, model) with the difference, overlay."""
    if name_a == name_b:
        name_a, name_b = f"A: {name_a}", f"B: {name_b}"
    ca, cb = flat_config(a), flat_config(b)
    c_rows = []
    for key in dict.fromkeys([*ca, *cb]):
        va, vb = ca.get(key, "–"), cb.get(key, "–")
        cls = [] if va == vb else ["bad"]
        c_rows.append([key, Raw(esc(va), cls), Raw(esc(vb), cls)])
    sa, sb = accuracy_series(a), accuracy_series(b)
    common = [key for key in sa if key in sb]
    rows = []
    for attack, eps, model in common:
        (acc_a, n_a), (acc_b, n_b) = sa[(attack, eps, model)], sb[(attack, eps, model)]
        diff = acc_b - acc_a
        cls = ["pos"] if diff > 0 else ["neg"] if diff < 0 else []
        rows.append([attack, eps_text(eps), model, f"{pct(acc_a)} (n={n_a})", f"{pct(acc_b)} (n={n_b})",
                     Raw(f"{100 * diff:+.1f} pt", cls)])
    only = sorted({k for k in [*sa, *sb] if k not in sa or k not in sb})
    panels = []
    for attack in dict.fromkeys(key[0] for key in common if key[0] != "clean"):
        eps_values = {e for (a_, e, _) in common if a_ == attack and e}
        if len(eps_values) < 2:
            continue
        per_run = {}
        for run, series in ((name_a, sa), (name_b, sb)):
            per_run[run] = {m: [(e, series[(attack, e, m)][0]) for (a_, e, m2) in common
                                if a_ == attack and m2 == m and e]
                            for m in dict.fromkeys(m for (a_, _, m) in common if a_ == attack)}
        panels.append((attack, "ε (input units)", per_run))
    differ = differences(a, b)
    body = [f"<h1>Comparison: {esc(name_a)} vs {esc(name_b)}</h1>",
            *([f'<p class="fail">Not like for like — the runs differ in: {esc("; ".join(differ))}. Accuracy '
               "differences below mix these with the effect being compared.</p>"] if differ else []),
            "<h2>Configurations</h2>", '<p class="note">Differing values in red.</p>',
            table(["key", name_a, name_b], c_rows),
            "<h2>Accuracy per common (attack, ε, model)</h2>",
            f'<p class="note">Difference = {esc(name_b)} − {esc(name_a)} in percentage points. '
            "Schema-1 runs map to float32 / int8 (reference) / chip:int8.</p>",
            table(["attack", "ε", "model", name_a, name_b, "difference"], rows, numeric=(3, 4, 5))
            if rows else '<p class="note">The runs have no (attack, ε, model) in common.</p>']
    if panels:
        body += ["<h2>Accuracy vs ε (solid: first run, dashed: second)</h2>",
                 plot_or_note(lambda: plots.comparison_overlay(panels, [name_a, name_b]), "accuracy overlay")]
    if only:
        body += ["<h2>Only in one run</h2>",
                 table(["attack", "ε", "model", "in"], [[a_, eps_text(e), m, name_a if (a_, e, m) in sa else name_b]
                                                        for a_, e, m in only])]
    return page(f"Comparison {name_a} vs {name_b}", body)

"""Self-contained HTML reports: results/<run-id>/report.html and two-run comparisons.

One HTML file, inline CSS, plots as base64 PNG (host.reporting.plots, matplotlib Agg), no scripts and no
network. `render_study_html` renders a configured study (metrics.json schema 2),
`render_classic_html` a `python -m host.evaluate` run (schema 1), `render_comparison_html` two
runs of either schema side by side. The optional image gallery is read from
results/<run-id>/gallery.npz (format in docs/report.md; built by `gallery_arrays`).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.paths import ROOT
from host.reporting import plots
from host.reporting.text import (
    agreement_text,
    bitwidth_rows,
    chip_agreement,
    defense_chip_rows,
    defense_rows,
    json_default,
    render_markdown,
    study_rows,
    targeted_models,
    targeted_rows,
    wall_time,
)
from host.study.gallery import GALLERY_FILE, load_gallery

MODEL_ORDER = ("float32", "int16x8", "int8")
HISTOGRAM_BINS_TEXT = "log-spaced bins from the smallest to the largest non-zero value"
METRICS_DOC = ROOT / "docs" / "metrics.md"
REPORT_DOC = ROOT / "docs" / "report.md"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d1d1f; line-height: 1.45; }
h1 { margin-top: 28px; font-size: 1.6em; } h2 { margin-top: 36px; border-bottom: 2px solid #e4e4e7;
  padding-bottom: 4px; } h3 { margin-top: 22px; }
nav { background: #f4f4f5; padding: 8px 14px; border-radius: 6px; font-size: 0.92em; }
nav a { margin-right: 14px; white-space: nowrap; }
table { border-collapse: collapse; margin: 10px 0; font-size: 0.88em; }
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
"""


# ---------------------------------------------------------------- small HTML helpers


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def img_tag(png: bytes, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped unless given as Raw."""
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
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
    out.append("</table>")
    return "\n".join(out)


@dataclass
class Raw:
    """A table cell given as HTML (not escaped), with optional CSS classes."""

    html: str
    classes: list[str] = field(default_factory=list)


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f} %"


def rate_text(rate: Mapping[str, Any] | None) -> str:
    if not rate:
        return "–"
    count = rate.get("count", rate.get("identical"))
    return "–" if rate.get("rate") is None else f"{100 * rate['rate']:.1f} % ({count}/{rate['of']})"


def fmt(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def eps_text(eps: float | None) -> str:
    return "–" if not eps else f"{eps:g}"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def doc_link(out_dir: Path | None, doc: Path, heading: str | None = None) -> str:
    """A link from a report in out_dir to a doc of this checkout: relative inside the checkout, else absolute."""
    target = doc.as_uri()
    if out_dir is not None and out_dir.resolve().is_relative_to(ROOT):
        with contextlib.suppress(ValueError):
            target = Path(os.path.relpath(doc, out_dir.resolve())).as_posix()
    return target + (f"#{slug(heading)}" if heading else "")


def page(title: str, body: Sequence[str]) -> str:
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", *body,
                      "</body>", "</html>", ""])


def plot_or_note(make: Any, alt: str) -> str:
    """Run a plot function (returns PNG bytes) and embed it, or say why there is no plot."""
    if not plots.available():
        return '<p class="note">(no plot: matplotlib is not installed — <code>pip install matplotlib</code>, ' \
               'then <code>python -m host.report RUN</code>)</p>'
    return img_tag(make(), alt)


# ---------------------------------------------------------------- schema 2: reading the document


def as_json(document: dict[str, Any]) -> dict[str, Any]:
    """The document as metrics.json holds it (NumPy values to plain ones), so that a report rendered from the
    experiment's result and one regenerated from metrics.json are the same."""
    return json.loads(json.dumps({k: v for k, v in document.items() if not k.startswith("_")},
                                 default=json_default))


def model_keys(document: dict[str, Any]) -> list[str]:
    """Model keys of a study in display order: host precisions first, then the chips."""
    keys: list[str] = []
    for e in document["evaluations"]:
        keys += [k for k in e["models"] if k not in keys]

    return sorted(keys, key=_model_order)


def _model_order(key: str) -> tuple[bool, int, str]:
    base = key.split(":", 1)[-1]
    return (key.startswith("chip:"), MODEL_ORDER.index(base) if base in MODEL_ORDER else 9, key)


def model_labels(document: dict[str, Any]) -> dict[str, str]:
    clean = document["evaluations"][0]["models"]
    full = max((m["n"] for m in clean.values()), default=0)
    return {k: k + ("" if m["n"] == full else f" (first {m['n']})") for k, m in clean.items()}


def attack_groups(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in document["evaluations"]:
        if e["attack"] != "clean":
            groups.setdefault(e["attack"], []).append(e)
    return groups


def norm_name(norm: str | None) -> str:
    return {"inf": "L∞", "2": "L2", "1": "L1", "0": "L0", "patch": "patch"}.get(str(norm), str(norm or "?"))


def row_label(e: dict[str, Any]) -> str:
    if e["attack"] == "clean":
        return "clean"
    if e.get("eps"):
        return f"{e['attack']} ε={e['eps']:g}"
    if e.get("norm") == "patch":
        return e["attack"]
    return f"{e['attack']} (min {norm_name(e.get('norm'))})"


def _is_swept(evals: list[dict[str, Any]]) -> bool:
    return len({e["eps"] for e in evals if e.get("eps")}) >= 2


def _input_range(document: dict[str, Any]) -> list[float]:
    return list(document["experiment"].get("dataset", {}).get("input_range", [0.0, 1.0]))


# ---------------------------------------------------------------- schema 2: sections


def _chip_verdict(what: str, same: int, of: int) -> str:
    return (f'<p class="{"ok" if same == of else "fail"}">'
            f'{esc(what.replace("reference", "TFLite Micro reference", 1))}: {agreement_text(same, of)}</p>')


def section_config(document: dict[str, Any]) -> str:
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
    return "\n".join(['<h2 id="config">Configuration</h2>', verdict, table(["", "value"], rows),
                      "<h3>Attacks</h3>", table(["attack", "ε", "parameters (config)"], a_rows)])


def section_accuracy(document: dict[str, Any]) -> str:
    keys = [k for k in model_keys(document) if not k.startswith("sim:")]  # their own section
    labels = model_labels(document)
    clean = {k: m["accuracy"] for k, m in document["evaluations"][0]["models"].items()}
    lo, hi = _input_range(document)
    groups = attack_groups(document)
    swept = {a: evals for a, evals in groups.items() if _is_swept(evals)}
    single = [e for a, evals in groups.items() if a not in swept for e in evals]
    parts = ['<h2 id="accuracy">Accuracy under attack</h2>',
             "<p>Share of the inputs each model classifies correctly, per attack and ε (the attack's radius in "
             f"input units; inputs in [{lo:g}, {hi:g}]). White-box attacks are crafted on the float32 model; "
             "every precision then sees the same inputs, quantized with its own input scale. Dashed/hatched: "
             "the chip (on its first inputs only).</p>"]
    if swept:
        panels = []
        for attack, evals in swept.items():
            series = {k: [(e["eps"], e["models"][k]["accuracy"]) for e in evals if e.get("eps") and k in e["models"]]
                      for k in keys}
            first = evals[0]
            n = max(m["n"] for m in first["models"].values())
            panels.append((f"{attack} ({first.get('threat_model', '')}, n={n})",
                           f"ε ({norm_name(first.get('norm'))} radius, input units)",
                           {k: v for k, v in series.items() if v}))
        parts.append(plot_or_note(lambda: plots.accuracy_sweeps(panels, clean, labels), "accuracy vs epsilon"))
    if single:
        rows = [document["evaluations"][0], *single]
        groups_labels = [row_label(e) + f" (n={max(m['n'] for m in e['models'].values())})" for e in rows]
        series = {k: [e["models"].get(k, {}).get("accuracy") for e in rows] for k in keys}
        parts += ["<h3>Attacks without an ε sweep</h3>",
                  "<p>Single-ε attacks and minimal-perturbation attacks (budget as ε, or none), with clean accuracy "
                  "for reference.</p>",
                  plot_or_note(lambda: plots.grouped_bars(groups_labels, series, "accuracy", labels=labels),
                               "accuracy of attacks without a sweep")]
    header, rows = study_rows(document)
    parts += ["<h3>Table</h3>", table(header, rows, numeric=range(2, len(header)))]
    return "\n".join(parts)


def section_transfer(document: dict[str, Any]) -> str:
    evals = document["evaluations"][1:]
    parts = ['<h2 id="transfer">Transfer float32 → int16x8 → int8</h2>',
             "<p>Among inputs both models classify correctly when clean and whose adversarial version fools the "
             "source model, the share that also fools the target. Grey: undefined (no such input).</p>"]
    if not evals:
        return "\n".join([*parts, '<p class="note">no attacks</p>'])
    pairs: list[str] = []
    for e in evals:
        pairs += [p for p in e["transfer"] if p not in pairs]
    rows = [row_label(e) for e in evals]
    rates = np.array([[np.nan if e["transfer"].get(p, {}).get("rate") is None else e["transfer"][p]["rate"]
                       for p in pairs] for e in evals], dtype=float)
    notes = [[f"{e['transfer'][p]['count']}/{e['transfer'][p]['of']}" if p in e["transfer"] else "" for p in pairs]
             for e in evals]
    columns = [p.replace("->", " → ") for p in pairs]
    if pairs:
        parts.append(plot_or_note(lambda: plots.heatmap(rows, columns, rates, notes, "transfer rate (source → target)",
                                                        "transfer rate"), "transfer heat map"))
    parts.append(table(["attack", "ε", *columns], [[e["attack"], eps_text(e["eps"]),
                                                   *[rate_text(e["transfer"].get(p)) for p in pairs]] for e in evals],
                       numeric=range(2, 2 + len(pairs))))
    return "\n".join(parts)


def section_perturbation(document: dict[str, Any]) -> str:
    evals = document["evaluations"][1:]
    norms = [n for n in ("l0", "l1", "l2", "linf") if any(n in e["perturbation"] for e in evals)]
    parts = ['<h2 id="perturbation">Perturbation size</h2>',
             "<p>Norms of x<sub>adv</sub> − x per input, as crafted (float, before quantization): mean (bar) "
             "and max (tick) over the attacked inputs. L0 counts changed components; L1, L2, L∞ are in input "
             "units.</p>"]
    if not evals or not norms:
        return "\n".join([*parts, '<p class="note">no perturbation norms</p>'])
    rows = [row_label(e) for e in evals]
    data = {n: ([e["perturbation"].get(n, {}).get("mean") for e in evals],
                [e["perturbation"].get(n, {}).get("max") for e in evals]) for n in norms}
    parts.append(plot_or_note(lambda: plots.norm_bars(rows, data), "perturbation norms"))
    t_rows = [[e["attack"], eps_text(e["eps"]),
               *[f"{fmt(e['perturbation'].get(n, {}).get('mean'))} / {fmt(e['perturbation'].get(n, {}).get('max'))}"
                 for n in norms]] for e in evals]
    parts.append(table(["attack", "ε", *[f"{plots.NORM_LABELS[n].split()[0]} mean / max" for n in norms]], t_rows,
                       numeric=range(2, 2 + len(norms))))
    histograms = {n: [e["perturbation"].get(n, {}).get("histogram") for e in evals] for n in norms}
    if any(h for per_row in histograms.values() for h in per_row):
        parts += ["<h3>Distribution over the inputs</h3>",
                  f"<p>Histogram of each input's perturbation ({HISTOGRAM_BINS_TEXT}), one ridge per attack "
                  "and ε, each scaled to its tallest bin; <em>k unchanged</em>: inputs the attack left as they "
                  "were (norm 0).</p>",
                  plot_or_note(lambda: plots.norm_histograms(rows, histograms), "perturbation histograms")]
    else:
        parts.append('<p class="note">No per-input histograms: this run predates them (metrics.json kept '
                     "mean and max only); the gallery shows individual perturbations.</p>")
    return "\n".join(parts)


def section_chip(document: dict[str, Any]) -> str:
    chips = [k for k in model_keys(document) if k.startswith("chip:")]
    parts = ['<h2 id="chip">On-chip vs host reference</h2>']
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


def defense_series(document: dict[str, Any], model: str) -> tuple[list[str], dict[str, list[float | None]]]:
    """Accuracy of `model` per attack × ε (rows) and defense (series): none, each pre-processing
    defense (on the host model's inputs) and each adversarially trained model."""
    evaluations = document["evaluations"]
    series: dict[str, list[float | None]] = {"none": [e["models"].get(model, {}).get("accuracy") for e in evaluations]}
    for name in sorted({n for e in evaluations for n in e.get("defended", {})}):
        series[name] = [e.get("defended", {}).get(name, {}).get("models", {}).get(model, {}).get("accuracy")
                        for e in evaluations]
    for name, sub in document.get("defended_models", {}).items():
        trained = {(e["attack"], e["eps"]): e["models"].get(model, {}).get("accuracy") for e in sub["evaluations"]}
        series[f"{name} (trained)"] = [trained.get((e["attack"], e["eps"])) for e in evaluations]
    return [row_label(e) for e in evaluations], series


def section_bitwidth(document: dict[str, Any]) -> str:
    """The host-simulated bit-widths next to the deployed precisions, and targeted success (the patch)."""
    parts = ['<h2 id="bitwidth">Bit-widths and targeted attacks</h2>']
    has_sims = any(k.startswith("sim:") for k in document["evaluations"][0]["models"])
    t_header, t_rows = targeted_rows(document)
    if not has_sims and not t_rows:
        return "\n".join([*parts, '<p class="note">No bit-width sweep and no targeted attack in this study.</p>'])
    if has_sims:
        header, rows = bitwidth_rows(document)
        parts += ["<p>Host-simulated models beyond what TFLite deploys: wN quantizes every kernel to N bits "
                  "(symmetric, per output channel), wNaN also every layer's output; float32 and the deployed "
                  "precisions for reference. Dotted lines: clean accuracy.</p>"]
        panels = bitwidth_panels(document)
        if panels:
            clean = {k: m["accuracy"] for k, m in document["evaluations"][0]["models"].items()}
            parts.append(plot_or_note(lambda: plots.accuracy_sweeps(panels, clean, model_labels(document)),
                                      "accuracy vs epsilon per bit-width"))
        parts.append(table(header, rows, numeric=range(2, len(header))))
    if t_rows:
        keys = targeted_models(document)
        targeted = [e for e in document["evaluations"] if "target_class" in e]
        groups = [f"{row_label(e)} → class {e['target_class']}" for e in targeted]
        series = {k: [e["models"].get(k, {}).get("targeted_success", {}).get("rate") for e in targeted]
                  for k in keys}
        parts += ["<h3>Targeted success</h3>",
                  "<p>Share of the inputs not of the target class that each model puts in the target class "
                  "(the patch is trained once on the float model).</p>",
                  plot_or_note(lambda: plots.grouped_bars(groups, series, "targeted success",
                                                          labels=model_labels(document)), "targeted success"),
                  table(t_header, t_rows, numeric=range(3, len(t_header)))]
    return "\n".join(parts)


def bitwidth_panels(document: dict[str, Any]) -> list[tuple[str, str, dict[str, list[tuple[float, float]]]]]:
    """Accuracy-vs-ε panels of every swept attack: weights-only widths, then weights + activations,
    each beside float32 and the deployed precisions."""
    keys = model_keys(document)
    deployed = [k for k in keys if not k.startswith(("sim:", "chip:"))]
    widths = {k: w for k in keys if (w := plots.simulated_width(k)) is not None}
    panels = []
    for attack, evals in attack_groups(document).items():
        if not _is_swept(evals):
            continue
        for title, with_activations in (("weights", False), ("weights + activations", True)):
            chosen = deployed + [k for k, (_, activations) in widths.items() if activations == with_activations]
            if len(chosen) == len(deployed):
                continue
            series = {k: [(e["eps"], e["models"][k]["accuracy"]) for e in evals if e.get("eps") and k in e["models"]]
                      for k in chosen}
            panels.append((f"{attack}: {title} at N bits", f"ε ({norm_name(evals[0].get('norm'))} radius, input units)",
                           {k: v for k, v in series.items() if v}))
    return panels


def section_defenses(document: dict[str, Any]) -> str:
    parts = ['<h2 id="defenses">Defenses</h2>']
    if not document.get("defended_models") and not any("defended" in e for e in document["evaluations"]):
        return "\n".join([*parts, '<p class="note">No defense in this study.</p>'])
    parts.append("<p>Accuracy with each defense next to the undefended model, on the same adversarial inputs. "
                 "Pre-processing defenses are applied to inputs crafted without them (non-adaptive attacks); "
                 "adversarially trained models are new float models quantized and attacked like the original.</p>")
    hosts = [k for k in model_keys(document) if not k.startswith(("chip:", "sim:"))]
    for model in [k for k in ("int8", "int16x8", "float32") if k in hosts][:2] or hosts[:1]:
        groups, series = defense_series(document, model)
        parts.append(f"<h3>{esc(model_labels(document).get(model, model))}</h3>")
        parts.append(plot_or_note(lambda g=groups, s=series, m=model: plots.grouped_bars(g, s, f"accuracy ({m})"),
                                  f"defense comparison, {model}"))
    header, rows = defense_rows(document)
    parts += ["<h3>Table</h3>", table(header, rows, numeric=range(3, len(header)))]
    chip_header, chip_rows = defense_chip_rows(document)
    if chip_rows:
        parts += ["<h3>Pre-processing on the chip</h3>",
                  "<p>The firmware's pre-processing stage ran on the chip; its output is compared with the TFLite "
                  "Micro reference on the host's integer pre-processing of the same bytes. Instructions are "
                  "medians per inference.</p>",
                  table(chip_header, chip_rows, numeric=range(4, len(chip_header)))]
    return "\n".join(parts)


def section_shift(document: dict[str, Any]) -> str:
    evals = document["evaluations"][1:]
    parts = ['<h2 id="shift">Quantization shift</h2>',
             "<p>On the same adversarial inputs, compare the float32 label with the quantized model's label, as a "
             "share of the attacked inputs. <b>Attenuation</b>: float32 fooled, quantized model correct "
             "(quantization masks the attack). <b>Amplification</b>: quantized model fooled, float32 correct. "
             "<b>Shift</b> (grey): the labels differ at all.</p>"]
    precisions: list[str] = []
    for e in evals:
        precisions += [p for p in e["quantization_shift"] if p not in precisions]
    if not evals or not precisions:
        return "\n".join([*parts, '<p class="note">no quantized precision</p>'])
    rows = [row_label(e) for e in evals]
    panels = {p: {key: [e["quantization_shift"].get(p, {}).get(key, {}).get("rate") for e in evals]
                  for key in ("shift", "attenuation", "amplification")} for p in precisions}
    parts.append(plot_or_note(lambda: plots.shift_bars(rows, panels), "quantization shift"))
    t_rows = [[e["attack"], eps_text(e["eps"]), p, *[rate_text(v.get(key)) for key in
                                                     ("shift", "attenuation", "amplification")]]
              for e in evals for p, v in e["quantization_shift"].items()]
    parts.append(table(["attack", "ε", "precision", "shift", "attenuation", "amplification"], t_rows,
                       numeric=(3, 4, 5)))
    return "\n".join(parts)


def section_boundary(document: dict[str, Any]) -> str:
    norms = {a: evals[0].get("norm") for a, evals in attack_groups(document).items()}
    rows = []
    for attack, per in document.get("boundary_distance", {}).items():
        for key, v in per.items():
            rows.append([attack, norm_name(norms.get(attack)), key, fmt(v.get("mean")), v.get("found", "–"),
                         v.get("unbroken", "–")])
    return "\n".join([
        '<h2 id="boundary">Distance to the decision boundary</h2>',
        "<p>Per input, the smallest <em>measured</em> perturbation (in the attack's norm) among the ε of the sweep "
        "that changes the model's label; the mean is over inputs the sweep fooled (<em>found</em>). "
        "<em>unbroken</em> inputs were never fooled: their distance exceeds the largest ε, so the mean is biased "
        "low when unbroken &gt; 0. One ε only gives a coarse bound.</p>",
        table(["attack", "norm", "model", "mean distance", "found", "unbroken"], rows, numeric=(3, 4, 5))
        if rows else '<p class="note">none</p>'])


def section_gradient(document: dict[str, Any]) -> str:
    gm = document.get("gradient_misalignment", {})
    rows = [[p, fmt(v.get("mean"), ".3f"), fmt(v.get("zero_density"), ".3f"),
             f"{v.get('undefined', '–')}/{v.get('samples', len(v.get('cosine', [])))}", v.get("queries", "–"),
             v.get("fd", "")] for p, v in gm.items()]
    parts = ['<h2 id="gradient">Gradient misalignment</h2>',
             "<p>Cosine between the float32 model's input gradient of the true-class score (what white-box attacks "
             "follow) and a finite-difference estimate of the same gradient on each quantized model (1: aligned, "
             "0: orthogonal). Undefined when the estimate is all zero — the quantized model is flat at that step; "
             "<em>zero density</em> is the share of exactly-zero components of the estimates (gradient masking "
             "by quantization).</p>",
             table(["precision", "mean cosine", "zero density", "undefined", "oracle queries", "estimator"], rows,
                   numeric=(1, 2, 3, 4)) if rows else '<p class="note">not measured</p>']
    cosines = {p: list(v["cosine"]) for p, v in gm.items() if len(v.get("cosine") or ()) > 0}
    if cosines:
        parts.append(plot_or_note(lambda: plots.cosine_strips(cosines), "gradient cosines"))
    return "\n".join(parts)


def section_definitions(out_dir: Path | None) -> str:
    def link(heading: str) -> str:
        return f'<a href="{esc(doc_link(out_dir, METRICS_DOC, heading))}">docs/metrics.md</a>'

    items = [
        ("accuracy", "share of the n inputs whose predicted label equals the true label", None),
        ("attack success", "among inputs the model classifies correctly when clean, the share it misclassifies "
                           "under attack", "Attack success rate"),
        ("transfer rate S → T", "among inputs S and T both classify correctly when clean and whose adversarial "
                                "version fools S, the share that also fools T", "Transfer rate (source → target)"),
        ("perturbation size", "L0/L1/L2/L∞ norm of x_adv − x per input; mean and max", "Perturbation size"),
        ("quantization shift", "shift, attenuation and amplification, as shares of the attacked inputs",
         "Quantization shift"),
        ("distance to the decision boundary", "mean minimal measured perturbation that fools the model over the ε "
                                              "sweep", "Distance to the decision boundary"),
        ("gradient misalignment", "cosine between the float gradient and finite differences on the quantized "
                                  "model", "Gradient misalignment"),
        ("zero density", "share of exactly-zero components of the finite-difference gradients", "Zero density"),
        ("chip = reference", "inferences whose output bytes on the chip equal the TFLite Micro reference's", None),
    ]
    body = "".join(f"<dt>{esc(name)}</dt><dd>{esc(text)}" + (f" — {link(h)}" if h else "") + "</dd>"
                   for name, text, h in items)
    return "\n".join(['<h2 id="definitions">Definitions</h2>', f"<dl>{body}</dl>",
                      f'<p class="note">Full definitions and formulas: <a href="{esc(doc_link(out_dir, METRICS_DOC))}">'
                      f'docs/metrics.md</a>; this report: <a href="{esc(doc_link(out_dir, REPORT_DOC))}">'
                      "docs/report.md</a>.</p>"])


def section_gallery(out_dir: Path | None) -> str:
    parts = ['<h2 id="gallery">Gallery</h2>']
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
    columns = sorted(range(len(models)), key=lambda j: _model_order(models[j]))      # host models, then chips
    input_range = g["input_range"]
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
                cells: list[Any] = [str(s), str(y), Raw(img_tag(clean_png[s], f"clean {s}", "sample")),
                                    Raw(img_tag(plots.image_png(adv, input_range), f"adversarial {s}", "sample")),
                                    Raw(img_tag(diff, f"difference {s}", "sample") + f"<br>|δ|∞ = {peak:.3g}")]
                for j in columns:
                    cells.append(Raw(_pred_html(int(g["pred_clean"][j, s]), y) + " → "
                                     + _pred_html(int(g["pred"][i, j, s]), y)))
                rows.append(cells)
            header = ["#", "label", "clean", "adversarial", "difference", *[models[j] for j in columns]]
            parts.append(table(header, rows)
                         if rows else '<p class="note">no attacked inputs among the first ones</p>')
        parts.append("</details>")
    return "\n".join(parts)


def _pred_html(pred: int, label: int) -> str:
    if pred < 0:
        return "–"
    return f'<span class="wrong">{pred}</span>' if pred != label else str(pred)


# ---------------------------------------------------------------- whole reports


def render_study_html(document: dict[str, Any], out_dir: Path | None = None) -> str:
    """report.html of a configured study (schema 2); out_dir is where it goes (gallery.npz, doc links)."""
    document = as_json(document)
    exp, run = document["experiment"], document.get("run", {})
    title = f"Study {exp['name']} — run {run.get('id', '')}"
    nav = ("<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in (
        ("config", "configuration"), ("accuracy", "accuracy"), ("transfer", "transfer"),
        ("perturbation", "perturbation"), ("chip", "chip vs host"), ("defenses", "defenses"),
        ("shift", "quantization shift"), ("bitwidth", "bit-widths"),
        ("boundary", "boundary distance"), ("gradient", "gradient misalignment"), ("gallery", "gallery"),
        ("definitions", "definitions"))) + "</nav>")
    body = [f"<h1>{esc(title)}</h1>", nav, section_config(document), section_accuracy(document),
            section_transfer(document), section_perturbation(document), section_chip(document),
            section_defenses(document), section_shift(document), section_bitwidth(document),
            section_boundary(document),
            section_gradient(document),
            section_gallery(out_dir), section_definitions(out_dir)]
    return page(title, body)


def classic_series(document: dict[str, Any]) -> dict[tuple[str, float, str], tuple[float, int]]:
    """(attack, ε, model) -> (accuracy, n) of a schema-1 run, with schema-2 model names."""
    names = {"float_accuracy": "float32", "reference_accuracy": "int8", "chip_accuracy": "chip:int8"}
    out = {}
    for e in document["evaluations"]:
        for key, model in names.items():
            if e.get(key) is not None:
                out[(e["attack"], float(e["eps"] or 0.0), model)] = (float(e[key]), int(e.get("n", 0)))
    return out


def study_series(document: dict[str, Any]) -> dict[tuple[str, float, str], tuple[float, int]]:
    """(attack, ε, model) -> (accuracy, n) of a schema-2 study (ε 0 when the attack has none)."""
    return {(e["attack"], float(e["eps"] or 0.0), k): (float(m["accuracy"]), int(m["n"]))
            for e in document["evaluations"] for k, m in e["models"].items() if m.get("accuracy") is not None}


def accuracy_series(document: dict[str, Any]) -> dict[tuple[str, float, str], tuple[float, int]]:
    return study_series(document) if document.get("schema") == 2 else classic_series(document)


def render_classic_html(document: dict[str, Any], out_dir: Path | None = None) -> str:
    """report.html of a `python -m host.evaluate` run (schema 1): its report.md as HTML plus a plot."""
    document = as_json(document)
    body = markdown_to_html(render_markdown(document))
    series = classic_series(document)
    clean = {m: acc for (a, _, m), (acc, _) in series.items() if a == "clean"}
    panels = []
    for attack in dict.fromkeys(a for a, _, _ in series if a != "clean"):
        per = {m: [(e, acc) for (a, e, mm), (acc, _) in series.items() if a == attack and mm == m]
               for m in ("float32", "int8", "chip:int8")}
        panels.append((attack, "ε (L∞ radius, input units)", {m: v for m, v in per.items() if v}))
    labels = {"float32": "float (host)", "int8": "int8 reference (TFLite Micro)", "chip:int8": "int8 on chip"}
    plot = ""
    if panels:
        plot = "<h2>Accuracy vs ε</h2>\n" + plot_or_note(lambda: plots.accuracy_sweeps(panels, clean, labels),
                                                          "accuracy vs epsilon")
    marker = "<h2>Attacks</h2>"
    body = body.replace(marker, plot + "\n" + marker, 1) if marker in body else body + plot
    return page(f"Robustness evaluation {document.get('run', {}).get('id', '')}", [body])


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
            out.append(f"<table>{head}{body}</table>")
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


# ---------------------------------------------------------------- comparison of two runs


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
    body = [f"<h1>Comparison: {esc(name_a)} vs {esc(name_b)}</h1>",
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

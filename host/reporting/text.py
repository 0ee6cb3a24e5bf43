"""The rows of a run's report and their text forms: the console tables, report.md, chip agreement,
and the one copy of the number formatting (pct, rate_text, fmt, eps_text) that the console, report.md
and report.html share.

Imports: no host module (numpy only); every other host.reporting module may import this one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = (
    ("attack", "attack"), ("ε", "eps"), ("float acc", "float_accuracy"), ("int8 ref acc", "reference_accuracy"),
    ("chip acc", "chip_accuracy"), ("attack success (float)", "attack_success_float"),
    ("transfer success (chip)", "transfer_success_chip"), ("chip = ref", "chip_reference_agreement"),
    ("median instr", "instructions_median"),
)
CYCLES_COLUMN = ("median cycles (est.)", "cycles_median")   # only in runs with --cycles


# ---------------------------------------------------------------- number formatting (console, report.md, HTML)


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage: "12.3 %"; – when missing (None or NaN)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f} %"


def rate_text(rate: Mapping[str, Any] | None) -> str:
    """A rate {"rate", "count"/"identical", "of"} as "12.3 % (4/40)"; – when missing or undefined."""
    if not rate:
        return "–"
    count = rate.get("count", rate.get("identical"))
    return "–" if rate.get("rate") is None else f"{100 * rate['rate']:.1f} % ({count}/{rate['of']})"


def fmt(value: Any, spec: str = ".4g") -> str:
    """A number in the given format spec; – when missing or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def eps_text(eps: float | None) -> str:
    """An attack's ε; – when it has none (None or 0: clean, minimal-perturbation attacks)."""
    return "–" if not eps else f"{eps:g}"


# ---------------------------------------------------------------- python -m host.evaluate runs (schema 1)


def format_cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "eps":
        return eps_text(value)
    if key == "cycles_median":
        return cycles_text(value)
    if isinstance(value, dict):  # a rate: {"rate", "count"/"identical", "of"}
        return rate_text(value)
    if key.endswith("accuracy"):
        return pct(value)
    if key == "instructions_median":
        return fmt(value, ",.0f")
    return str(value)


def cycles_text(cycles: Mapping[str, Any] | None) -> str:
    """Estimated cycles {"low", "high"} (branch refill at its lowest and highest) as "1,234–1,301"."""
    if not cycles:
        return "–"
    low, high = fmt(cycles.get("low"), ",.0f"), fmt(cycles.get("high"), ",.0f")
    return low if low == high else f"{low}–{high}"


def columns(document: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    with_cycles = any(ev.get("cycles_median") for ev in document["evaluations"])
    return (*COLUMNS, CYCLES_COLUMN) if with_cycles else COLUMNS


def table_rows(document: dict[str, Any]) -> list[list[str]]:
    return [[format_cell(key, ev.get(key)) for _, key in columns(document)] for ev in document["evaluations"]]


def render_text_table(document: dict[str, Any]) -> str:
    headers = [h for h, _ in columns(document)]
    rows = table_rows(document)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown_table(document: dict[str, Any]) -> str:
    return _markdown_table([h for h, _ in columns(document)], table_rows(document))


def mismatch_lines(document: dict[str, Any]) -> list[str]:
    lines = []
    for ev in document["evaluations"]:
        first = ev["chip_reference_agreement"]["first_mismatch"]
        if first:
            where = "clean" if ev["attack"] == "clean" else f"{ev['attack']} ε={ev['eps']:g}"
            lines.append(
                f"{where}: first mismatch at sample {first['sample']} (dataset index {first['dataset_index']}): "
                f"chip {first['chip']} vs reference {first['reference']}"
            )
    return lines


def render_markdown(document: dict[str, Any]) -> str:
    cfg, summary, run = document["config"], document["summary"], document["run"]
    verdict = (
        "**bit-exact**: every on-chip output equals the TFLite Micro reference byte for byte"
        if summary["bit_exact"]
        else f"**NOT bit-exact**: {summary['mismatched_inferences']} of {summary['inferences']} inferences differ"
    )
    parts = [
        f"# Robustness evaluation `{run.get('id', '')}`",
        "",
        f"- model: `{cfg['model']}` (sha256 `{cfg['model_sha256'][:16]}…`), float model `{cfg['float_model']}`",
        f"- int8 model ran on: {cfg['chip']} (backend `{cfg['backend']}`)",
        f"- dataset: {cfg['dataset']}, first {cfg['num']} samples; seed {cfg['seed']}",
        f"- input quantization: scale {cfg['input']['scale']:.8g}, zero point {cfg['input']['zero_point']}, "
        f"range {cfg['input_range']}",
        f"- {verdict}",
        f"- {summary['inferences']} inferences in {run.get('duration_s', 0):.1f} s",
        "",
        "## Results",
        "",
        render_markdown_table(document),
        "",
    ]
    mismatches = mismatch_lines(document)
    if mismatches:
        parts += ["## Chip vs reference mismatches", "", *[f"- {m}" for m in mismatches], ""]
    parts += ["## Attacks", ""]
    for ev in document["evaluations"]:
        if ev["attack"] != "clean" and ev["eps"] == cfg["eps"][0]:
            params = ", ".join(f"{k}={v}" for k, v in ev["params"].items() if k != "eps")
            parts.append(f"- `{ev['attack']}`: {params}")
    parts += ["", _DEFINITIONS]
    return "\n".join(parts)


_DEFINITIONS = """## Definitions

White-box attacks are crafted on the float model and the resulting float inputs are
quantized with the model's input scale/zero point; the reference and the chip receive
identical int8 bytes. For n evaluated samples with labels y:

- **float / int8 ref / chip acc**: share of the n inputs whose argmax equals y.
- **attack success (float)**: among inputs the float model classifies correctly when clean,
  the share it misclassifies under attack.
- **transfer success (chip)**: among inputs the chip classifies correctly when clean,
  the share it misclassifies under the (float-crafted) attack.
- **chip = ref**: share of inferences whose output bytes are identical on chip and reference (must be 100 %).
- **median instr**: median retired instructions per on-chip inference (– when the backend has no counter).
- **median cycles (est.)** (with `--cycles`): median estimated CPU cycles per on-chip inference, at the CPU
  model's lowest and highest branch refill (docs/performance.md).

metrics.json also holds `transfer_rate` (among inputs both classify correctly clean and the attack
fools the float model, the share that also fools the chip), `float_int8_agreement`, `linf_float`
and `linf_int8`. See docs/evaluate.md.
"""


def print_summary(document: dict[str, Any], paths: dict[str, Path]) -> None:
    print(render_text_table(document))
    for line in mismatch_lines(document):
        print(f"MISMATCH {line}")
    summary = document["summary"]
    verdict = "bit-exact" if summary["bit_exact"] else "NOT bit-exact"
    identical = summary["inferences"] - summary["mismatched_inferences"]
    print(f"chip vs reference: {verdict} ({identical}/{summary['inferences']} identical)")
    retries = document.get("run", {}).get("link_retries")
    if retries:
        print(f"link: {retries} request(s) sent again after a transit error (CRC/truncation); none executed twice")
    print(f"results: {paths['metrics'].parent}/ ({', '.join(p.name for p in paths.values() if p is not None)})")


# ---------------------------------------------------------------- configured studies (schema 2)


def study_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per attack × ε: accuracy of every model, transfer float→int8, chip agreement."""
    first = document["evaluations"][0]["models"]
    keys = [k for k in first if not k.startswith("sim:")]  # the bit-width sweep has its own table
    full = max(m["n"] for m in first.values())
    header = ["attack", "ε", *[f"{k} acc" + ("" if first[k]["n"] == full else f" (first {first[k]['n']})")
                              for k in keys], "L∞ mean", "queries", "chip = ref"]
    rows = []
    for e in document["evaluations"]:
        models = e["models"]
        agreement = [m["reference_agreement"] for m in models.values() if "reference_agreement" in m]
        same = f"{sum(a['identical'] for a in agreement)}/{sum(a['of'] for a in agreement)}" if agreement else "–"
        linf = e["perturbation"].get("linf", {}).get("mean")
        rows.append([e["attack"], eps_text(e["eps"]),
                     *[pct(models[k]["accuracy"]) if k in models else "–" for k in keys],
                     fmt(linf, ".4f"), str(e.get("queries") or "–"), same])
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def study_mismatch_lines(document: dict[str, Any]) -> list[str]:
    """Where a chip's outputs first differ from the reference's, per evaluation and chip."""
    lines = []
    for e in document["evaluations"]:
        where = "clean" if e["attack"] == "clean" else f"{e['attack']} ε={eps_text(e['eps'])}"
        for key, model in e["models"].items():
            first = model.get("reference_agreement", {}).get("first_mismatch")
            if first is not None:
                lines.append(f"{where}, {key}: first mismatch at sample {first}")
    return lines


def render_study_markdown(document: dict[str, Any]) -> str:
    exp = document["experiment"]
    header, rows = study_rows(document)
    parts = [f"# Study `{exp['name']}` — run `{document['run'].get('id', '')}`", "",
             f"- config: `{exp['config']}`, seed {exp['seed']}",
             f"- float model: `{exp['float_model']}`",
             *[f"- {p}: sha256 `{v['sha256'][:16]}…` ({v['origin']})" for p, v in exp["precisions"].items()],
             f"- dataset: `{exp['dataset']['path']}` from {exp['dataset']['start']}, {exp['dataset']['num']} samples, "
             f"input range {exp['dataset']['input_range']}",
             f"- chip: {exp['chip']['board'] or 'none'} {exp['chip']['precisions']} (first {exp['chip']['num']} of "
             f"every set)",
             *[f"- {what}: {same}/{of} identical" for what, same, of in chip_agreement(document)],
             *[f"- **MISMATCH** {line}" for line in study_mismatch_lines(document)],
             f"- wall time {wall_time(document['run'])}",
             *[f"- **attack `{f['attack']}` failed** and is left out: {f['error']}"
               for f in document["summary"].get("failed_attacks", [])],
             *[f"- **defense `{f['defense']}` failed** and is left out: {f['error']}"
               for f in document["summary"].get("failed_defenses", [])],
             "", "## Accuracy under attack", "",
             _markdown_table(header, rows), "", "## Transfer (among inputs both models classify correctly)", ""]
    t_header = ["attack", "ε", *document["evaluations"][0]["transfer"].keys()]
    t_rows = [[e["attack"], eps_text(e["eps"]),
               *[pct(v["rate"]) for v in e["transfer"].values()]] for e in document["evaluations"][1:]]
    parts += [_markdown_table(t_header, t_rows), "", "## Quantization shift (float vs quantized label on adversarial "
              "inputs: attenuation = float fooled, quantized not; amplification = the reverse)", ""]
    q_rows = [[e["attack"], eps_text(e["eps"]), p,
               pct(v["shift"]["rate"]), pct(v["attenuation"]["rate"]), pct(v["amplification"]["rate"])]
              for e in document["evaluations"][1:] for p, v in e["quantization_shift"].items()]
    parts += [_markdown_table(["attack", "ε", "precision", "shift", "attenuation", "amplification"], q_rows), "",
              "## Distance to the decision boundary (mean minimal successful perturbation over the ε sweep)", ""]
    b_rows = [[a, k, fmt(v.get("mean")), str(v.get("found", "–"))]
              for a, per in document["boundary_distance"].items() for k, v in per.items()]
    parts += [_markdown_table(["attack", "model", "mean distance", "found"], b_rows), "",
              "## Gradient misalignment (float gradient vs finite differences on the quantized model)", ""]
    g_rows = [[label, fmt(v.get("mean"), ".3f"), f"{v['zero_density']:.3f}", str(v["undefined"]), str(v["queries"])]
              for _, label, v in gradient_rows(document["gradient_misalignment"])]
    parts += [_markdown_table(["model", "mean cosine", "zero density", "undefined", "queries"], g_rows), ""]
    if FD_BASELINE in document["gradient_misalignment"]:
        parts += ["The float32 baseline is the same finite-difference estimator on the float32 model itself: read "
                  "the quantized models' cosines against it.", ""]
    parts += _chip_cost_section(document)
    parts += _defense_section(document)
    parts += _bitwidth_section(document)
    parts += ["Definitions: docs/metrics.md; defenses: docs/defenses.md."]
    return "\n".join(parts) + "\n"


FD_BASELINE = "float32 (FD baseline)"     # host.study.units: the estimator on the float model itself
FD_BASELINE_LABEL = "float32 baseline (FD on float32)"


def gradient_rows(misalignment: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, label, entry) of the gradient misalignment entries: the float32 baseline first, then the precisions."""
    ordered = sorted(misalignment.items(), key=lambda item: item[0] != FD_BASELINE)
    return [(k, FD_BASELINE_LABEL if k == FD_BASELINE else k, v) for k, v in ordered]


def chip_cost_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per chip, on the clean inputs: median instructions and (runs with cycles) median estimated cycles."""
    clean = document["evaluations"][0]
    chips = {k: m for k, m in clean["models"].items() if k.startswith("chip:")}
    with_cycles = any(m.get("cycles_median") for m in chips.values())
    header = ["chip", "n", "median instructions", *(["median cycles (est.)"] if with_cycles else [])]
    rows = [[key, str(m["n"]), fmt(m.get("instructions_median"), ",.0f"),
             *([cycles_text(m.get("cycles_median"))] if with_cycles else [])] for key, m in chips.items()]
    return header, rows


def _chip_cost_section(document: dict[str, Any]) -> list[str]:
    header, rows = chip_cost_rows(document)
    if not rows:
        return []
    return ["## Chip cost (clean inputs, per inference)", "",
            "Retired instructions (QEMU -icount); estimated cycles, where the run asked for them, at the CPU "
            "model's lowest–highest branch refill and the board file's wait states (docs/performance.md).", "",
            _markdown_table(header, rows), ""]


def defended_model_label(name: str, sub: dict[str, Any]) -> str:
    """How reports name a defended model: a train-based defense's "(trained)" here, a trained-model's own label."""
    return name if sub.get("defense", {}).get("name") == "trained-model" else f"{name} (trained)"


def defense_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Accuracy per model (host and chip) under every attack × ε: undefended, each pre-processing defense
    (non-adaptive: attacks crafted without it) and each defended model (trained here or given)."""
    models = list(document["evaluations"][0]["models"])
    rows = []

    def add(defense: str, evaluations: list[dict[str, Any]], pick: Any) -> None:
        for e in evaluations:
            per_model = pick(e)
            if per_model is None:
                continue
            rows.append([defense, e["attack"], eps_text(e["eps"]),
                         *[pct(per_model[m]["accuracy"]) if m in per_model else "–" for m in models]])

    add("none", document["evaluations"], lambda e: e["models"])
    names = sorted({n for e in document["evaluations"] for n in e.get("defended", {})})
    for name in names:
        add(name, document["evaluations"], lambda e, n=name: e.get("defended", {}).get(n, {}).get("models"))
    for name, sub in document.get("defended_models", {}).items():
        add(defended_model_label(name, sub), sub["evaluations"], lambda e: e["models"])
    return ["defense", "attack", "ε", *[f"{m} acc" for m in models]], rows


def bitwidth_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Accuracy of the host-simulated b-bit models next to float32 and the deployed precisions."""
    first = document["evaluations"][0]["models"]
    sims = [k for k in first if k.startswith("sim:")]
    deployed = [k for k in first if not k.startswith(("sim:", "chip:"))]
    rows = [[e["attack"], eps_text(e["eps"]),
             *[pct(e["models"][k]["accuracy"]) if k in e["models"] else "–" for k in deployed + sims]]
            for e in document["evaluations"]]
    return ["attack", "ε", *[k.removeprefix("sim:") for k in deployed + sims]], rows


def _bitwidth_section(document: dict[str, Any]) -> list[str]:
    parts = []
    if any(k.startswith("sim:") for k in document["evaluations"][0]["models"]):
        header, rows = bitwidth_rows(document)
        parts += ["## Bit-width sweep (host-simulated: wN = N-bit weights, wNaN = N-bit weights and activations, "
                  "wNaNe8 = the same with 8-bit edges)",
                  "", _markdown_table(header, rows), ""]
    header, rows = targeted_rows(document)
    if rows:
        parts += ["## Targeted success (share of the inputs not of the target class that each model puts in it)",
                  "", _markdown_table(header, rows), ""]
    return parts


def targeted_models(document: dict[str, Any]) -> list[str]:
    """Model keys for the targeted-success table: host precisions, the chips, then the simulated widths."""
    keys = list(document["evaluations"][0]["models"])
    return [k for k in keys if not k.startswith("sim:")] + [k for k in keys if k.startswith("sim:")]


def targeted_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Targeted attacks (the patch): per model, the share of non-target inputs sent to the target class."""
    keys = targeted_models(document)
    rows = [[e["attack"], eps_text(e["eps"]), str(e["target_class"]),
             *[pct(e["models"][k]["targeted_success"]["rate"]) if k in e["models"] else "–" for k in keys]]
            for e in document["evaluations"] if "target_class" in e]
    return ["attack", "ε", "target class", *[k.removeprefix("sim:") for k in keys]], rows


def defense_chip_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Pre-processing defenses whose stage ran on the chip (on_chip = true): the chip's accuracy, the
    reference's on the host's integer pre-processing, bit-exactness and median instructions."""
    rows = []
    for e in document["evaluations"]:
        for name, defended in sorted(e.get("defended", {}).items()):
            for key, m in defended["models"].items():
                if not key.startswith("chip:"):
                    continue
                precision = key.split(":", 1)[1]
                agree = m["reference_agreement"]
                rows.append([name, e["attack"], eps_text(e["eps"]), precision,
                             pct(m["accuracy"]), pct(defended["models"][f"stage-ref:{precision}"]["accuracy"]),
                             f"{agree['identical']}/{agree['of']}", *(fmt(m.get(k), ",.0f") for k in (
                                 "preprocess_instructions_median", "instructions_median",
                                 "total_instructions_median"))])
    header = ["defense", "attack", "ε", "precision", "chip acc", "ref acc (integer stage)", "chip = ref",
              "pre-processing instr", "inference instr", "total instr"]
    return header, rows


def wall_time(run: dict[str, Any]) -> str:
    """The run's duration; a resumed run did not run again the units read back from its journal."""
    text = f"{run.get('duration_s', '?')} s"
    if "--resume" in run.get("argv", []):
        text += " (the last process of a resumed run: parts finished before it are not included)"
    return text


def chip_agreement(document: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(what ran, identical, of) for every group of chip runs in a study: its models, the firmware
    pre-processing stages, and the same for each model a train-based defense produced."""
    s = document.get("summary", {})
    groups = []
    if s.get("chip_inferences"):
        groups.append(("chip vs reference", s["chip_inferences"] - s["chip_mismatches"], s["chip_inferences"]))
    if s.get("defended_chip_inferences"):
        groups.append(("pre-processing on the chip vs reference on the integer stage",
                       s["defended_chip_inferences"] - s["defended_chip_mismatches"], s["defended_chip_inferences"]))
    for name, sub in document.get("defended_models", {}).items():
        whose = name if sub.get("defense", {}).get("name") == "trained-model" else f"model trained by {name}"
        groups += [(f"{what} ({whose})", same, of) for what, same, of in chip_agreement(sub)]
    return groups


def agreement_text(same: int, of: int) -> str:
    """The verdict on one group of chip runs, as the console and report.html print it."""
    return f"{'bit-exact' if same == of else 'NOT bit-exact'} ({same}/{of} identical)"


def chip_mismatches(document: dict[str, Any]) -> int:
    """Chip outputs that differ from the reference, over every group of chip_agreement."""
    return sum(of - same for _, same, of in chip_agreement(document))


def _defense_section(document: dict[str, Any]) -> list[str]:
    if not document.get("defended_models") and not any("defended" in e for e in document["evaluations"]):
        return []
    header, rows = defense_rows(document)
    parts = ["## Defenses (host models; pre-processing defenses against attacks that ignore them)", "",
             _markdown_table(header, rows), ""]
    chip_header, chip_rows = defense_chip_rows(document)
    if chip_rows:
        parts += ["### Pre-processing on the chip (the firmware stage; medians over the inputs)", "",
                  _markdown_table(chip_header, chip_rows), ""]
    return parts


def print_study(document: dict[str, Any], paths: dict[str, Path]) -> None:
    header, rows = study_rows(document)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, ["-" * w for w in widths], *rows):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    s = document["summary"]
    for failure in s.get("failed_attacks", []):
        print(f"FAILED   {failure['attack']}: {failure['error']}")
    for failure in s.get("failed_defenses", []):
        print(f"FAILED   defense {failure['defense']}: {failure['error']}")
    for what, same, of in chip_agreement(document):
        print(f"{what}: {agreement_text(same, of)}")
    print(f"results: {paths['metrics'].parent}/ ({', '.join(p.name for p in paths.values())})")


def json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)

"""host.reporting (sections, classic, comparison, plots, files) and python -m host.report: HTML reports, regeneration,
comparison, errors. The module layout and its import rules: tests/reporting/test_report_sections.py."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from host import report
from host.core.errors import run_cli
from host.core.paths import RESULTS_DIR, ROOT
from host.reporting import files, plots
from host.reporting import text as report_text
from host.reporting.sections import render_study_html
from host.study.gallery import GALLERY_FILE, gallery_arrays, gallery_entry, load_gallery

HAS_MPL = plots.available()
DG_EPS = [0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008]
HOST = ("float32", "int16x8", "int8")
CHIP = ("chip:int16x8", "chip:int8")
SECTIONS = ("config", "accuracy", "transfer", "perturbation", "chip", "defenses", "shift", "bitwidth", "boundary",
            "gradient", "gallery", "definitions")


# ---------------------------------------------------------------- synthetic documents


def _rate(count: int, of: int) -> dict[str, Any]:
    return {"rate": None if of == 0 else count / of, "count": count, "of": of}


def _evaluation(attack: str, eps: float | None, strength: float, n: int = 50, chip_n: int = 10,
                norm: str = "inf") -> dict[str, Any]:
    models = {}
    for i, key in enumerate((*HOST, *CHIP)):
        size = chip_n if key.startswith("chip:") else n
        acc = max(0.0, 0.9 - strength - 0.02 * (i % 3))
        entry: dict[str, Any] = {"n": size, "accuracy": acc, "attack_success": _rate(int(size * strength), size)}
        if key.startswith("chip:"):
            entry["reference_agreement"] = {"identical": size, "of": size, "first_mismatch": None}
            entry["instructions_median"] = 2_004_720.0 if "16" in key else 1_349_360.0
        models[key] = entry
    fooled = int(n * strength)
    e: dict[str, Any] = {
        "attack": attack, "eps": eps, "models": models,
        "transfer": {"float32->int16x8": _rate(fooled, fooled), "float32->int8": _rate(max(0, fooled - 2), fooled),
                     "int16x8->int8": _rate(max(0, fooled - 1), fooled)},
        "perturbation": {k: {"mean": (eps or 0.3) * f, "max": (eps or 0.3) * f * 1.5, "n": n,
                             "histogram": {"edges": [(eps or 0.3) * f * (1 + i / 4) for i in range(5)],
                                           "counts": [5, 20, 15, 10], "zero": 0 if eps else 2}}
                         for k, f in (("l0", 3000), ("l1", 300), ("l2", 20), ("linf", 1))},
        "quantization_shift": {p: {"shift": _rate(3, n), "attenuation": _rate(2, n), "amplification": _rate(1, n)}
                               for p in ("int16x8", "int8")},
    }
    if attack != "clean":
        e.update(threat_model="white-box", norm=norm, params={"eps": eps})
    return e


def synthetic_study(run_id: str = "synthetic", shift: float = 0.0) -> dict[str, Any]:
    """A D&G-shaped schema-2 document: a PGD sweep spanning decades, a single-ε and a minimal attack."""
    evaluations = [_evaluation("clean", 0.0, 0.0)]
    evaluations[0]["perturbation"] = {k: {"mean": 0.0, "max": 0.0, "n": 50} for k in ("l0", "l1", "l2", "linf")}
    evaluations += [_evaluation("pgd", eps, min(0.9, 100 * eps + shift)) for eps in DG_EPS]
    evaluations += [_evaluation("autoattack", 0.004, 0.6), _evaluation("cw-l2", None, 0.8, norm="2")]
    return {
        "schema": 2,
        "experiment": {
            "name": "synthetic-dg", "config": "configs/synthetic.toml", "seed": 0, "float_model": "m.h5",
            "precisions": {p: {"sha256": "ab" * 32, "origin": "given", "input": {"scale": 1 / 255, "zero_point": -128}}
                           for p in ("int16x8", "int8")},
            "dataset": {"path": "data.npz", "start": 0, "num": 50, "input_range": [0.0, 1.0]},
            "chip": {"board": "mps2-an386", "precisions": ["int8", "int16x8"], "num": 10},
            "attacks": [{"name": "pgd", "eps": DG_EPS, "params": {"max_iter": 20}},
                        {"name": "autoattack", "eps": [0.004], "params": {}},
                        {"name": "cw-l2", "eps": [None], "params": {"max_iter": 10}}],
        },
        "evaluations": evaluations,
        "boundary_distance": {a: {p: {"mean": 0.003, "found": 40, "unbroken": 10} for p in HOST}
                              for a in ("pgd", "autoattack", "cw-l2")},
        "gradient_misalignment": {p: {"cosine": [0.5, float("nan"), 0.7, -0.1], "mean": 0.366, "undefined": 1,
                                      "zero_density": 0.25, "queries": 256, "samples": 4, "fd": "random"}
                                  for p in ("int16x8", "int8")}
        | {"float32 (FD baseline)": {"cosine": [0.6, 0.55, 0.62, 0.58], "mean": 0.5875, "undefined": 0,
                                     "zero_density": 0.0, "queries": 256, "samples": 4, "fd": "random"}},
        "summary": {"chip_inferences": 200, "chip_mismatches": 0, "evaluations": len(evaluations)},
        "run": {"duration_s": 12.3, "id": run_id, "argv": ["--config", "configs/synthetic.toml"]},
    }


def synthetic_gallery(document: dict[str, Any], k: int = 4, shape: tuple[int, ...] = (8, 8, 3)) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, *shape)).astype(np.float32)
    y = np.arange(6) % 10
    clean = {m: y.copy() for m in HOST} | {m: y[:2].copy() for m in CHIP}
    entries = []
    for e in document["evaluations"][1:]:
        eps = e["eps"] or 0.05
        x_adv = np.clip(x + rng.uniform(-eps, eps, x.shape), 0, 1).astype(np.float32)
        n = 3 if e["attack"] == "cw-l2" else len(x)          # an attack run on fewer inputs than k
        preds = {m: (p[:n] + 1) % 10 for m, p in clean.items()} | {"int8": y[:n]}
        entries.append(gallery_entry(e["attack"], e["eps"], x_adv[:n], preds, k=k))
    return gallery_arrays(x, y, clean, entries, (0.0, 1.0), k=k)


def synthetic_classic(run_id: str = "classic") -> dict[str, Any]:
    """A schema-1 document (python -m host.evaluate)."""
    evals = []
    for attack, eps, acc in (("clean", 0.0, 0.96), ("fgsm", 0.05, 0.8), ("fgsm", 0.1, 0.4), ("pgd", 0.05, 0.7),
                             ("pgd", 0.1, 0.1)):
        evals.append({"attack": attack, "eps": eps, "params": {"eps": eps, "seed": 0}, "n": 50,
                      "float_accuracy": acc, "reference_accuracy": acc + 0.02, "chip_accuracy": acc + 0.02,
                      "attack_success_float": _rate(10, 48), "transfer_success_chip": _rate(9, 48),
                      "transfer_rate": _rate(9, 10), "chip_reference_agreement": {
                          "rate": 1.0, "identical": 50, "of": 50, "first_mismatch": None},
                      "instructions_median": 1_349_680.0})
    return {"schema": 1, "config": {
        "model": "models/digits_cnn_int8.tflite", "model_sha256": "00" * 32, "float_model": "models/digits_cnn.keras",
        "backend": "device", "chip": "mps2-an386 (on-chip)", "dataset": "digits-test", "num": 50, "seed": 0,
        "eps": [0.05, 0.1], "attacks": ["fgsm", "pgd"], "input": {"scale": 1 / 255, "zero_point": -128},
        "input_range": [0.0, 1.0]},
        "evaluations": evals, "summary": {"bit_exact": True, "mismatched_inferences": 0, "inferences": 250},
        "run": {"duration_s": 3.0, "id": run_id, "argv": []}}


def write_run(directory: Path, document: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(document, indent=2))
    return directory


def run_report(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "host.report", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html), "no network resources"
    assert not re.search(r'src="(?!data:image/png;base64,)', html), "every image embedded"
    # no link that breaks when the file is moved or mailed (../../docs/..., file://): only the page's own anchors
    assert re.findall(r'href="(?!#)[^"]*"', html) == [], "links leave the file"
    assert "<style>" in html


# ---------------------------------------------------------------- the study report


def test_write_study_writes_html_with_sections_plots_and_gallery(tmp_path: Path) -> None:
    document = synthetic_study()
    document["_gallery"] = synthetic_gallery(document)
    paths = files.write_study(document, tmp_path / "run")
    assert "_gallery" not in document
    assert {p.name for p in paths.values()} == {"metrics.json", "report.md", "report.html", GALLERY_FILE}
    assert "_gallery" not in json.loads(paths["metrics"].read_text())
    html = paths["html"].read_text()
    assert_self_contained(html)
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    for text in ("synthetic-dg", "Attacks without an ε sweep", "<td>cw-l2</td>", "float32 → int16x8",
                 "attenuation", "1,349,360", "unbroken", "zero density",
                 "docs/metrics.md § Transfer rate (source → target)", "|δ|∞ ="):
        assert text in html, text
    pngs = embedded_pngs(html)
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    plots_count = html.count('class="plot"')
    if HAS_MPL:
        # accuracy sweep, single-ε bars, transfer, norms, norm histograms, instructions, shift, cosines
        assert plots_count == 8
        # gallery: 8 evaluations × 4 samples × 3 images, minus the cw-l2 input not attacked (3 images)
        assert html.count('class="sample"') == 8 * 4 * 3 - 3
    else:
        assert plots_count == 0 and "matplotlib is not installed" in html


def test_study_html_without_norm_histograms_says_so(tmp_path: Path) -> None:
    document = synthetic_study()
    for e in document["evaluations"]:
        for norm in e["perturbation"].values():
            norm.pop("histogram", None)
    html = render_study_html(document, tmp_path)
    assert "No per-input histograms: this run predates them" in html
    assert "Distribution over the inputs" not in html


def test_study_html_without_gallery_says_so(tmp_path: Path) -> None:
    html = render_study_html(synthetic_study(), tmp_path)
    assert "No gallery.npz in this run" in html
    assert 'class="sample"' not in html


def test_study_html_compares_defenses(tmp_path: Path) -> None:
    document = synthetic_study()
    evaluations = document["evaluations"]
    for e in evaluations:
        e["defended"] = {"feature-squeezing": {"models": {
            m: {"accuracy": 0.5, "n": 6} for m in HOST} | {
            "chip:int8": {"accuracy": 0.5, "n": 2, "reference_agreement": {"identical": 2, "of": 2},
                          "preprocess_instructions_median": 2000.0, "instructions_median": 271040.0,
                          "total_instructions_median": 273040.0},
            "stage-ref:int8": {"accuracy": 0.5, "n": 2}}}}
    document["defended_models"] = {"pgd-at": {"evaluations": [
        {"attack": e["attack"], "eps": e["eps"], "models": {m: {"accuracy": 0.6, "n": 6} for m in HOST}}
        for e in evaluations]}}
    html = render_study_html(document, tmp_path)
    section = html[html.index('id="defenses"'):html.index('id="shift"')]
    for text in ("feature-squeezing", "pgd-at (trained)", "Pre-processing on the chip", "273,040", "2/2"):
        assert text in section, text
    if HAS_MPL:
        assert section.count('class="plot"') == 2       # int8 and int16x8


def test_chip_agreement_counts_the_models_a_defense_trained(tmp_path: Path) -> None:
    document = synthetic_study()
    document["defended_models"] = {"pgd-at": {"evaluations": [], "summary": {
        "chip_inferences": 20, "chip_mismatches": 1, "evaluations": 1}}}
    assert report_text.chip_agreement(document) == [("chip vs reference", 200, 200),
                                               ("chip vs reference (model trained by pgd-at)", 19, 20)]
    assert report_text.chip_mismatches(document) == 1       # evaluate exits 1 on it
    markdown = report_text.render_study_markdown(document)
    assert "- chip vs reference (model trained by pgd-at): 19/20 identical" in markdown
    html = render_study_html(document, tmp_path)
    assert '<p class="fail">chip vs TFLite Micro reference (model trained by pgd-at): NOT bit-exact (19/20' in html


def test_a_resumed_runs_wall_time_says_it_is_the_last_process_only(tmp_path: Path) -> None:
    document = synthetic_study()
    assert "- wall time 12.3 s\n" in report_text.render_study_markdown(document)
    document["run"]["argv"] += ["--resume", "synthetic"]
    for text in (report_text.render_study_markdown(document), render_study_html(document, tmp_path)):
        assert "12.3 s (the last process of a resumed run: parts finished before it are not included)" in text


def test_study_html_without_defenses_says_so(tmp_path: Path) -> None:
    assert "No defense in this study" in render_study_html(synthetic_study(), tmp_path)


def with_bitwidths_and_patch(document: dict[str, Any]) -> dict[str, Any]:
    """Simulated 2- and 8-bit models (weights, weights + activations) on every evaluation, and a patch."""
    sims = ("sim:w2", "sim:w8", "sim:w2a2", "sim:w8a8")
    patch = _evaluation("patch", None, 0.7, norm="patch")
    patch["target_class"] = 0
    document["evaluations"].append(patch)
    for e in document["evaluations"]:
        e["models"].update({k: {"n": 50, "accuracy": 0.1 if "2" in k else 0.8, "attack_success": _rate(0, 40)}
                            for k in sims})
    for key, m in patch["models"].items():
        m["targeted_success"] = _rate(30 if key != "sim:w2a2" else 4, 45)
    return document


def test_study_html_shows_bit_widths_and_targeted_success(tmp_path: Path) -> None:
    html = render_study_html(with_bitwidths_and_patch(synthetic_study()), tmp_path)
    accuracy = html[html.index('id="accuracy"'):html.index('id="transfer"')]
    assert "sim:w2" not in accuracy                       # the sweep has its own section
    section = html[html.index('id="bitwidth"'):html.index('id="boundary"')]
    for text in ("Targeted success", "<td>patch</td>", "w2a2", "8.9 %", "66.7 %"):
        assert text in section, text
    if HAS_MPL:
        assert section.count('class="plot"') == 2         # accuracy vs ε per width, targeted bars
    markdown = report_text.render_study_markdown(with_bitwidths_and_patch(synthetic_study()))
    assert "## Targeted success" in markdown and "| patch | – | 0 | 66.7 %" in markdown


def test_simulated_widths_have_their_own_styles() -> None:
    assert plots.simulated_width("sim:w4a4") == (4, True) and plots.simulated_width("sim:w8") == (8, False)
    assert plots.simulated_width("int8") is None and plots.simulated_width("chip:int8") is None
    assert plots.model_style("sim:w2")["color"] != plots.model_style("sim:w8")["color"]
    assert plots.model_style("sim:w4")["linestyle"] != plots.model_style("sim:w4a4")["linestyle"]
    assert plots.bar_hatch("chip:int8") == "//" and plots.bar_hatch("sim:w4a4") == ".."
    assert plots.bar_hatch("int8") is None
    assert plots.simulated_width("sim:w2a2e8-qat") == (2, True) and plots.simulated_width("sim:w3a3e8") == (3, True)
    assert plots.model_style("sim:w2a2e8")["marker"] != plots.model_style("sim:w2a2")["marker"]


def test_long_legend_labels_wrap_and_take_fewer_columns() -> None:
    pgd_at = "pgd-at(eps=0.008, max_iter=10, epochs=1, learning_rate=2e-05) (trained)"
    wrapped, ncols = plots.legend_layout({"none": "none", "fs4": "feature-squeezing(bit_depth=4)", "at": pgd_at})
    assert all(len(line) <= plots.LEGEND_WRAP for line in wrapped["at"].splitlines())
    assert wrapped["at"].replace("\n", " ") == pgd_at and wrapped["none"] == "none"
    assert ncols == 2                                   # five columns of these ran off the figure
    assert plots.legend_layout({k: k for k in ("float32", "int16x8", "int8", "chip:int8", "chip:int16x8")})[1] == 5


def test_gallery_arrays_format(tmp_path: Path) -> None:
    document = synthetic_study()
    arrays = synthetic_gallery(document, k=4)
    e, m, k = len(document["evaluations"]) - 1, len(HOST) + len(CHIP), 4
    assert arrays["x_clean"].shape == (k, 8, 8, 3) and arrays["x_clean"].dtype == np.float32
    assert arrays["x_adv"].shape == (e, k, 8, 8, 3)
    assert arrays["pred"].shape == (e, m, k) and arrays["pred_clean"].shape == (m, k)
    assert list(arrays["models"]) == [*HOST, *CHIP]
    assert list(arrays["attack"][:2]) == ["pgd", "pgd"] and np.isnan(arrays["eps"][-1])
    chip = list(arrays["models"]).index("chip:int8")
    assert list(arrays["pred_clean"][chip]) == [0, 1, -1, -1]          # the chip ran the first 2 only
    assert np.isnan(arrays["x_adv"][-1, 3]).all() and np.isfinite(arrays["x_adv"][-1, :3]).all()
    assert arrays["pred"][-1, 0, 3] == -1
    path = tmp_path / GALLERY_FILE
    np.savez_compressed(path, **arrays)
    loaded = load_gallery(path)                                         # no pickle needed
    assert loaded["models"].dtype.kind == "U" and loaded["attack"].dtype.kind == "U"


def test_gallery_entry_copies() -> None:
    x_adv = np.zeros((100, 2, 2, 1), np.float32)
    entry = gallery_entry("fgsm", 0.1, x_adv, {"int8": np.arange(100)}, k=3)
    assert entry.x_adv.shape == (3, 2, 2, 1) and entry.x_adv.base is None
    assert list(entry.preds["int8"]) == [0, 1, 2]


def test_bad_gallery_is_a_note_not_a_crash(tmp_path: Path) -> None:
    np.savez(tmp_path / GALLERY_FILE, x_clean=np.zeros((2, 2)))
    html = render_study_html(synthetic_study(), tmp_path)
    assert "not a gallery (missing" in html


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib not installed")
def test_log_scale_for_sweeps_spanning_decades() -> None:
    assert plots.log_scale(DG_EPS) and not plots.log_scale([0.05, 0.1, 0.2])


# ---------------------------------------------------------------- python -m host.report


def test_regenerate_study_and_classic(tmp_path: Path) -> None:
    study = write_run(tmp_path / "study", synthetic_study())
    classic = write_run(tmp_path / "classic", synthetic_classic())
    proc = run_report(str(study))
    assert proc.returncode == 0, proc.stderr
    assert (study / "report.md").read_text() == report_text.render_study_markdown(synthetic_study())
    assert_self_contained((study / "report.html").read_text())
    assert run_cli(report.main, [str(classic)]) == 0
    html = (classic / "report.html").read_text()
    assert_self_contained(html)
    assert "<table>" in html and "bit-exact" in html and "<h2>Definitions</h2>" in html
    assert (classic / "report.md").read_text() == report_text.render_markdown(synthetic_classic())
    if HAS_MPL:
        assert "Accuracy vs ε" in html and len(embedded_pngs(html)) == 1


def test_regenerate_by_run_id(tmp_path: Path) -> None:
    run_id = f"test-report-html-{tmp_path.name}"
    directory = RESULTS_DIR / run_id
    try:
        write_run(directory, synthetic_classic(run_id))
        assert run_cli(report.main, [run_id]) == 0
        assert (directory / "report.html").exists()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_compare_two_runs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "run-a", synthetic_study("run-a"))
    changed = synthetic_study("run-b", shift=0.1)
    changed["experiment"]["seed"] = 7
    b = write_run(tmp_path / "run-b", changed)
    proc = run_report(str(a), str(b), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "comparison.html").read_text()
    assert_self_contained(html)
    assert "run-a" in html and "run-b" in html and "seed" in html
    # pgd ε=0.001: accuracy 0.8 vs 0.7 for float32 → −10.0 pt
    assert re.search(r"<td>pgd</td><td>0.001</td><td>float32</td>.*?−?-10.0 pt", html)
    if HAS_MPL:
        assert len(embedded_pngs(html)) == 1
    # a schema-1 run against a study, written where --out says
    c = write_run(tmp_path / "classic", synthetic_classic())
    out = tmp_path / "cmp" / "x.html"
    assert run_cli(report.main, [str(c), str(a), "--out", str(out)]) == 0
    text = out.read_text()
    assert "<td>clean</td><td>–</td><td>float32</td>" in text and "Only in one run" in text


def test_real_digits_quick_run_if_present(tmp_path: Path) -> None:
    source = RESULTS_DIR / "dq" / "metrics.json"
    if not source.exists():
        pytest.skip("no results/dq (python -m host.evaluate --config configs/digits-quick.toml --quick --run-id dq)")
    directory = tmp_path / "dq"
    directory.mkdir()
    shutil.copy(source, directory / "metrics.json")
    assert run_cli(report.main, [str(directory)]) == 0
    html = (directory / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html
    assert "digits-quick" in html


# ---------------------------------------------------------------- errors


def _unknown_schema(d: Path) -> None:
    write_run(d, {"schema": 99, "evaluations": []})


def _bad_json(d: Path) -> None:
    d.mkdir()
    (d / "metrics.json").write_text("{not json")


def _malformed(d: Path) -> None:
    document = synthetic_study()
    del document["experiment"]
    write_run(d, document)


@pytest.mark.parametrize(("setup", "args", "message"), [
    (None, ["no-such-run-xyz"], "no run 'no-such-run-xyz'"),
    (lambda d: d.mkdir(), ["{d}"], "is not a results directory (no metrics.json)"),
    (_unknown_schema, ["{d}"], "unknown metrics.json schema 99"),
    (_bad_json, ["{d}"], "not readable JSON"),
    (_malformed, ["{d}"], "incomplete or malformed schema-2 document"),
    (lambda d: write_run(d, synthetic_classic()), ["{d}", "{d}", "{d}"], "give one run"),
    (lambda d: write_run(d, synthetic_classic()), ["{d}", "--out", "x.html"], "--out applies to comparisons"),
    (lambda d: write_run(d, synthetic_classic()), ["{d}", "no-such-run-xyz"], "no run 'no-such-run-xyz'"),
])
def test_errors_are_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: Any, args: list[str],
                          message: str) -> None:
    d = tmp_path / "run"
    if setup is not None:
        setup(d)
    code = run_cli(report.main, [a.format(d=d) for a in args])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ") and message in err, err


def test_error_from_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    proc = run_report(str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "no metrics.json" in proc.stderr


def test_write_study_survives_a_broken_html_render(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(document: dict[str, Any], out_dir: Path | None = None) -> str:
        raise ValueError("boom")

    monkeypatch.setattr("host.reporting.files.render_study_html", broken)
    paths = files.write_study(synthetic_study(), tmp_path)
    assert paths["metrics"].exists() and paths["report"].exists()
    assert "html" not in paths
    err = capsys.readouterr().err
    assert "warning: report.html not written (ValueError: boom)" in err and "python -m host.report" in err

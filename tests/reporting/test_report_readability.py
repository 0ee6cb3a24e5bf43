"""The report reads well (issue 19, point 7): class names, legible and comparable plots, the gradient baseline,
no link that breaks when report.html moves, a warning on unlike comparisons, and a real browser's view of it."""

from __future__ import annotations

import html as html_lib
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from host import report
from host.core.errors import run_cli
from host.core.paths import RESULTS_DIR
from host.reporting import files, plots
from host.reporting import text as report_text
from host.reporting.document import CIFAR10_CLASSES, class_names
from host.reporting.sections import render_study_html
from host.study.gallery import GALLERY_FILE, write_gallery
from tests.reporting.test_report_html import (
    DG_EPS,
    HAS_MPL,
    assert_self_contained,
    synthetic_gallery,
    synthetic_study,
    with_bitwidths_and_patch,
    write_run,
)

needs_mpl = pytest.mark.skipif(not HAS_MPL, reason="matplotlib is not installed")


def _with_gallery(document: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_gallery(synthetic_gallery(document), directory / GALLERY_FILE)
    return directory


# ---------------------------------------------------------------- 1. class names


@needs_mpl
def test_gallery_shows_cifar10_class_names(tmp_path: Path) -> None:
    document = synthetic_study()
    document["experiment"]["dataset"]["path"] = "/data/shared/cifar10/test_first1017.npz"
    html = render_study_html(document, _with_gallery(document, tmp_path / "run"))
    # labels 0..3 of the synthetic gallery (k = 4); the predictions (label + 1) are wrong, in red, by name too
    for name in ("airplane", "automobile", "bird", "cat"):
        assert f"<td>{name}</td>" in html, name
    assert '<span class="wrong">automobile</span>' in html
    assert "<tr><td>1</td><td>automobile</td>" in html and "<tr><td>1</td><td>1</td>" not in html


@needs_mpl
def test_gallery_keeps_digit_labels(tmp_path: Path) -> None:
    document = synthetic_study()
    document["experiment"]["dataset"]["path"] = "builtin:digits-test"
    html = render_study_html(document, _with_gallery(document, tmp_path / "run"))
    assert "<tr><td>3</td><td>3</td>" in html and "airplane" not in html


def test_class_names_from_the_dataset_file_or_the_document(tmp_path: Path) -> None:
    data = tmp_path / "flowers.npz"
    np.savez(data, x=np.zeros((2, 4, 4, 3), np.uint8), y=np.array([0, 1]), class_names=np.array(["rose", "tulip"]))
    document = synthetic_study()
    document["experiment"]["dataset"]["path"] = str(data)
    assert class_names(document) == ["rose", "tulip"]
    document["experiment"]["dataset"]["class_names"] = ["a", "b"]
    assert class_names(document) == ["a", "b"]
    plain = synthetic_study()
    assert class_names(plain, [0, 1]) is None                        # data.npz: no names, not CIFAR
    plain["experiment"]["dataset"]["path"] = "../shared/data/CIFAR-10/test.npz"
    assert class_names(plain, [0, 9]) == list(CIFAR10_CLASSES)
    assert class_names(plain, [0, 42]) is None                       # labels beyond 9: not CIFAR-10
    plain["experiment"]["dataset"]["path"] = "../shared/data/cifar100/test.npz"
    assert class_names(plain, [0, 9]) is None


# ---------------------------------------------------------------- 2., 3. the norm histograms


def _tick_boxes(fig: Any) -> list[list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [[t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
            for ax in fig.axes]


@needs_mpl
@pytest.mark.parametrize("eps", [DG_EPS, [1e-5, 0.3], [0.05, 0.1, 0.2, 0.4], [25.0, 60.0]])
def test_histogram_tick_labels_do_not_run_together(eps: list[float]) -> None:
    rows = [f"pgd ε={e:g}" for e in eps]
    histograms = {norm: [{"edges": [e * scale * (1 + i / 4) for i in range(5)], "counts": [5, 20, 15, 10],
                          "zero": 0} for e in eps] for norm, scale in (("l0", 3000), ("l2", 20), ("linf", 1))}
    fig = plots.norm_histograms_figure(rows, histograms)
    for boxes in _tick_boxes(fig):
        assert len(boxes) >= 2, "every panel keeps at least two labelled ticks"
        boxes.sort(key=lambda b: b.x0)
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert right.x0 - left.x1 >= 2, f"tick labels overlap: {left} {right}"
    assert plots.short_number(1e-5) == "1e-5" and plots.short_number(0.0002) == "0.0002"


@needs_mpl
@pytest.mark.parametrize("edges", [[0.05, 0.05], [0.0495, 0.0505], [0.0499, 0.05, 0.0501]])
def test_equal_norms_keep_a_visible_ridge(edges: list[float]) -> None:
    """All inputs with the same norm: a zero-width (or 1 %) histogram still spans a visible part of the axis."""
    counts = [40] * (len(edges) - 1)
    rows = ["fgsm ε=0.05", "square-l2 ε=1"]
    histograms = {"linf": [{"edges": edges, "counts": counts, "zero": 0},
                           {"edges": [0.1, 0.3, 0.7], "counts": [3, 5], "zero": 1}]}
    fig = plots.norm_histograms_figure(rows, histograms)
    ax = fig.axes[0]
    ridges = ax.collections
    assert len(ridges) == 2, "both rows are drawn"
    lo, hi = ax.get_xlim()
    axis_decades = math.log10(hi / lo)
    for ridge in ridges:
        x = ridge.get_paths()[0].vertices[:, 0]
        assert math.log10(x.max() / x.min()) >= 0.03 * axis_decades, "ridge narrower than 3 % of the axis"


# ---------------------------------------------------------------- 4. the quantization-shift panels


@needs_mpl
def test_shift_panels_share_one_x_scale() -> None:
    rows = ["fgsm ε=0.1", "pgd ε=0.1"]
    panels = {"int16x8": {"shift": [0.02, 0.1], "attenuation": [0.01, 0.05], "amplification": [0.0, 0.05]},
              "int8": {"shift": [0.05, 0.2], "attenuation": [0.0, 0.0], "amplification": [0.05, 0.2]}}
    fig = plots.shift_bars_figure(rows, panels)
    limits = {ax.get_xlim() for ax in fig.axes}
    assert len(limits) == 1, limits
    assert next(iter(limits))[1] >= 0.2
    assert plots.shift_bars(rows, panels).startswith(b"\x89PNG")


# ---------------------------------------------------------------- 5. the gradient baseline


def test_gradient_section_shows_the_float32_baseline(tmp_path: Path) -> None:
    document = synthetic_study()
    html = render_study_html(document, tmp_path)
    part = html[html.index('id="gradient"'):html.index('id="gallery"')]
    assert "<th>vs baseline</th>" in part
    rows = [html_lib.unescape(r) for r in part.split("<tr>")[2:]]
    assert rows[0].startswith("<td>float32 baseline (FD on float32)</td>"), "baseline first, to read the rest by"
    assert "<td>int8</td>" in rows[2] and '<td class="num">-0.222</td>' in rows[2]    # 0.366 − 0.5875
    markdown = report_text.render_study_markdown(document)
    assert "| float32 baseline (FD on float32) | 0.588 |" in markdown
    if HAS_MPL:
        assert plots.cosine_strips({"int8": [0.5, 0.6]}, baseline=0.58).startswith(b"\x89PNG")


def test_gradient_section_without_baseline_says_so(tmp_path: Path) -> None:
    document = synthetic_study()
    document["gradient_misalignment"].pop("float32 (FD baseline)")
    html = render_study_html(document, tmp_path)
    assert "No float32 baseline in this run" in html


# ---------------------------------------------------------------- 6. no link that breaks when the file moves


def test_moved_report_has_no_dangling_links(tmp_path: Path) -> None:
    document = synthetic_study()
    paths = files.write_study(document, tmp_path / "results" / "run")
    moved = tmp_path / "mailed" / "report.html"
    moved.parent.mkdir()
    shutil.move(paths["html"], moved)
    html = moved.read_text()
    assert_self_contained(html)                      # no href but the page's own #anchors
    assert "../../docs/" not in html and "file://" not in html
    assert '<span class="doc">docs/metrics.md § Zero density</span>' in html


# ---------------------------------------------------------------- 7. comparison of unlike runs


def test_comparison_warns_when_runs_are_not_like_for_like(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "run-a", synthetic_study("run-a"))
    other = synthetic_study("run-b")
    other["experiment"]["dataset"].update(num=40, path="cifar.npz")
    other["experiment"]["precisions"]["int8"]["sha256"] = "cd" * 32
    b = write_run(tmp_path / "run-b", other)
    assert run_cli(report.main, [str(a), str(b), "--out", str(tmp_path / "cmp.html")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert "run-a and run-b" in warnings[0]
    for text in ("n (50 vs 40)", "dataset (data.npz from 0 vs cifar.npz from 0)", "models ("):
        assert text in warnings[0], text
    assert "Not like for like" in (tmp_path / "cmp.html").read_text()


def test_comparison_of_like_runs_has_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "run-a", synthetic_study("run-a"))
    other = synthetic_study("run-b", shift=0.1)
    other["experiment"]["seed"] = 7                              # a different seed is what one compares
    b = write_run(tmp_path / "run-b", other)
    assert run_cli(report.main, [str(a), str(b), "--out", str(tmp_path / "cmp.html")]) == 0
    assert "warning:" not in capsys.readouterr().err
    assert "Not like for like" not in (tmp_path / "cmp.html").read_text()


# ---------------------------------------------------------------- 9. a real browser


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
CHECK = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.setAttribute("data-check", JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth}));
});</script>"""


def browser_check(page: Path, width: int = 1280) -> dict[str, Any]:
    """Load a copy of the page (plus a load-time check script) in headless Chromium; what the script saw."""
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text().replace("</body>", CHECK + "\n</body>", 1))
    proc = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom",
                           probe.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    found = proc.stdout.split('data-check="')[1:]
    assert found, f"the browser did not run the check (rc {proc.returncode}): {proc.stderr[-800:]}"
    return json.loads(html_lib.unescape(found[0].split('"', 1)[0]))


NO_BROWSER = "no headless browser (chromium): apt-get install chromium (Debian) to run this test"


@needs_mpl
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
@pytest.mark.parametrize("width", [1280, pytest.param(1024, marks=pytest.mark.slow)])
def test_report_in_a_real_browser(tmp_path: Path, width: int) -> None:
    """Every image of report.html loads (embedded PNGs decode) and the page fits its window: no sideways scroll."""
    document = with_bitwidths_and_patch(synthetic_study())
    document["experiment"]["dataset"]["path"] = "cifar10/test.npz"
    document["_gallery"] = synthetic_gallery(document)
    paths = files.write_study(document, tmp_path / "run")
    seen = browser_check(paths["html"], width)
    assert seen["images"] > 100 and seen["broken"] == [], seen
    assert seen["scrollWidth"] <= seen["innerWidth"], f"the page overflows its width: {seen}"


@needs_mpl
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_real_digits_quick_report_in_a_real_browser(tmp_path: Path) -> None:
    """The same on results/dq (python -m host.evaluate --config configs/digits-quick.toml --quick --run-id dq),
    regenerated in a copy: its gallery has more models (the simulated bit-widths) than the synthetic one."""
    source = RESULTS_DIR / "dq"
    if not (source / "metrics.json").exists():
        pytest.skip("no results/dq: run python -m host.evaluate --config configs/digits-quick.toml --quick "
                    "--run-id dq --workers 0")
    run = tmp_path / "dq"
    run.mkdir()
    for name in ("metrics.json", GALLERY_FILE):
        if (source / name).exists():
            shutil.copy(source / name, run / name)
    seen = browser_check(files.regenerate(run)["html"], 1280)
    assert seen["images"] > 10 and seen["broken"] == [], seen
    assert seen["scrollWidth"] <= seen["innerWidth"], f"the page overflows its width: {seen}"

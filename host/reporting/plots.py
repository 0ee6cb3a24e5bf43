"""PNG plots for the HTML reports (matplotlib, Agg canvas, no pyplot and no display).

Every function takes plain data (lists, dicts, arrays) and returns PNG bytes; the report modules
(host.reporting.sections, classic, comparison) pull that data out of metrics.json and embed the PNGs
as base64 (host.reporting.html). `available()` is False when matplotlib is not installed: the report
then says so instead of showing plots.

Imports: numpy and matplotlib; no host module.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

# one colour per precision; the chip runs of a precision share its colour, dashed
COLORS = {"float32": "#1f77b4", "int16x8": "#2ca02c", "int8": "#d62728"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MARKERS = {"float32": "o", "int16x8": "s", "int8": "^"}
CHIP_COLORS = {"chip:int16x8": "#145214", "chip:int8": "#7a0f0f"}
# simulated bit-widths (sim:wN, sim:wNaN): one colour per N, dark (2 bits) to light (8 bits)
BIT_COLORS = {2: "#440154", 3: "#46327e", 4: "#365c8d", 5: "#277f8e", 6: "#1fa187", 7: "#4ac16d", 8: "#a0da39"}
NORM_LABELS = {"l0": "L0 (components changed)", "l1": "L1 (input units)", "l2": "L2 (input units)",
               "linf": "L∞ (input units)"}
DPI = 100


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):  # noqa: ANN202
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def model_style(key: str, index: int = 0) -> dict[str, object]:
    """Colour, marker and line style of a model key: "float32", "int8", "chip:int8", "sim:w4a4",
    run labels..."""
    width = simulated_width(key)
    if width is not None:
        bits, activations = width
        qat = key.endswith("-qat")   # trained through the rounding: hollow-looking triangles, dotted
        color = BIT_COLORS.get(bits, OTHER_COLORS[index % len(OTHER_COLORS)])
        if key.removesuffix("-qat").endswith("e8"):   # 8-bit edges: plus markers, dashed
            return {"color": color, "marker": "P", "linestyle": ":" if qat else "--"}
        return {"color": color, "marker": ("v" if activations else "^") if qat else ("s" if activations else "o"),
                "linestyle": ":" if qat else ("-." if activations else "-")}
    chip = key.startswith("chip:")
    base = key.split(":", 1)[1] if chip else key
    return {"color": COLORS.get(base, OTHER_COLORS[index % len(OTHER_COLORS)]),
            "marker": "x" if chip else MARKERS.get(base, "D"),
            "linestyle": "--" if chip else "-"}


def simulated_width(key: str) -> tuple[int, bool] | None:
    """(bits, activations quantized too) of a simulated model key "sim:w4" / "sim:w4a4" (also with 8-bit
    edges, "sim:w4a4e8", and quantization-aware trained: "sim:w4a4-qat"), else None."""
    if not key.startswith("sim:w"):
        return None
    weights, _, activations = key.removeprefix("sim:w").removesuffix("-qat").removesuffix("e8").partition("a")
    return (int(weights), bool(activations)) if weights.isdigit() else None


def bar_hatch(key: str) -> str | None:
    """Hatching of a model's bars: the chip's "//", simulated weights + activations ".."."""
    if key.startswith("chip:"):
        return "//"
    width = simulated_width(key)
    return ".." if width is not None and width[1] else None


def log_scale(values: Sequence[float], ratio: float = 10.0) -> bool:
    """Log axis when the positive values span at least `ratio` (a decade by default)."""
    positive = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return len(positive) >= 2 and max(positive) / min(positive) >= ratio


def _eps_axis(ax, eps_values: Sequence[float]) -> None:  # noqa: ANN001
    """Log ε axis when the sweep spans a decade, ticked at the swept values themselves (plain numbers)."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    if not log_scale(eps_values):
        return
    ax.set_xscale("log")
    ticks = sorted({float(e) for e in eps_values if e and e > 0})
    if len(ticks) <= 10:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:g}")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=40 if len(ticks) > 4 else 0, labelsize=8)


def _pct_axis(ax, axis: str = "y") -> None:  # noqa: ANN001
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def short_number(value: float) -> str:
    """A tick label as short as it reads: 0.05, 2, 1e-5 (not 1e-05)."""
    text = f"{value:g}"
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


TICK_FONT = 8               # points
TICK_CHAR_IN = 0.6 * TICK_FONT / 72      # inches per character of a tick label, with margin below
TICK_GAP_IN = 0.18          # inches of space between two labels


def log_ticks(lo: float, hi: float, width_in: float) -> list[float]:
    """Major ticks of a log axis from lo to hi that fit width_in inches side by side without running
    together: 1-2-5 per decade, else 1 per decade, else every 2nd, 3rd... decade (at least two ticks)."""
    if not (lo > 0 and hi > lo and math.isfinite(hi)):
        return []
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))

    def inside(values: list[float]) -> list[float]:
        return [t for t in values if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]

    one_two_five = inside([m * 10.0 ** d for d in range(first, last + 1) for m in (1, 2, 5)])
    candidates = [one_two_five, one_two_five[::2], one_two_five[1::2],
                  *[inside([10.0 ** d for d in range(first, last + 1) if d % step == 0]) for step in range(1, 8)]]
    if len(one_two_five) < 2:                                   # less than a decade: 1..9 per decade
        every = inside([m * 10.0 ** d for d in range(first, last + 1) for m in range(1, 10)])
        candidates[:0] = [every[::step] for step in range(1, 5)]
    for ticks in candidates:
        if len(ticks) < 2:
            continue
        # labels are centred on their tick: the closest pair on the log scale needs room for half of each
        positions = [width_in * math.log10(t / lo) / math.log10(hi / lo) for t in ticks]
        widths = [len(short_number(t)) * TICK_CHAR_IN for t in ticks]
        fits = all(b - a >= (wa + wb) / 2 + TICK_GAP_IN
                   for a, b, wa, wb in zip(positions, positions[1:], widths, widths[1:], strict=False))
        if fits:
            return ticks
    return next(([t[len(t) // 2]] for t in candidates if t), [])     # one tick always fits


def _log_axis_ticks(ax, lo: float, hi: float, width_in: float) -> None:  # noqa: ANN001
    """x axis on a log scale from lo to hi with log_ticks labels (plain numbers, no minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(log_ticks(lo, hi, width_in)))
    ax.xaxis.set_major_formatter(lambda value, _pos: short_number(value))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=TICK_FONT)


# ---------------------------------------------------------------- accuracy


def accuracy_sweeps(panels: Sequence[tuple[str, str, Mapping[str, Sequence[tuple[float, float | None]]]]],
                    clean: Mapping[str, float | None], labels: Mapping[str, str] | None = None,
                    styles: Mapping[str, Mapping[str, object]] | None = None) -> bytes:
    """Accuracy vs ε, one panel per attack: panels = [(title, x label, {model: [(ε, acc)]})].

    Linear ε axes start at ε = 0 with the clean accuracy; an axis whose ε span a decade or more is
    logarithmic and shows the clean accuracy as a dotted line of the model's colour.
    """
    labels = labels or {}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(max(7.0, 4.6 * ncols + 0.4), 3.6 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict[str, object] = {}
    for ax, (title, xlabel, series) in zip(axes, panels, strict=False):
        eps_all = [e for points in series.values() for e, _ in points]
        log = log_scale(eps_all)
        for index, (model, points) in enumerate(series.items()):
            style = dict((styles or {}).get(model) or model_style(model, index))
            pts = sorted((e, a) for e, a in points if a is not None)
            if not log and clean.get(model) is not None:
                pts = [(0.0, clean[model]), *pts]
            if not pts:
                continue
            # earlier series drawn wider, so that identical accuracies stay visible under later ones
            width = 3.2 - 0.45 * min(index, 4)
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=labels.get(model, model),
                              linewidth=width, markersize=3 + 1.6 * width, alpha=0.9, **style)
            handles.setdefault(labels.get(model, model), line)
            if log and clean.get(model) is not None:
                ax.axhline(clean[model], color=style["color"], linestyle=":", linewidth=1, alpha=0.7)
        if log:
            _eps_axis(ax, eps_all)
            ax.text(0.01, 0.02, "dotted: clean accuracy", transform=ax.transAxes, fontsize=8, color="#555")
        _accuracy_axes(ax, title, xlabel)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(5 if ncols > 1 else 3, len(handles)), fontsize=9, frameon=False)
    return _png(fig)


def _accuracy_axes(ax, title: str, xlabel: str) -> None:  # noqa: ANN001
    """Title, labels, 0..100 % scale and grid of an accuracy panel."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.03, 1.03)
    _pct_axis(ax)
    ax.grid(True, which="both", alpha=0.3)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float | None]], xlabel: str,
                 percent: bool = True, labels: Mapping[str, str] | None = None) -> bytes:
    """Horizontal grouped bars: one group per row label, one bar per series (e.g. model accuracy)."""
    labels = labels or {}
    n = len(series)
    wrapped, ncols = legend_layout({key: labels.get(key, key) for key in series})
    height = 0.8 / max(n, 1)
    fig = _figure(8.0, 0.9 + len(groups) * (0.22 * n + 0.25))
    ax = fig.add_subplot()
    y = np.arange(len(groups))
    for index, (key, values) in enumerate(series.items()):
        style = model_style(key, index)
        vals = np.array([np.nan if v is None else v for v in values], dtype=float)
        pos = y - 0.4 + height * (index + 0.5)
        ax.barh(pos, np.nan_to_num(vals), height=height * 0.92, color=style["color"],
                hatch=bar_hatch(key), edgecolor="white", label=wrapped[key])
        for p, v in zip(pos, vals, strict=True):
            text = "–" if np.isnan(v) else (f"{100 * v:.0f} %" if percent else f"{v:,.4g}")
            ax.text(0 if np.isnan(v) else v, p, " " + text, va="center", fontsize=7)
    ax.set_yticks(y, groups)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if percent:
        ax.set_xlim(0, 1.12)
        _pct_axis(ax, "x")
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
    return _png(fig)


LEGEND_CHARS = 110      # characters of 8-pt legend text that fit across an 8-inch figure
LEGEND_WRAP = 40        # longer labels (a defense with its parameters) break into lines


def legend_layout(labels: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Labels wrapped to LEGEND_WRAP characters, and as many legend columns as fit the figure."""
    import textwrap

    wrapped = {key: "\n".join(textwrap.wrap(text, LEGEND_WRAP, break_on_hyphens=False)) or text
               for key, text in labels.items()}
    widest = max((len(line) for text in wrapped.values() for line in text.splitlines()), default=1)
    return wrapped, max(1, min(5, len(labels), LEGEND_CHARS // (widest + 6)))


# ---------------------------------------------------------------- transfer


def heatmap(rows: Sequence[str], columns: Sequence[str], rates: np.ndarray, notes: Sequence[Sequence[str]],
            title: str, colorbar: str) -> bytes:
    """Rates in [0, 1] (NaN: undefined, grey) with a note per cell (e.g. "56/58")."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    fig = _figure(2.2 + 1.9 * len(columns), 1.3 + 0.42 * len(rows))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(rates), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            v = rates[i, j]
            text = "–" if np.isnan(v) else f"{100 * v:.0f} %"
            color = "black" if np.isnan(v) or v > 0.6 else "white"
            ax.text(j, i, f"{text}\n{notes[i][j]}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.xaxis.tick_top()
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.05)
    bar.set_label(colorbar)
    _pct_axis(bar.ax)
    return _png(fig)


# ---------------------------------------------------------------- perturbation norms


def norm_bars(rows: Sequence[str], norms: Mapping[str, tuple[Sequence[float | None], Sequence[float | None]]]
              ) -> bytes:
    """One panel per norm: mean (bar) and max (tick) of the perturbation over the inputs, per row."""
    fig = _figure(3.0 * len(norms) + 1.6, 1.6 + 0.3 * len(rows))
    axes = fig.subplots(1, len(norms), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))
    for ax, (norm, (means, maxes)) in zip(axes, norms.items(), strict=True):
        mean = np.array([np.nan if v is None else v for v in means], dtype=float)
        peak = np.array([np.nan if v is None else v for v in maxes], dtype=float)
        ax.barh(y, np.nan_to_num(mean), color="#4c72b0", height=0.7, label="mean")
        ax.plot(peak, y, "|", color="black", markersize=11, markeredgewidth=2, label="max")
        log = log_scale([*mean, *peak], ratio=100)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(NORM_LABELS.get(norm, norm) + (", log scale" if log else ""))
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(y, rows)
    axes[0].invert_yaxis()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _png(fig)


HIST_PANEL_IN = 3.0          # inches per norm panel of norm_histograms
HIST_MIN_DECADES = 0.04      # a ridge is at least this wide (log10 units): equal norms still show


def norm_histograms(rows: Sequence[str], histograms: Mapping[str, Sequence[Mapping[str, object] | None]]) -> bytes:
    """One panel per norm, one ridge per row: the per-input histogram (host.study.metrics.log_histogram)
    as a filled step curve on a shared log axis, scaled to its own tallest bin; the count of
    unchanged inputs (norm 0) is written at the right."""
    return _png(norm_histograms_figure(rows, histograms))


def norm_histograms_figure(rows: Sequence[str], histograms: Mapping[str, Sequence[Mapping[str, object] | None]]):  # noqa: ANN201
    """The figure of norm_histograms (for tests that measure it)."""
    fig = _figure(HIST_PANEL_IN * len(histograms) + 1.6, 1.6 + 0.32 * len(rows))
    axes = fig.subplots(1, len(histograms), sharey=True, squeeze=False)[0]
    for ax, (norm, per_row) in zip(axes, histograms.items(), strict=True):
        ridges = [_ridge(hist) for hist in per_row]
        spans = [(edges[0], edges[-1]) for edges, _ in filter(None, ridges)]
        lo, hi = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (0.1, 1.0)
        width = max(math.log10(hi / lo), 1.0)                  # decades the axis shows, at least one
        min_width = HIST_MIN_DECADES * width
        for i, (hist, ridge) in enumerate(zip(per_row, ridges, strict=True)):
            if ridge is not None:
                edges, counts = _widen(*ridge, min_width)
                lo, hi = min(lo, edges[0]), max(hi, edges[-1])
                heights = np.append(counts, counts[-1]) / counts.max() * 0.85
                ax.fill_between(edges, i, i - heights, step="post", color="#4c72b0", alpha=0.75, linewidth=0)
            if hist and hist.get("zero"):
                ax.text(0.99, i, f"{hist['zero']} unchanged", transform=ax.get_yaxis_transform(), ha="right",
                        va="bottom", fontsize=7, color="#a33")
        pad = 10 ** (0.03 * math.log10(hi / lo)) if hi > lo else 1.5
        _log_axis_ticks(ax, lo / pad, hi * pad, HIST_PANEL_IN - 0.5)
        ax.set_xlabel(NORM_LABELS.get(norm, norm) + ", log scale")
        ax.grid(True, axis="x", which="major", alpha=0.3)
    axes[0].set_yticks(np.arange(len(rows)), rows)
    axes[0].set_ylim(len(rows) - 0.5, -1.0)
    return fig


def _ridge(hist: Mapping[str, object] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(edges, counts) of a histogram with something to draw (positive edges, a non-zero count), else None."""
    if not hist:
        return None
    edges, counts = np.asarray(hist["edges"], float), np.asarray(hist["counts"], float)
    if counts.size == 0 or edges.size != counts.size + 1 or counts.max() <= 0 or not edges[0] > 0:
        return None
    return edges, counts


def _widen(edges: np.ndarray, counts: np.ndarray, min_decades: float) -> tuple[np.ndarray, np.ndarray]:
    """Edges spanning at least min_decades around their geometric centre: a histogram of equal values
    (zero or 1 % width) would be an invisible sliver of the log axis. Zero width: one bin of all counts."""
    lo, hi = float(edges[0]), float(edges[-1])
    span = math.log10(hi / lo) if hi > lo else 0.0
    if span >= min_decades:
        return edges, counts
    centre = math.sqrt(lo * hi)
    if span == 0.0:
        return np.array([centre / 10 ** (min_decades / 2), centre * 10 ** (min_decades / 2)]), np.array([counts.sum()])
    return centre * (edges / centre) ** (min_decades / span), counts


# ---------------------------------------------------------------- quantization shift


def shift_bars(rows: Sequence[str], panels: Mapping[str, Mapping[str, Sequence[float | None]]]) -> bytes:
    """One panel per quantized precision: attenuation, amplification (and shift) per row, as % of inputs."""
    return _png(shift_bars_figure(rows, panels))


def shift_bars_figure(rows: Sequence[str], panels: Mapping[str, Mapping[str, Sequence[float | None]]]):  # noqa: ANN201
    """The figure of shift_bars: the panels share one x scale (the largest shift of any), so that their bars
    compare at a glance."""
    colors = {"attenuation": "#2ca02c", "amplification": "#d62728", "shift": "#bbbbbb"}
    fig = _figure(4.2 * len(panels) + 1.6, 1.4 + 0.42 * len(rows))
    axes = fig.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))
    top = max([0.0, *(v for series in panels.values() for key in ("shift", "attenuation", "amplification")
                      for v in series.get(key, ()) if v is not None and math.isfinite(v))])
    for ax, (precision, series) in zip(axes, panels.items(), strict=True):
        shift = np.array([np.nan if v is None else v for v in series["shift"]], dtype=float)
        ax.barh(y, np.nan_to_num(shift), height=0.86, color=colors["shift"], label="shift (labels differ)")
        for offset, key in ((-0.2, "attenuation"), (0.2, "amplification")):
            vals = np.array([np.nan if v is None else v for v in series[key]], dtype=float)
            ax.barh(y + offset, np.nan_to_num(vals), height=0.38, color=colors[key], label=key)
        ax.set_xlim(0, max(0.05, top * 1.15))
        _pct_axis(ax, "x")
        ax.set_title(f"float32 vs {precision}", fontsize=10)
        ax.set_xlabel("share of inputs")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, rows)
    axes[0].invert_yaxis()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------- chip cost, gradient cosines


def value_bars(names: Sequence[str], values: Sequence[float], xlabel: str) -> bytes:
    from matplotlib.ticker import EngFormatter
    fig = _figure(7.0, 0.9 + 0.45 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, values, color=[model_style(n, i)["color"] for i, n in enumerate(names)], height=0.6)
    for p, v in zip(y, values, strict=True):
        ax.text(v, p, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.25 if values else 1)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def cosine_strips(samples: Mapping[str, Sequence[float]], baseline: float | None = None) -> bytes:
    """Per-sample cosines per precision as dots (NaN = undefined, counted in the label), mean as a bar;
    baseline: the mean cosine of the estimator on the float model itself, a dashed line across the rows."""
    fig = _figure(7.5, 1.3 + 0.6 * len(samples))
    ax = fig.add_subplot()
    names = []
    if baseline is not None and math.isfinite(baseline):
        ax.axvline(baseline, color=COLORS["float32"], linestyle="--", linewidth=1.2, zorder=2)
        ax.text(baseline, 1.01, f"float32 baseline {baseline:.2f}", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8, color=COLORS["float32"])
    for i, (precision, values) in enumerate(samples.items()):
        v = np.array([np.nan if c is None else c for c in values], dtype=float)
        defined = v[np.isfinite(v)]
        jitter = np.linspace(-0.15, 0.15, len(defined)) if len(defined) > 1 else np.zeros(len(defined))
        ax.scatter(defined, i + jitter, color=model_style(precision.split()[0], i)["color"], s=22, zorder=3)
        if len(defined):
            ax.plot([defined.mean()] * 2, [i - 0.3, i + 0.3], color="black", linewidth=2)
        names.append(f"{precision}\n({len(v) - len(defined)}/{len(v)} undefined)")
    ax.axvline(0, color="#888", linewidth=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("cosine: float32 gradient vs finite-difference gradient of the model\n"
                  "(dots: inputs, black bar: mean" + (", dashed: float32 baseline)" if baseline is not None else ")"),
                  fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------- comparison of two runs


def comparison_overlay(panels: Sequence[tuple[str, str, Mapping[str, Mapping[str, Sequence[tuple[float, float]]]]]],
                       runs: Sequence[str]) -> bytes:
    """Accuracy vs ε of two runs: panels = [(title, x label, {run: {model: [(ε, acc)]}})]; the first run solid
    with filled markers, the second dashed with hollow ones; colour and marker per model."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(max(7.0, 4.6 * ncols + 0.4), 3.6 * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict[str, object] = {}
    for ax, (title, xlabel, per_run) in zip(axes, panels, strict=False):
        eps_all = [e for series in per_run.values() for pts in series.values() for e, _ in pts]
        for r, run in enumerate(runs):
            for index, (model, points) in enumerate(per_run.get(run, {}).items()):
                style = model_style(model, index)
                color = CHIP_COLORS.get(model, style["color"])        # chips darker than their precision
                pts = sorted(points)
                (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color,
                                  marker=MARKERS.get(model, "D") if not model.startswith("chip:") else "P",
                                  markersize=7, fillstyle="full" if r == 0 else "none",
                                  linestyle="-" if r == 0 else "--", linewidth=1.6, label=f"{run}: {model}")
                handles.setdefault(f"{run}: {model}", line)
        _eps_axis(ax, eps_all)
        _accuracy_axes(ax, title, xlabel)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(4 if ncols > 1 else 2, len(handles)), fontsize=8, frameon=False)
    return _png(fig)


# ---------------------------------------------------------------- gallery images


def image_png(x: np.ndarray, input_range: Sequence[float], min_size: int = 96) -> bytes:
    """One input (H, W, C) in input_range as a PNG, upscaled (nearest) to at least min_size pixels."""
    from matplotlib.image import imsave

    lo, hi = float(input_range[0]), float(input_range[1])
    img = np.clip((np.asarray(x, dtype=np.float64) - lo) / ((hi - lo) or 1.0), 0, 1)
    img = _upscale(img, min_size)
    buf = io.BytesIO()
    if img.shape[-1] == 1:
        imsave(buf, img[..., 0], cmap="gray", vmin=0, vmax=1, format="png")
    else:
        imsave(buf, img[..., :3], format="png")
    return buf.getvalue()


def difference_png(delta: np.ndarray, min_size: int = 96) -> tuple[bytes, float]:
    """x_adv − x as a PNG scaled to its own max |δ| (grey/white = 0; red +, blue − for one channel;
    0.5 + δ/2max for colour images); returns the PNG and that max |δ|."""
    from matplotlib.image import imsave

    d = np.asarray(delta, dtype=np.float64)
    peak = float(np.abs(d).max()) if d.size else 0.0
    scaled = d / peak if peak > 0 else np.zeros_like(d)
    scaled = _upscale(scaled, min_size)
    buf = io.BytesIO()
    if scaled.shape[-1] == 1:
        imsave(buf, scaled[..., 0], cmap="RdBu_r", vmin=-1, vmax=1, format="png")
    else:
        imsave(buf, np.clip(0.5 + 0.5 * scaled[..., :3], 0, 1), format="png")
    return buf.getvalue(), peak


def _upscale(img: np.ndarray, min_size: int) -> np.ndarray:
    if img.ndim == 2:
        img = img[..., None]
    factor = max(1, math.ceil(min_size / max(img.shape[0], img.shape[1], 1)))
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)

"""Robustness metrics for float vs quantized models: pure NumPy (TensorFlow only in float_input_gradient).

Notation: n samples x_i with labels y_i; x'_i an adversarial input; δ_i = x'_i − x_i
flattened to d components; pred_M(x) the label model M predicts. Every definition is
in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from host.core.errors import UserError
from host.core.quiet import import_tensorflow_quietly

NORMS: tuple[str, ...] = ("l0", "l1", "l2", "linf")
ScoreOracle = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Rate:
    """count of `of`; rate is None when `of` is 0 (nothing to measure)."""

    count: int
    of: int

    @property
    def rate(self) -> float | None:
        return self.count / self.of if self.of else None

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "count": self.count, "of": self.of}


def rate(hits: np.ndarray, among: np.ndarray | None = None) -> Rate:
    """Share of `among` (a boolean mask, default all) where `hits` holds: |hits ∧ among| / |among|."""
    hits = np.asarray(hits, dtype=bool)
    among = np.ones_like(hits) if among is None else np.asarray(among, dtype=bool)
    _same_length(hits, among)
    return Rate(int((hits & among).sum()), int(among.sum()))


def _same_length(*arrays: np.ndarray) -> None:
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise UserError(f"metric inputs have different numbers of samples: {sorted(lengths)}")


# ---------------------------------------------------------------- perturbation norms


def perturbation_norm(x: np.ndarray, x_adv: np.ndarray, norm: str, l0_tol: float = 0.0) -> np.ndarray:
    """Per-sample size of δ = x_adv − x (flattened), shape (n,).

    l0 = #{j : |δ_j| > l0_tol};  l1 = Σ_j |δ_j|;  l2 = sqrt(Σ_j δ_j²);  linf = max_j |δ_j|.
    """
    delta = _deltas(x, x_adv)
    if norm == "l0":
        return np.count_nonzero(np.abs(delta) > l0_tol, axis=1).astype(np.float64)
    if norm == "l1":
        return np.abs(delta).sum(axis=1)
    if norm == "l2":
        return np.sqrt(np.square(delta).sum(axis=1))
    if norm == "linf":
        return np.abs(delta).max(axis=1, initial=0.0)
    raise UserError(f"unknown norm '{norm}'", hint=f"choose one of: {', '.join(NORMS)}")


def _deltas(x: np.ndarray, x_adv: np.ndarray) -> np.ndarray:
    x, x_adv = np.asarray(x, np.float64), np.asarray(x_adv, np.float64)
    if x.shape != x_adv.shape:
        raise UserError(f"clean inputs {x.shape} and adversarial inputs {x_adv.shape} differ in shape")
    return (x_adv - x).reshape(len(x), _row_size(x))


def _row_size(a: np.ndarray) -> int:
    return int(np.prod(a.shape[1:], dtype=np.int64))


def perturbation_norms(x: np.ndarray, x_adv: np.ndarray, l0_tol: float = 0.0) -> dict[str, np.ndarray]:
    """All four per-sample norms: {"l0", "l1", "l2", "linf"} -> (n,) arrays."""
    return {norm: perturbation_norm(x, x_adv, norm, l0_tol) for norm in NORMS}


def summarize(values: np.ndarray, among: np.ndarray | None = None) -> dict[str, float | int | None]:
    """{"mean", "max", "n"} of the finite values selected by `among` (None when there are none)."""
    values = np.asarray(values, np.float64)
    mask = np.isfinite(values) if among is None else np.asarray(among, bool) & np.isfinite(values)
    chosen = values[mask]
    if chosen.size == 0:
        return {"mean": None, "max": None, "n": 0}
    return {"mean": float(chosen.mean()), "max": float(chosen.max()), "n": int(chosen.size)}


HISTOGRAM_BINS = 20


def log_histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Histogram of the finite positive values on `bins` log-spaced bins from their min to their max
    ({"edges", "counts"}; one bin when they are all equal), and how many are exactly 0 ("zero":
    inputs the attack left unchanged)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    positive = values[values > 0]
    zero = int(values.size - positive.size)
    if positive.size == 0:
        return {"edges": [], "counts": [], "zero": zero}
    lo, hi = float(positive.min()), float(positive.max())
    edges = np.geomspace(lo, hi, bins + 1) if hi > lo * (1 + 1e-9) else np.array([lo / 1.01, hi * 1.01])
    counts, _ = np.histogram(positive, edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "zero": zero}


def norm_summary(
    x: np.ndarray, x_adv: np.ndarray, l0_tol: float = 0.0, among: np.ndarray | None = None
) -> dict[str, dict[str, Any]]:
    """{norm: summarize(per-sample norm) and its log_histogram} for the four norms."""
    out = {}
    for norm, values in perturbation_norms(x, x_adv, l0_tol).items():
        chosen = values if among is None else np.asarray(values)[np.asarray(among, bool)]
        out[norm] = {**summarize(values, among), "histogram": log_histogram(chosen)}
    return out


# ---------------------------------------------------------------- success and transfer


def attack_success_rate(y: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray) -> Rate:
    """Among inputs the model classifies correctly when clean, the share misclassified under attack.

    ASR = |{i : pred(x_i) = y_i ∧ pred(x'_i) ≠ y_i}| / |{i : pred(x_i) = y_i}|
    """
    y, clean_pred, adv_pred = (np.asarray(a).reshape(-1) for a in (y, clean_pred, adv_pred))
    _same_length(y, clean_pred, adv_pred)
    return rate(adv_pred != y, clean_pred == y)


def targeted_success_rate(y: np.ndarray, adv_pred: np.ndarray, target_class: int) -> Rate:
    """Targeted attacks (the patch): among inputs not of the target class, the share the model
    puts in the target class (Brown et al. 2017; Guesmi et al. 2024)."""
    y, adv_pred = np.asarray(y).reshape(-1), np.asarray(adv_pred).reshape(-1)
    _same_length(y, adv_pred)
    return rate(adv_pred == target_class, y != target_class)


def transfer_rate(
    y: np.ndarray,
    source_clean: np.ndarray,
    target_clean: np.ndarray,
    source_adv: np.ndarray,
    target_adv: np.ndarray,
) -> Rate:
    """Source → target: among inputs both classify correctly when clean and that fool the source,
    the share that also fool the target.

    T(S→T) = |{i ∈ B : T(x'_i) ≠ y_i}| / |B|,  B = {i : S(x_i) = T(x_i) = y_i ∧ S(x'_i) ≠ y_i}
    """
    y, sc, tc, sa, ta = (np.asarray(a).reshape(-1) for a in (y, source_clean, target_clean, source_adv, target_adv))
    _same_length(y, sc, tc, sa, ta)
    return rate(ta != y, (sc == y) & (tc == y) & (sa != y))


def transfer_chain(
    y: np.ndarray,
    clean_preds: Mapping[str, np.ndarray],
    adv_preds: Mapping[str, np.ndarray],
    chain: Sequence[str] = ("float", "int16x8", "int8"),
) -> dict[str, Rate]:
    """transfer_rate for every ordered pair (a before b) of the chain, keyed "a->b"."""
    missing = [m for m in chain if m not in clean_preds or m not in adv_preds]
    if missing:
        raise UserError(f"no predictions for model(s) {missing} of the transfer chain {list(chain)}")
    return {
        f"{a}->{b}": transfer_rate(y, clean_preds[a], clean_preds[b], adv_preds[a], adv_preds[b])
        for i, a in enumerate(chain)
        for b in chain[i + 1:]
    }


# ---------------------------------------------------------------- distance to the decision boundary


def minimal_successful_perturbation(
    x: np.ndarray,
    y: np.ndarray,
    x_adv_sweep: Sequence[np.ndarray],
    adv_pred_sweep: Sequence[np.ndarray],
    norm: str = "linf",
    l0_tol: float = 0.0,
) -> np.ndarray:
    """Per-sample smallest perturbation of an ε sweep that changes the label, shape (n,).

    For ε_1 … ε_K with adversarial inputs x'^(k) and predictions p^(k):
    r_i = min { ‖x'^(k)_i − x_i‖ : p^(k)_i ≠ y_i }, and +inf when no ε of the sweep fools sample i.
    The measured norm is used (not ε): an attack may stay well inside its ε-ball.
    """
    if len(x_adv_sweep) != len(adv_pred_sweep) or not len(x_adv_sweep):
        raise UserError("the ε sweep needs one prediction array per adversarial batch (and at least one)")
    y = np.asarray(y).reshape(-1)
    best = np.full(len(y), np.inf)
    for x_adv, pred in zip(x_adv_sweep, adv_pred_sweep, strict=True):
        pred = np.asarray(pred).reshape(-1)
        _same_length(y, pred, np.asarray(x_adv))
        size = perturbation_norm(x, x_adv, norm, l0_tol)
        best = np.where(pred != y, np.minimum(best, size), best)
    return best


def mean_boundary_distance(
    minimal: np.ndarray, among: np.ndarray | None = None
) -> dict[str, float | int | None]:
    """Mean of the finite minimal perturbations among `among` (normally: correct when clean).

    D = (1/|F|) Σ_{i∈F} r_i,  F = {i ∈ among : r_i < ∞};  "unbroken" = |among| − |F| samples the
    sweep never fooled (their distance exceeds the sweep: D is a lower-biased estimate).
    """
    minimal = np.asarray(minimal, np.float64)
    among = np.ones(len(minimal), bool) if among is None else np.asarray(among, bool)
    _same_length(minimal, among)
    found = among & np.isfinite(minimal)
    return {
        "mean": float(minimal[found].mean()) if found.any() else None,
        "found": int(found.sum()),
        "unbroken": int((among & ~np.isfinite(minimal)).sum()),
    }


# ---------------------------------------------------------------- gradients


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cos(a_i, b_i) = a_i·b_i / (‖a_i‖‖b_i‖) of flattened rows; NaN when either is all zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise UserError(f"gradients of different shapes: {a.shape} and {b.shape}")
    a, b = a.reshape(len(a), _row_size(a)), b.reshape(len(b), _row_size(b))
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), np.nan)


def gradient_misalignment(float_grad: np.ndarray, quant_grad: np.ndarray) -> dict[str, Any]:
    """Cosine between the float model's input gradient and the quantized model's (FD) gradient.

    c_i = cos(∇f_float(x_i), ĝ_quant(x_i)); 1 = aligned, 0 = orthogonal, −1 = opposite.
    Returns per-sample "cosine" (NaN where ĝ is all zero), "mean" over defined values,
    "undefined" (count of NaN) and "zero_density" of the quantized estimate.
    """
    cos = cosine_similarity(float_grad, quant_grad)
    defined = np.isfinite(cos)
    return {
        "cosine": cos,
        "mean": float(cos[defined].mean()) if defined.any() else None,
        "undefined": int((~defined).sum()),
        "zero_density": zero_density(quant_grad),
    }


def zero_density(grad: np.ndarray, per_sample: bool = False) -> float | np.ndarray:
    """Share of exactly-zero components: z = #{j : g_j = 0} / d (over all samples, or per sample)."""
    g = np.asarray(grad)
    if per_sample:
        flat = g.reshape(len(g), _row_size(g))
        return (flat == 0).mean(axis=1) if flat.shape[1] else np.zeros(len(g))
    return float((g == 0).mean()) if g.size else 0.0


def finite_difference_gradient(
    f: ScoreOracle,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    h: float = 1.0 / 64,
    method: str = "coordinate",
    directions: int = 64,
    seed: int = 0,
    clip: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Estimate ∇_x s(x_i) per sample from a batched score oracle; same shape as x.

    f(batch) returns (m,) scalar scores, or (m, C) class scores of which labels[i] is used.
    coordinate (2d calls per sample):  ĝ_j = (s(x + h e_j) − s(x − h e_j)) / (x⁺_j − x⁻_j),
        with x± clipped to `clip` when given (then one-sided at the bounds);
    random (2K calls per sample, u_k ~ N(0, I), unbiased for smooth s as h → 0):
        ĝ = (1/K) Σ_k (s(x + h u_k) − s(x − h u_k)) / (2h) · u_k  (no clipping).
    For a quantized model pick h ≥ its input scale (1/255 for [0,1] images in int8):
    a smaller step rounds to the same integer input and gives an exact zero.
    """
    if method not in ("coordinate", "random"):
        raise UserError(f"unknown finite-difference method '{method}'", hint="coordinate or random")
    if not h > 0:
        raise UserError(f"finite-difference step h must be positive, got {h}")
    x = np.asarray(x, np.float64)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        _same_length(x, labels)
    rng = np.random.default_rng(seed)
    out = np.empty_like(x)
    for i in range(len(x)):
        label = None if labels is None else int(labels[i])
        score = _scalar_oracle(f, label, batch_size)
        if method == "coordinate":
            out[i] = _coordinate_fd(score, x[i], h, clip)
        else:
            out[i] = _random_fd(score, x[i], h, rng.standard_normal((directions, x[i].size)))
    return out


def _scalar_oracle(f: ScoreOracle, label: int | None, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Batches of points -> (m,) scores, in chunks of batch_size."""

    def score(points: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, len(points), batch_size):
            s = np.asarray(f(points[start:start + batch_size].astype(np.float32)), np.float64)
            if s.ndim == 2:
                if label is None:
                    raise UserError("the oracle returns class scores: pass labels to pick one per sample")
                s = s[:, label]
            parts.append(s.reshape(-1))
        return np.concatenate(parts)

    return score


def _coordinate_fd(score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float,
                   clip: tuple[float, float] | None, chunk: int = 128) -> np.ndarray:
    flat = x.reshape(-1)
    g = np.zeros(flat.size)
    for start in range(0, flat.size, chunk):
        idx = np.arange(start, min(start + chunk, flat.size))
        rows = np.arange(len(idx))
        plus, minus = np.tile(flat, (len(idx), 1)), np.tile(flat, (len(idx), 1))
        plus[rows, idx] += h
        minus[rows, idx] -= h
        if clip is not None:
            plus, minus = np.clip(plus, *clip), np.clip(minus, *clip)
        width = plus[rows, idx] - minus[rows, idx]
        s = score(np.concatenate([plus, minus]).reshape(2 * len(idx), *x.shape))
        ok = width > 0
        g[idx[ok]] = (s[:len(idx)][ok] - s[len(idx):][ok]) / width[ok]
    return g.reshape(x.shape)


def _random_fd(score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float, u: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1)
    points = np.concatenate([flat + h * u, flat - h * u]).reshape(2 * len(u), *x.shape)
    s = score(points)
    k = len(u)
    slopes = (s[:k] - s[k:]) / (2 * h)
    return (slopes[:, None] * u).mean(axis=0).reshape(x.shape)


def float_input_gradient(model: Any, x: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """∇_x model(x)[label] per sample for a Keras model (TensorFlow, imported here); same shape as x.

    Use the same scalar as the quantized oracle: for a .tflite that ends in SOFTMAX, the float
    model's probabilities (not its logits).
    """
    import_tensorflow_quietly()
    import tensorflow as tf

    x = np.asarray(x, np.float32)
    labels = np.asarray(labels).reshape(-1)
    _same_length(x, labels)
    grads = []
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start:start + batch_size])
        yb = tf.convert_to_tensor(labels[start:start + batch_size].astype(np.int32))
        with tf.GradientTape() as tape:
            tape.watch(xb)
            scores = model(xb, training=False)
            picked = tf.gather(tf.reshape(scores, (tf.shape(xb)[0], -1)), yb, axis=1, batch_dims=1)
        grads.append(tape.gradient(picked, xb).numpy())
    return np.concatenate(grads) if grads else np.zeros_like(x)


# ---------------------------------------------------------------- quantization shift


@dataclass(frozen=True)
class QuantizationShift:
    """How a quantized model's labels on adversarial inputs differ from the float model's."""

    shift: Rate           # pred_Q(x') ≠ pred_F(x')
    attenuation: Rate     # float fooled, quantized correct
    amplification: Rate  # quantized fooled, float correct

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).as_dict() for k in ("shift", "attenuation", "amplification")}


def quantization_shift(
    y: np.ndarray, float_adv: np.ndarray, quant_adv: np.ndarray, among: np.ndarray | None = None
) -> QuantizationShift:
    """Shares of adversarial inputs (within `among`, default all) where float and quantized labels differ.

    shift = |{pred_Q(x') ≠ pred_F(x')}| / N;  attenuation = |{pred_F(x') ≠ y ∧ pred_Q(x') = y}| / N;
    amplification = |{pred_Q(x') ≠ y ∧ pred_F(x') = y}| / N.  shift ≥ attenuation + amplification
    (the rest: both fooled, to different labels).
    """
    y, fa, qa = (np.asarray(a).reshape(-1) for a in (y, float_adv, quant_adv))
    _same_length(y, fa, qa)
    return QuantizationShift(
        shift=rate(qa != fa, among),
        attenuation=rate((fa != y) & (qa == y), among),
        amplification=rate((qa != y) & (fa == y), among),
    )


def quantization_shifts(
    y: np.ndarray, float_adv: np.ndarray, quant_adv: Mapping[str, np.ndarray], among: np.ndarray | None = None
) -> dict[str, QuantizationShift]:
    """quantization_shift for each quantized model, e.g. {"int16x8": …, "int8": …}."""
    return {name: quantization_shift(y, float_adv, pred, among) for name, pred in quant_adv.items()}

"""gallery.npz: the first inputs of a study, clean and adversarial, with every model's predictions
on them (format in docs/report.md); the study writes it, report.html shows it.

Imports: host.core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.core.errors import UserError

GALLERY_FILE = "gallery.npz"
GALLERY_K = 8                    # samples per evaluation kept in gallery.npz
GALLERY_VERSION = 1


@dataclass
class GalleryEntry:
    """The first k adversarial inputs of one attack × ε and every model's predictions on them (copies)."""

    attack: str
    eps: float | None
    x_adv: np.ndarray
    preds: dict[str, np.ndarray]


def gallery_entry(attack: str, eps: float | None, x_adv: np.ndarray, preds: Mapping[str, np.ndarray],
                  k: int = GALLERY_K) -> GalleryEntry:
    """Keep (a copy of) the first k inputs and predictions of one evaluation, so that the full x_adv can be freed."""
    return GalleryEntry(attack, None if eps is None else float(eps), np.array(x_adv[:k], dtype=np.float32),
                        {m: np.array(p[:k], dtype=np.int64) for m, p in preds.items()})


def gallery_arrays(x: np.ndarray, y: np.ndarray, clean_preds: Mapping[str, np.ndarray],
                   entries: Sequence[GalleryEntry | tuple[str, float | None, np.ndarray, Mapping[str, np.ndarray]]],
                   input_range: Sequence[float], k: int = GALLERY_K) -> dict[str, np.ndarray]:
    """The arrays of gallery.npz (docs/report.md): the first k clean inputs, labels and predictions, and per
    evaluation the first k adversarial inputs and every model's predictions (-1 / NaN where not run)."""
    x = np.asarray(x)
    k = min(k, len(x))
    entries = [e if isinstance(e, GalleryEntry) else gallery_entry(*e, k=k) for e in entries]
    models: list[str] = list(clean_preds)
    for e in entries:
        models += [m for m in e.preds if m not in models]

    def pred_row(preds: Mapping[str, np.ndarray], m: str) -> np.ndarray:
        row = np.full(k, -1, np.int64)
        p = np.asarray(preds.get(m, []), dtype=np.int64)[:k]
        row[:len(p)] = p
        return row

    x_adv = np.full((len(entries), k, *x.shape[1:]), np.nan, np.float32)
    for i, e in enumerate(entries):
        adv = np.asarray(e.x_adv, dtype=np.float32)[:k]
        x_adv[i, :len(adv)] = adv.reshape(len(adv), *x.shape[1:])
    pred = np.stack([np.stack([pred_row(e.preds, m) for m in models]) for e in entries]) if entries and models \
        else np.zeros((len(entries), len(models), k), np.int64)
    attacked = np.isfinite(x_adv.reshape(len(entries), k, int(np.prod(x.shape[1:], dtype=np.int64)))).all(axis=2)
    pred[np.broadcast_to(~attacked[:, None, :], pred.shape)] = -1
    return {
        "version": np.array(GALLERY_VERSION),
        "x_clean": np.asarray(x[:k], dtype=np.float32),
        "y": np.asarray(y[:k], dtype=np.int64),
        "input_range": np.asarray(input_range, dtype=np.float64),
        "models": np.array(models, dtype=str),
        "pred_clean": np.stack([pred_row(clean_preds, m) for m in models]) if models else np.zeros((0, k), np.int64),
        "attack": np.array([e.attack for e in entries], dtype=str),
        "eps": np.array([np.nan if e.eps is None else e.eps for e in entries], dtype=np.float64),
        "x_adv": x_adv,
        "pred": pred,
    }


GALLERY_KEYS = ("x_clean", "y", "input_range", "models", "pred_clean", "attack", "eps", "x_adv", "pred")


def write_gallery(arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def load_gallery(path: Path) -> dict[str, np.ndarray]:
    """gallery.npz as a dict of arrays; UserError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable gallery .npz ({err})") from None
    missing = [key for key in GALLERY_KEYS if key not in arrays]
    if missing:
        raise UserError(f"{path}: not a gallery (missing {', '.join(missing)})", hint="format: docs/report.md")
    e, m, k = arrays["pred"].shape if arrays["pred"].ndim == 3 else (-1, -1, -1)
    if (e, m) != (len(arrays["attack"]), len(arrays["models"])) or arrays["x_adv"].shape[:2] != (e, k) \
            or len(arrays["x_clean"]) != k:
        raise UserError(f"{path}: inconsistent gallery shapes", hint="format: docs/report.md")
    return arrays

"""Evaluation data sets: the bundled digits split and a generic container.

Every dataset is float32 NHWC with a known input range, so attacks know what
to clip to and the evaluator can quantize with the model's input scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from host.core.errors import UserError

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 0.25
DIGITS_CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
DIGITS_MAX_PIXEL = 16.0  # load_digits pixels are integers 0..16


@dataclass(frozen=True)
class Dataset:
    """Labelled inputs plus what an attack or model needs to know about them."""

    name: str
    x: np.ndarray                     # float32, NHWC
    y: np.ndarray                     # int64 class indices
    class_names: tuple[str, ...]
    input_range: tuple[float, float] = (0.0, 1.0)
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_dataset(self)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def take(self, n: int) -> Dataset:
        """The first n samples (the split is already shuffled)."""
        return Dataset(self.name, self.x[:n], self.y[:n], self.class_names, self.input_range, self.meta)

    def check_model_shape(self, model_input_shape: tuple[int, ...], what: str = "model") -> None:
        """UserError unless one sample fits the model input (batch dimension ignored)."""
        expected = tuple(model_input_shape[1:]) if len(model_input_shape) == len(self.x.shape) else None
        if expected != self.sample_shape:
            raise UserError(
                f"dataset '{self.name}' samples have shape {self.sample_shape} but the {what} "
                f"expects input shape {tuple(model_input_shape)}",
                hint="pass a dataset that matches the model (or a model trained on this dataset)",
            )

    def check_num_classes(self, num_classes: int, what: str = "model") -> None:
        if len(self.class_names) != num_classes:
            raise UserError(
                f"dataset '{self.name}' has {len(self.class_names)} classes but the {what} "
                f"outputs {num_classes} scores",
            )


def check_finite(x: np.ndarray, what: str) -> None:
    """Inputs that are all finite numbers: NaN passes every range check (each comparison is false) and reaches
    the attacks and the quantizer as garbage."""
    finite = np.isfinite(x)
    if not finite.all():
        raise UserError(f"{what}: {int(finite.size - finite.sum())} input values are NaN or infinite",
                        hint="every input value must be a finite number within the input range")


def check_number_arrays(x: np.ndarray, y: np.ndarray | None, what: str) -> None:
    """'x' of numbers and 'y' of integer class indices, as saved in an .npz (strings or objects in either
    would fail later in a conversion, as a traceback)."""
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise UserError(f"{what}: 'x' holds {x.dtype} values; it must hold numbers")
    if y is not None and not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and
                                                                     np.array_equal(y, np.round(y)))):
        raise UserError(f"{what}: 'y' holds {y.dtype} values; it must hold integer class indices")


def _check_dataset(ds: Dataset) -> None:
    if ds.x.ndim != 4:
        raise UserError(f"dataset '{ds.name}': inputs must be NHWC (4-D), got shape {ds.x.shape}")
    if len(ds.x) != len(ds.y):
        raise UserError(f"dataset '{ds.name}': {len(ds.x)} inputs but {len(ds.y)} labels")
    lo, hi = ds.input_range
    if not lo < hi:
        raise UserError(f"dataset '{ds.name}': empty input range [{lo}, {hi}]")
    check_finite(ds.x, f"dataset '{ds.name}'")
    if ds.y.size and (ds.y.min() < 0 or ds.y.max() >= len(ds.class_names)):
        raise UserError(
            f"dataset '{ds.name}': labels must be in 0..{len(ds.class_names) - 1}, "
            f"found {int(ds.y.min())}..{int(ds.y.max())}",
        )
    if ds.x.size and (ds.x.min() < lo or ds.x.max() > hi):
        raise UserError(
            f"dataset '{ds.name}': input values {float(ds.x.min()):g}..{float(ds.x.max()):g} "
            f"fall outside the declared range [{lo}, {hi}]",
            hint="scale the inputs the way the model was trained",
        )


def load_digits_split(
    seed: int = DIGITS_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, stratified 75/25 split: (x_train, y_train, x_test, y_test).

    Images are float32 (N, 8, 8, 1) in [0, 1]; labels int64.  The same seed always
    gives the same split, which is how training and evaluation agree on it.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / DIGITS_MAX_PIXEL)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_SIZE, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


def digits_test_set(seed: int = DIGITS_SPLIT_SEED) -> Dataset:
    _, _, x_test, y_test = load_digits_split(seed)
    return Dataset("digits-test", x_test, y_test, DIGITS_CLASS_NAMES, (0.0, 1.0), {"split_seed": seed})


def load_npz_dataset(
    path: Path,
    class_names: tuple[str, ...] | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
) -> Dataset:
    """A dataset from an .npz with arrays `x` (NHWC) and `y` (class indices).

    uint8 images (e.g. CIFAR-10) are scaled to [0, 1]; `class_names` may also be
    stored in the file.  This is how user data sets plug into the evaluator.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dataset file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable .npz file ({err})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing array(s) {missing}; expected 'x' (NHWC) and 'y' (labels)")
    x, y = arrays["x"], arrays["y"]
    check_number_arrays(x, y, str(path))
    if len(x) == 0:
        raise UserError(f"{path}: no samples ('x' is empty)", hint="save at least one input and its label")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    y = y.astype(np.int64).reshape(-1)
    if class_names is None:
        stored = arrays.get("class_names")
        class_names = tuple(str(c) for c in stored) if stored is not None else tuple(
            str(c) for c in range(int(y.max()) + 1 if y.size else 0)
        )
    return Dataset(path.stem, x, y, class_names, input_range, {"path": str(path)})

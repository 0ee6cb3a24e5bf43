"""host.core.data: the digits split and the generic Dataset checks."""

from __future__ import annotations

import numpy as np
import pytest

from host.core.data import DIGITS_CLASS_NAMES, Dataset, digits_test_set, load_digits_split, load_npz_dataset
from host.core.errors import UserError


def test_digits_split_shapes_range_and_labels() -> None:
    x_train, y_train, x_test, y_test = load_digits_split(0)
    assert x_train.shape == (1347, 8, 8, 1) and x_test.shape == (450, 8, 8, 1)
    assert x_train.dtype == np.float32 and y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(10))
    # stratified: every class has 25 % of its images in the test split (±1)
    counts_test, counts_train = np.bincount(y_test), np.bincount(y_train)
    assert np.all(np.abs(counts_test / (counts_test + counts_train) - 0.25) < 0.01)


def test_digits_split_is_reproducible_and_seed_dependent() -> None:
    a, b = load_digits_split(0), load_digits_split(0)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[2], load_digits_split(1)[2])


def test_digits_test_set() -> None:
    ds = digits_test_set()
    assert len(ds) == 450 and ds.sample_shape == (8, 8, 1)
    assert ds.class_names == DIGITS_CLASS_NAMES and ds.input_range == (0.0, 1.0)
    assert len(ds.take(20)) == 20 and np.array_equal(ds.take(20).y, ds.y[:20])


def _dataset(**overrides) -> Dataset:  # noqa: ANN003
    fields = {"name": "toy", "x": np.zeros((3, 4, 4, 1), np.float32), "y": np.array([0, 1, 2]),
              "class_names": ("a", "b", "c")}
    fields.update(overrides)
    return Dataset(**fields)


def test_labels_outside_class_count_rejected() -> None:
    with pytest.raises(UserError, match="labels must be in 0..2"):
        _dataset(y=np.array([0, 1, 3]))
    with pytest.raises(UserError, match="labels"):
        _dataset(y=np.array([0, -1, 2]))


def test_bad_dataset_shapes_and_ranges_rejected() -> None:
    with pytest.raises(UserError, match="NHWC"):
        _dataset(x=np.zeros((3, 16), np.float32))
    with pytest.raises(UserError, match="3 inputs but 2 labels"):
        _dataset(y=np.array([0, 1]))
    with pytest.raises(UserError, match="outside the declared range"):
        _dataset(x=np.full((3, 4, 4, 1), 2.0, np.float32))


def test_model_shape_and_class_count_mismatch() -> None:
    ds = _dataset()
    ds.check_model_shape((1, 4, 4, 1))
    ds.check_model_shape((None, 4, 4, 1))
    with pytest.raises(UserError, match=r"shape \(4, 4, 1\).*expects input shape \(1, 8, 8, 1\)"):
        ds.check_model_shape((1, 8, 8, 1))
    with pytest.raises(UserError, match="3 classes but the model outputs 10"):
        ds.check_num_classes(10)


def test_npz_dataset_scales_uint8_and_checks(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "cifar_like.npz"
    x = np.full((4, 2, 2, 3), 255, np.uint8)
    np.savez(path, x=x, y=np.array([0, 1, 2, 3], np.uint8), class_names=np.array(["w", "x", "y", "z"]))
    ds = load_npz_dataset(path)
    assert ds.x.dtype == np.float32 and ds.x.max() == 1.0
    assert ds.class_names == ("w", "x", "y", "z") and ds.y.dtype == np.int64

    np.savez(path, x=x, y=np.array([0, 1, 2, 3]))
    with pytest.raises(UserError, match="labels must be in 0..1"):
        load_npz_dataset(path, class_names=("a", "b"))
    np.savez(path, images=x)
    with pytest.raises(UserError, match="missing array"):
        load_npz_dataset(path)
    with pytest.raises(UserError, match="not found"):
        load_npz_dataset(tmp_path / "absent.npz")


def test_npz_dataset_without_samples_or_numbers_is_refused(tmp_path) -> None:  # noqa: ANN001
    """An empty set, text arrays and NaN inputs used to reach the run (a KeyError, a misleading oracle error)."""
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((0, 2, 2, 1), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(UserError, match="no samples"):
        load_npz_dataset(path)
    np.savez(path, x=np.full((2, 2, 2, 1), "a"), y=np.array([0, 1]))
    with pytest.raises(UserError, match="'x' holds <U1 values; it must hold numbers"):
        load_npz_dataset(path)
    np.savez(path, x=np.zeros((2, 2, 2, 1), np.float32), y=np.array([0.5, 1.0]))
    with pytest.raises(UserError, match="'y' holds float64 values; it must hold integer class indices"):
        load_npz_dataset(path)
    x = np.zeros((2, 2, 2, 1), np.float32)
    x[1, 0, 0, 0], x[1, 1, 1, 0] = np.nan, np.inf
    np.savez(path, x=x, y=np.array([0, 1]))
    with pytest.raises(UserError, match="2 input values are NaN or infinite"):
        load_npz_dataset(path)

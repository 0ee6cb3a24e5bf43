"""Epoch checkpoints of the train-based defenses: a training stopped after an epoch goes on from it, to
the weights of a training that was never stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import host.defenses.training as training
from host.attacks import load_float_model
from host.core.data import load_digits_split
from host.core.paths import DEFAULT_FLOAT_MODEL
from host.defenses import get_defense
from host.defenses.checkpoints import checkpointed, save_epoch


class Stopped(Exception):
    """The process killed right after a checkpoint."""


@pytest.mark.parametrize(("name", "params", "stop_after"), [
    ("pgd-at", {"eps": 0.1, "max_iter": 3, "epochs": 3, "learning_rate": 1e-3, "optimizer": "sgd"}, (1, 2)),
    # two phases (teacher, then student from the teacher's soft labels): stopped in the second
    ("distillation", {"epochs": 2, "learning_rate": 1e-3}, (1, 2, 1)),
])
def test_a_stopped_training_resumes_to_the_weights_of_an_unstopped_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, params: dict, stop_after: tuple[int, ...]) -> None:
    model = load_float_model(DEFAULT_FLOAT_MODEL).keras_model
    x, y, _, _ = load_digits_split()
    x, y = x[:96], y[:96]
    defense = get_defense(name, batch_size=32, **params)
    with checkpointed(tmp_path / "whole"):
        whole = defense.train(model, x, y)

    saves: list[int] = []

    def save_then_stop(phase: Path, epochs_done: int, m: object, opt: object) -> None:
        save_epoch(phase, epochs_done, m, opt)
        saves.append(epochs_done)
        if tuple(saves) == stop_after:
            raise Stopped

    monkeypatch.setattr(training, "save_epoch", save_then_stop)
    with pytest.raises(Stopped), checkpointed(tmp_path / "stopped"):
        defense.train(model, x, y)
    monkeypatch.undo()
    with checkpointed(tmp_path / "stopped"):
        resumed = defense.train(model, x, y)
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    phases = sorted((tmp_path / "stopped").iterdir())
    assert [sorted(p.name for p in phase.iterdir()) for phase in phases] == \
        [[f"epoch-{params['epochs']:05d}"]] * len(phases)


def test_without_a_checkpoint_directory_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = load_float_model(DEFAULT_FLOAT_MODEL).keras_model
    x, y, _, _ = load_digits_split()
    get_defense("pgd-at", epochs=1, max_iter=2).train(model, x[:32], y[:32])
    assert list(tmp_path.iterdir()) == []

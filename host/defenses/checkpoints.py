"""Epoch checkpoints of a training, so that a long one stopped midway goes on where it was.

A study's training unit runs `with checkpointed(directory):`; every `fine_tune` call inside it is one
*phase* (a defense may train several models in turn: distillation's teacher then its student), in
call order.  After each epoch, a phase writes `<directory>/phase<k>/epoch-<n>/` (the model's weights,
batch-norm statistics included, the optimizer's state, then a `complete` marker) and removes the epoch
before.  Run again with the same directory, a phase restores its last complete epoch and trains on
from the next one: batches are drawn from the same generator advanced past the done epochs, and the
in-graph attacks' seeds are keyed by the step, so the weights are those of a run that was never
stopped (tests/defenses/test_checkpoints.py).  A phase whose epochs are all done only restores.

Imports: TensorFlow/Keras objects are passed in; nothing from host beyond the standard library.
"""

from __future__ import annotations

import contextlib
import contextvars
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MARKER = "complete"


@dataclass
class Checkpoints:
    """The checkpoint directory of one training, and the phases handed out so far."""

    directory: Path
    phases: int = 0

    def next_phase(self) -> Path:
        self.phases += 1
        return self.directory / f"phase{self.phases}"


_ACTIVE: contextvars.ContextVar[Checkpoints | None] = contextvars.ContextVar("checkpoints", default=None)


@contextlib.contextmanager
def checkpointed(directory: Path | None) -> Iterator[None]:
    """fine_tune calls inside keep epoch checkpoints under `directory` (None: none)."""
    token = _ACTIVE.set(Checkpoints(Path(directory)) if directory is not None else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def next_phase() -> Path | None:
    """The directory of the calling fine_tune's phase, or None outside `checkpointed`."""
    active = _ACTIVE.get()
    return active.next_phase() if active is not None else None


def _variables(optimizer: Any) -> list[Any]:
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


def save_epoch(phase: Path, epochs_done: int, model: Any, optimizer: Any) -> None:
    """The state after `epochs_done` epochs; then the previous epoch's is removed."""
    target = phase / f"epoch-{epochs_done:05d}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    model.save_weights(target / "model.weights.h5")
    np.savez(target / "optimizer.npz", *[np.asarray(v) for v in _variables(optimizer)])
    (target / MARKER).write_text(f"{epochs_done}\n")
    for old in phase.glob("epoch-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _latest(phase: Path) -> Path | None:
    """The phase's last complete epoch, or None."""
    done = sorted(p for p in phase.glob("epoch-*") if (p / MARKER).is_file())
    return done[-1] if done else None


def restore_epoch(phase: Path, model: Any, optimizer: Any) -> int:
    """Epochs already done in this phase (0 if none), with the model and optimizer set to that state."""
    latest = _latest(phase)
    if latest is None:
        return 0
    model.load_weights(latest / "model.weights.h5")
    with np.load(latest / "optimizer.npz") as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = _variables(optimizer)
    if len(values) != len(variables):
        raise ValueError(f"{latest}: {len(values)} optimizer variables saved, {len(variables)} expected")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
    return int((latest / MARKER).read_text())


def kept_epochs(directory: Path) -> list[int]:
    """Epochs done per phase of the training checkpointed under `directory` (empty: none kept)."""
    kept = []
    for phase in sorted(directory.glob("phase*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        latest = _latest(phase)
        kept.append(int((latest / MARKER).read_text()) if latest is not None else 0)
    return kept if any(kept) else []

"""Finished parts of a configured study, kept as they complete, so a study whose host died (or was
stopped) continues where it was: `python -m host.evaluate --config C --resume RUN_ID`.

A full study runs for hours; each ε of an attack as it finishes, then the attack's results
(all its ε, with their gallery entries and boundary distances), and each trained defense model
are written to `results/<run-id>/checkpoint/` the moment they exist (write to a temporary file, then rename: a
kill leaves either the old state or the new one).  The directory is bound to the experiment it
was started with: resuming with a changed config, dataset or model file is refused, because the
finished parts would no longer describe the same study.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

from host.core.errors import UserError

FINGERPRINT = "experiment.sha256"


class StudyCheckpoint:
    """One study's (or one defended sub-study's) finished parts, by key."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint

    @classmethod
    def start(cls, directory: Path, experiment: Any, resume: bool) -> StudyCheckpoint:
        """A fresh checkpoint (resume=False: the directory must not hold one) or the one a run left."""
        fingerprint = experiment_fingerprint(experiment)
        stored = directory / FINGERPRINT
        if resume:
            if not stored.is_file():
                raise UserError(f"--resume: no study checkpoint in {directory}",
                                hint="give the run id of a --config study started with this version")
            if stored.read_text().strip() != fingerprint:
                raise UserError(f"--resume: the config, its models or its dataset changed since the run in "
                                f"{directory.parent} started; its finished attacks would not describe this study",
                                hint="resume with the config it started with, or start a new run")
        elif stored.exists():
            raise UserError(f"{directory.parent} already holds a study",
                            hint=f"continue it with --resume {directory.parent.name}, or choose another --run-id")
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(stored, fingerprint.encode())
        return cls(directory, fingerprint)

    def child(self, name: str) -> StudyCheckpoint:
        """The checkpoint of a sub-study (a trained defense's), inside this one."""
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        return StudyCheckpoint(directory, self.fingerprint)

    def load(self, key: str) -> Any | None:
        path = self._path(key)
        if not path.is_file():
            return None
        with path.open("rb") as f:
            return pickle.load(f)

    def save(self, key: str, value: Any) -> None:
        _write_atomically(self._path(key), pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def discard(self, prefix: str, count: int) -> None:
        """Remove the parts prefix0 … prefix{count-1} (kept whole under another key now)."""
        for index in range(count):
            self._path(f"{prefix}{index}").unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pickle"


def experiment_fingerprint(experiment: Any) -> str:
    """sha256 over the parsed experiment and the bytes of every file it reads."""
    digest = hashlib.sha256(repr(experiment).encode())
    for path in sorted(_files(experiment)):
        digest.update(str(path).encode())
        members = sorted(path.rglob("*")) if path.is_dir() else [path]   # a SavedModel is a directory
        for member in members:
            if member.is_file():
                digest.update(_file_sha256(member).encode())
    return digest.hexdigest()


def _files(experiment: Any) -> set[Path]:
    files = {Path(experiment.float_model), Path(experiment.dataset.path), *map(Path, experiment.given.values())}
    if experiment.representative is not None:
        files.add(Path(experiment.representative.path))
    return files


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

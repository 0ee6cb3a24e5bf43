"""The journal of a study run: results/<run-id>/results.sqlite, written only by the client.

Every unit's result is committed the moment it arrives (docs/experiments.md, "results.sqlite"),
so a run whose client dies loses nothing a worker finished: `--resume RUN_ID` reads the
journal back and submits only the missing units. A worker that dies loses nothing either: its
units run again elsewhere, with identical results.

Tables:

* `meta(key, value)`: `schema` (2), `fingerprint` (sha256 of the parsed config and of every file it
  reads: a resume with a changed config or file is refused), `status` (`running` / `finished`),
  `argv`, `sessions` (1 + resumes);
* `units(key, kind, seconds, worker, result)`: one row per finished unit; `kind` is craft, host,
  chip, train or gradient; `result` is an .npz archive (NumPy's format) whose arrays are listed in
  docs/experiments.md.

SQLite in WAL mode: a committed unit survives the client being killed (SIGKILL included).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, TextIO

from host.core.errors import UserError
from host.quantization.quantize import file_sha256
from host.study.units import from_npz, kind_of, to_npz

SCHEMA = 2
DB_NAME = "results.sqlite"

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    seconds REAL,
    worker TEXT,
    result BLOB NOT NULL
) WITHOUT ROWID;
"""


def check_writable_dir(out: Path) -> None:
    """--out can hold run directories: it is a directory, or the nearest existing parent is a writable one
    (checked before a cluster starts or any work is done; nothing is created here)."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    what = "is not a directory" if existing is not None and not existing.is_dir() else "cannot be written"
    raise UserError(f"--out {out}: {existing if existing != out else 'it'} {what}",
                    hint="give --out a directory this user can create or write")


class Journal:
    """One run's units, keyed; use from the client's main thread."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path, self._db = path, connection
        self._lock_file: TextIO | None = None

    @classmethod
    def start(cls, path: Path, fingerprint: str, argv: list[str], resume: bool) -> Journal:
        """A new journal (resume=False: none may exist there) or the one an earlier session left."""
        if resume:
            return cls._reopen(path, fingerprint)
        if path.exists():
            raise UserError(f"{path.parent} already holds a run",
                            hint=f"continue it with --resume {path.parent.name}, or choose another --run-id")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the run directory {path.parent} ({err.strerror})",
                            hint="give --out a directory this user can create or write") from None
        journal = cls(path, _connect(path))
        journal._db.executescript(_TABLES)
        journal._set({"schema": str(SCHEMA), "fingerprint": fingerprint, "status": "running",
                      "argv": json.dumps(argv), "sessions": "1", "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        journal.lock()
        return journal

    @staticmethod
    def check_exists(path: Path) -> None:
        """A run to resume has its journal: checked first, before the study is loaded or a cluster started."""
        if not path.is_file():
            raise UserError(f"--resume: no run journal at {path}",
                            hint="give the run id of a run started with this version (a directory under --out)")

    @classmethod
    def _reopen(cls, path: Path, fingerprint: str) -> Journal:
        cls.check_exists(path)
        journal = cls(path, _connect(path))
        if journal.meta("schema") != str(SCHEMA):
            raise UserError(f"--resume: {path} was written by an older version (schema "
                            f"{journal.meta('schema')}, this one reads {SCHEMA})", hint="start a new run")
        if journal.meta("fingerprint") != fingerprint:
            raise UserError(f"--resume: the config, its models or its dataset changed since the run in {path.parent} "
                            "started; its finished units would not describe this run",
                            hint="resume with the config it started with, or start a new run")
        if journal.meta("status") == "finished":
            raise UserError(f"--resume: the run in {path.parent} is already finished",
                            hint="its results are in that directory; start a new run to evaluate again")
        journal.lock()
        journal._set({"sessions": str(int(journal.meta("sessions") or 1) + 1)})
        return journal

    @classmethod
    def stored_argv(cls, path: Path, run_id: str) -> list[str]:
        """The command-line options a run was started with (to resume a flag run with its own)."""
        if not path.is_file():
            raise UserError(f"--resume {run_id}: no run journal at {path}",
                            hint="give the run id of a run started with this version (a directory under --out)")
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT value FROM meta WHERE key = 'argv'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        finally:
            connection.close()
        if row is None:
            raise UserError(f"--resume {run_id}: {path} is not a run journal of this version", hint="start a new run")
        return list(json.loads(row[0]))

    @property
    def sessions(self) -> int:
        return int(self.meta("sessions") or 1)

    def lock(self) -> None:
        """One client per run: a second one (say, a resume while the first still runs) is refused."""
        handle = (self.path.parent / ".lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UserError(f"another process is running {self.path.parent}",
                            hint="wait for it, or stop it before resuming") from None
        self._lock_file = handle

    def close(self) -> None:
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            (self.path.parent / ".lock").unlink(missing_ok=True)
            self._lock_file = None

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set(self, values: dict[str, str]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def finish(self) -> None:
        self._set({"status": "finished"})

    def done_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM units")}

    def put(self, key: str, result: Any, seconds: float | None = None, worker: str | None = None) -> None:
        with self._db:
            self._db.execute("INSERT INTO units VALUES (?, ?, ?, ?, ?)",
                             (key, kind_of(key), seconds, worker, to_npz(result)))

    def get(self, key: str) -> Any:
        row = self._db.execute("SELECT result FROM units WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return from_npz(kind_of(key), row[0])

    def durations(self) -> list[tuple[str, float]]:
        """(key, seconds) of every unit: where a run's time goes (docs/bench.md)."""
        return [(k, s) for k, s in self._db.execute("SELECT key, seconds FROM units WHERE seconds IS NOT NULL")]


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def experiment_fingerprint(experiment: Any) -> str:
    """sha256 over the parsed experiment and the bytes of every file it reads."""
    digest = hashlib.sha256(repr(experiment).encode())
    if getattr(experiment, "chip_cycles", False):
        digest.update(b"|chip_cycles")   # out of repr, so that a run without cycles keeps its fingerprint
    if getattr(experiment, "qat", None) is not None:
        digest.update(f"|qat {experiment.qat!r}".encode())   # likewise for quantization-aware training
        if experiment.qat.by_bits:
            digest.update(f"|qat by bits {experiment.qat.by_bits!r}".encode())
        if experiment.qat.decay != "none":
            digest.update(f"|qat decay {experiment.qat.decay}".encode())
    edges = [w.key for w in getattr(experiment, "bitwidths", ()) if w.edges8]
    if edges:
        digest.update(f"|8-bit edges {edges!r}".encode())   # BitWidth.edges8 is out of repr, like qat
    for path in sorted(p for p in _files(experiment) if not str(p).startswith("builtin:")):
        digest.update(str(path).encode())
        digest.update((file_sha256(path) if path.exists() else "missing").encode())   # a SavedModel: a directory
    return digest.hexdigest()


def _files(experiment: Any) -> set[Path]:
    files = {Path(experiment.float_model), Path(experiment.dataset.path), *map(Path, experiment.given.values())}
    if experiment.chip_firmware is not None:
        files.add(Path(experiment.chip_firmware))
    if experiment.representative is not None:
        files.add(Path(experiment.representative.path))
    files |= {Path(d.train_data.path) for d in experiment.defenses if d.train_data is not None}
    if getattr(experiment, "qat", None) is not None:
        files.add(Path(experiment.qat.data.path))
    return files

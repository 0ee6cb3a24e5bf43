"""The results database of one evaluation run: results/<run-id>/results.sqlite.

Every inference is written as it arrives (one committed row per inference), so a run that
dies — the emulator, or the host itself — loses nothing it already measured, and
`python -m host.evaluate --resume <run-id>` continues from the first missing inference.

Tables:

* `meta(key, value)`: schema version, status (`running` / `finished`), the run's options
  (`config`, JSON: everything that decides which inferences the run makes), argv, the chip's
  description, sessions (1 + resumes) and emulator restarts.
* `evaluations`: one row per evaluation (clean, or attack × ε) in plan order: its parameters,
  the sha256 of the crafted float inputs and of their quantized bytes, the quantized inputs
  themselves (what the chip received) and the L∞ sizes. A resumed run re-crafts an unfinished
  evaluation and must find the same hashes before it continues.
* `inferences(eval_key, sample, backend, output, ticks, instructions)`: one row per inference,
  primary key (evaluation, sample, backend) — a duplicate cannot be stored. `backend` is
  `float` (the float model's scores as float32 bytes), `reference` (TFLite Micro) or `chip`.

SQLite in WAL mode with synchronous=NORMAL: a commit survives the process being killed
(SIGKILL included); only a power loss can drop the last few commits.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from host.core.errors import UserError

SCHEMA_VERSION = 1
DB_NAME = "results.sqlite"
BACKEND_ROLES = ("float", "reference", "chip")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    attack TEXT NOT NULL,
    eps REAL NOT NULL,
    params TEXT NOT NULL,
    n INTEGER NOT NULL,
    inputs_sha256 TEXT NOT NULL,
    quantized_sha256 TEXT NOT NULL,
    quantized BLOB NOT NULL,
    linf_float REAL NOT NULL,
    linf_int8 REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inferences (
    eval_key TEXT NOT NULL REFERENCES evaluations(key),
    sample INTEGER NOT NULL,
    backend TEXT NOT NULL,
    output BLOB NOT NULL,
    ticks INTEGER,
    instructions INTEGER,
    PRIMARY KEY (eval_key, sample, backend)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class EvaluationRecord:
    key: str
    position: int
    attack: str
    eps: float
    params: dict[str, Any]
    n: int
    inputs_sha256: str
    quantized_sha256: str
    linf_float: float
    linf_int8: float


@dataclass(frozen=True)
class InferenceRow:
    sample: int
    output: bytes
    ticks: int | None
    instructions: int | None


class ResultsDB:
    """One run's database; use from one thread (the evaluator's main thread)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock: TextIO | None = None

    # ---- opening ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, config: dict[str, Any], argv: Sequence[str]) -> ResultsDB:
        """A new run's database; refuses to touch an existing one."""
        if path.exists():
            run_id = path.parent.name
            raise UserError(f"run '{run_id}' already has a results database ({path})",
                            hint=f"continue it with --resume {run_id}, or choose another --run-id")
        path.parent.mkdir(parents=True, exist_ok=True)
        db = cls(path, _connect(path))
        with db._db:
            db._db.executescript(_SCHEMA)
            db._set_many({
                "schema": str(SCHEMA_VERSION), "status": "running", "config": json.dumps(config, sort_keys=True),
                "argv": json.dumps(list(argv)), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "sessions": "1", "restarts": "0",
            })
        return db

    @classmethod
    def open(cls, path: Path) -> ResultsDB:
        """An existing run's database (for --resume)."""
        run_id = path.parent.name
        if not path.parent.is_dir():
            raise UserError(f"--resume {run_id}: no such run in {path.parent.parent}",
                            hint="give the run id of an interrupted run (a directory under --out)")
        if not path.is_file():
            raise UserError(f"--resume {run_id}: {path.parent} has no {DB_NAME}",
                            hint="only runs that wrote a results database can be resumed")
        try:
            db = cls(path, _connect(path))
            schema = db.meta("schema")
        except sqlite3.DatabaseError as err:
            raise UserError(f"--resume {run_id}: {path} is not a readable results database ({err})") from None
        if schema != str(SCHEMA_VERSION):
            raise UserError(f"--resume {run_id}: results database schema {schema}, this version reads "
                            f"{SCHEMA_VERSION}")
        return db

    def lock(self) -> None:
        """Hold the run for this process (released when it exits, however it exits)."""
        handle = open(self.path.with_name(self.path.name + ".lock"), "w")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UserError(f"run '{self.path.parent.name}' is in use by another process",
                            hint="wait for it to finish (or stop it) before resuming") from None
        self._lock = handle

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---- meta -------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._db:
            self._set_many({key: value})

    def _set_many(self, values: dict[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.meta("config") or "{}")

    @property
    def argv(self) -> list[str]:
        return json.loads(self.meta("argv") or "[]")

    @property
    def finished(self) -> bool:
        return self.meta("status") == "finished"

    def bump(self, key: str, by: int = 1) -> int:
        value = int(self.meta(key, "0") or 0) + by
        self.set_meta(key, str(value))
        return value

    # ---- evaluations ------------------------------------------------------------------

    def evaluation(self, key: str) -> EvaluationRecord | None:
        row = self._db.execute(
            "SELECT key, position, attack, eps, params, n, inputs_sha256, quantized_sha256, linf_float, linf_int8 "
            "FROM evaluations WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return EvaluationRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), *row[5:])

    def add_evaluation(self, record: EvaluationRecord, quantized: bytes) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO evaluations (key, position, attack, eps, params, n, inputs_sha256, quantized_sha256, "
                "quantized, linf_float, linf_int8) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.key, record.position, record.attack, record.eps, json.dumps(record.params, sort_keys=True),
                 record.n, record.inputs_sha256, record.quantized_sha256, quantized, record.linf_float,
                 record.linf_int8))

    def quantized_inputs(self, key: str) -> bytes:
        row = self._db.execute("SELECT quantized FROM evaluations WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else b""

    # ---- inferences -------------------------------------------------------------------

    def add(self, key: str, rows: Iterable[tuple[int, str, bytes, int | None, int | None]]) -> None:
        """Store (sample, backend, output, ticks, instructions) rows in one commit; a duplicate
        (same evaluation, sample and backend) raises sqlite3.IntegrityError."""
        with self._db:
            self._db.executemany(
                "INSERT INTO inferences (eval_key, sample, backend, output, ticks, instructions) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((key, sample, backend, output, ticks, instructions)
                 for sample, backend, output, ticks, instructions in rows))

    def done(self, key: str, backend: str) -> set[int]:
        return {int(r[0]) for r in self._db.execute(
            "SELECT sample FROM inferences WHERE eval_key = ? AND backend = ?", (key, backend))}

    def rows(self, key: str, backend: str) -> list[InferenceRow]:
        return [InferenceRow(int(r[0]), bytes(r[1]), r[2], r[3]) for r in self._db.execute(
            "SELECT sample, output, ticks, instructions FROM inferences WHERE eval_key = ? AND backend = ? "
            "ORDER BY sample", (key, backend))]

    def count(self, backend: str | None = None) -> int:
        if backend is None:
            return int(self._db.execute("SELECT COUNT(*) FROM inferences").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM inferences WHERE backend = ?", (backend,)).fetchone()[0])


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db

"""Files written whole, and directories written by one process at a time.

Several processes build or cache the same file at once (Dask workers of a fresh checkout, two runs of one
model, tests in parallel). With write_whole none shares a half-written file with another, a reader finds
the previous file or the new one complete, and a failed write leaves nothing behind; directory_lock makes
writers of files that belong together (a firmware build's sources, objects and ELF) take turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold `directory`'s lock (its file .lock, flock: released when the file closes or the process dies)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_whole(target: Path, write: Callable[[Path], None], suffix: str = "") -> None:
    """Run write(partial) and move the partial file onto `target`; `suffix` ends the partial file's name,
    for writers that choose the format by it (Keras's model.save)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.tmp{suffix}")
    try:
        write(partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def write_bytes_whole(target: Path, data: bytes) -> None:
    """target.write_bytes(data), whole (write_whole)."""
    write_whole(target, lambda partial: partial.write_bytes(data))


def write_text_whole(target: Path, text: str) -> None:
    """target.write_text(text), whole (write_whole)."""
    write_whole(target, lambda partial: partial.write_text(text))

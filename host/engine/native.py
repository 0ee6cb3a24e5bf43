"""Host-native build of the firmware engine: the same C, run through ctypes.

Used by the bit-exact tests (fast: no emulator) and by `host.check`-style
debugging.  The engine is compiled once into a static archive per source hash;
each model adds only its generated model.c.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

from host.compiler.types import CompiledModel
from host.core.errors import UserError
from host.core.paths import BUILD_DIR, FIRMWARE_DIR

ENGINE_DIR = FIRMWARE_DIR / "engine"
SHIM = FIRMWARE_DIR / "native" / "shim.c"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", f"-I{ENGINE_DIR}"]
NATIVE_DIR = BUILD_DIR / "native"


def _engine_sources() -> list[Path]:
    return sorted(ENGINE_DIR.glob("*.c")) + sorted((ENGINE_DIR / "ops").glob("*.c")) + [SHIM]


def _digest(paths: list[Path], extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    for header in sorted(ENGINE_DIR.rglob("*.h")):
        h.update(header.read_bytes())
    return h.hexdigest()[:16]


def _cc() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UserError("no host C compiler found", hint="install gcc (apt-get install gcc)")
    return cc


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"host-native build failed: {' '.join(cmd[:3])} ...\n{result.stderr}")


def engine_archive() -> Path:
    """Compile the engine (+ shim) once per source hash into libtm-<hash>.a."""
    sources = _engine_sources()
    archive = NATIVE_DIR / f"libtm-{_digest(sources)}.a"
    if archive.exists():
        return archive
    objdir = archive.with_suffix(".objs")
    objdir.mkdir(parents=True, exist_ok=True)
    objects = []
    for src in sources:
        obj = objdir / (src.stem + ".o")
        _run([_cc(), *CFLAGS, "-c", str(src), "-o", str(obj)])
        objects.append(str(obj))
    tmp = archive.with_suffix(".tmp")
    _run(["ar", "rcs", str(tmp), *objects])
    tmp.replace(archive)
    return archive


class NativeModel:
    """A compiled model loaded as a shared library."""

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        archive = engine_archive()
        key = hashlib.sha256(model.c_source.encode() + archive.name.encode()).hexdigest()[:16]
        lib = NATIVE_DIR / f"model-{key}.so"
        if not lib.exists():
            src = NATIVE_DIR / f"model-{key}.c"
            src.write_text(model.c_source)
            tmp = lib.with_suffix(".tmp")
            _run([_cc(), *CFLAGS, "-shared", str(src), "-Wl,--whole-archive", str(archive),
                  "-Wl,--no-whole-archive", "-o", str(tmp)])
            tmp.replace(lib)
        self._lib = ctypes.CDLL(str(lib))
        self._lib.tm_native_run.restype = ctypes.c_int
        self._in_bytes = sum(t.nbytes for t in model.inputs)
        self._out_bytes = sum(t.nbytes for t in model.outputs)

    def run_bytes(self, data: bytes) -> bytes:
        out = ctypes.create_string_buffer(self._out_bytes)
        status = self._lib.tm_native_run(data, len(data), out, self._out_bytes)
        if status != 0:
            failed = self._lib.tm_native_failed_op()
            raise RuntimeError(f"engine failed with status {status} at op {failed}")
        return out.raw

    def tensor(self, index: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """A tensor's bytes after a run (models compiled with reuse_arena=False)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        buf = ctypes.create_string_buffer(nbytes)
        if self._lib.tm_native_tensor(index, buf, nbytes) != 0:
            raise KeyError(f"tensor {index} not readable")
        return np.frombuffer(buf.raw, dtype=dtype).reshape(shape)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Arrays in the model's input dtypes/shapes -> output arrays."""
        data = b"".join(
            np.ascontiguousarray(x, dtype=info.dtype).tobytes()
            for x, info in zip(inputs, self.model.inputs, strict=True)
        )
        raw = self.run_bytes(data)
        outs, pos = [], 0
        for info in self.model.outputs:
            outs.append(np.frombuffer(raw[pos:pos + info.nbytes], dtype=info.dtype).reshape(info.shape))
            pos += info.nbytes
        return outs

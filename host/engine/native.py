"""Host-native build of the firmware engine: the same C, run through ctypes.

Used by the bit-exact tests (fast: no emulator) and by `host.check`-style
debugging.  The engine is compiled once into a static archive per source hash;
each model adds only its generated model.c.  Every kernel folder is compiled: on
the host the kernel table (firmware/engine/tm_kernel_table.h) sees no CPU feature,
so the portable kernels run and the optimized folders contribute only their
scratch-size functions.  `kernel_library()` is the engine without a model, for
calling flat kernels and scratch-size functions from a test.
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
from host.core.files import write_text_whole, write_whole
from host.core.paths import BUILD_DIR, FIRMWARE_DIR

ENGINE_DIR = FIRMWARE_DIR / "engine"
SHIM = FIRMWARE_DIR / "native" / "shim.c"
# -O3: GCC vectorizes the portable kernels' inner loops (integer arithmetic: the same bytes as at -O2,
# checked by tests/engine against TFLite Micro); the CIFAR ResNet takes 3.0 ms (int8) and 2.5 ms (int16x8)
# of CPU per inference, TFLite Micro's interpreter 6.5 and 8.4 ms (docs/attacks.md). No -march=native: the
# library may be shared by workers on other CPUs.
CFLAGS = ["-std=c11", "-O3", "-Wall", "-Wextra", "-Werror", "-fPIC", f"-I{ENGINE_DIR}"]
NATIVE_DIR = BUILD_DIR / "native"


def _engine_sources() -> list[Path]:
    sources = sorted(ENGINE_DIR.glob("*.c"))
    for folder in sorted(p for p in ENGINE_DIR.glob("ops*") if p.is_dir()):   # ops/ and every ops_<feature>/
        sources += sorted(folder.glob("*.c"))
    return [*sources, SHIM]


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


def _objects(sources: list[Path], objdir: Path) -> list[Path]:
    """Each source compiled into objdir (kept across calls: the directory is per source hash)."""
    objdir.mkdir(parents=True, exist_ok=True)
    objects = []
    for i, src in enumerate(sources):
        obj = objdir / f"{i:02d}_{src.stem}.o"  # ops/ and ops_<feature>/ share file names
        if not obj.exists():
            write_whole(obj, lambda tmp, src=src: _run([_cc(), *CFLAGS, "-c", str(src), "-o", str(tmp)]))
        objects.append(obj)
    return objects


def engine_archive() -> Path:
    """Compile the engine (+ shim) once per source hash into libtm-<hash>.a."""
    sources = _engine_sources()
    archive = NATIVE_DIR / f"libtm-{_digest(sources)}.a"
    if archive.exists():
        return archive
    objects = _objects(sources, archive.with_suffix(".objs"))
    write_whole(archive, lambda tmp: _run(["ar", "rcs", str(tmp), *map(str, objects)]))
    return archive


def kernel_library() -> ctypes.CDLL:
    """The engine's kernels as a shared library without a model (the shim, which needs one, left out):
    flat compute functions (tm_conv_2d_s8, ...) and scratch sizes (tm_conv_2d_dsp_scratch_bytes, ...)."""
    sources = _engine_sources()
    digest = _digest(sources)
    lib = NATIVE_DIR / f"kernels-{digest}.so"
    if not lib.exists():
        objects = _objects(sources, NATIVE_DIR / f"libtm-{digest}.objs")
        kernels = [str(o) for o in objects if o.stem[3:] != SHIM.stem]
        write_whole(lib, lambda tmp: _run([_cc(), *CFLAGS, "-shared", *kernels, "-o", str(tmp)]))
    return ctypes.CDLL(str(lib))


class NativeModel:
    """A compiled model loaded as a shared library."""

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        archive = engine_archive()
        key = hashlib.sha256(model.c_source.encode() + archive.name.encode()).hexdigest()[:16]
        lib = NATIVE_DIR / f"model-{key}.so"
        if not lib.exists():
            src = NATIVE_DIR / f"model-{key}.c"
            write_text_whole(src, model.c_source)
            write_whole(lib, lambda tmp: _run([_cc(), *CFLAGS, "-shared", str(src), "-Wl,--whole-archive",
                                               str(archive), "-Wl,--no-whole-archive", "-o", str(tmp)]))
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

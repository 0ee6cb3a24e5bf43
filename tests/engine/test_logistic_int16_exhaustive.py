"""int16 LOGISTIC, exhaustively: every one of the 65,536 int16 inputs at 1,019 input scales, our engine
(host-native build of the firmware C) against the TFLite Micro interpreter, byte for byte.

The scales (docs/engine.md, "TFLM behaviours pinned down by measurement"): 2^-12 and 2^-12 * (1 +- 4e-4)
(TFLM's power-of-two path: multiplier 0, x * 3), 2^-12 * 1.002 and 3 * 2^-12 (just off it), the other
powers of two the compiler accepts (2^-43 ... 2^1), the ends 1e-13 and 2.6 of the accepted range
(scale * 3 * 4096 <= 32767), and log-uniform random scales in between, 1,019 in all. A second test
changes one entry of the compiler's sigmoid table by 1 and must see mismatches: the table is pinned.

One model per scale, a (512,) int16 tensor run over the 65,536 inputs in 128 chunks (the TFLite Micro
Python interpreter's arena is 10x the model's bytes, about 3.7 KB here). Marked slow.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator

import numpy as np
import pytest

from host.compiler.compile import compile_bytes
from host.compiler.ops import logistic
from host.engine import native
from host.engine.native import NativeModel
from host.engine.reference import ReferenceInterpreter
from tests.support.tflite_builder import GraphBuilder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"),
]

ALL_INPUTS = np.arange(-32768, 32768, dtype=np.int16)
CHUNK = 512
SCALES = 1019
LOWEST, HIGHEST = 1e-13, 2.6
POWER_OF_TWO_PATH = [2.0**-12, 2.0**-12 * (1 + 4e-4), 2.0**-12 * (1 - 4e-4)]
JUST_OFF = [2.0**-12 * 1.002, 3 * 2.0**-12]


def input_scales() -> list[float]:
    fixed = [*POWER_OF_TWO_PATH, *JUST_OFF, *(2.0**k for k in range(-43, 2) if k != -12), LOWEST, HIGHEST]
    rng = np.random.default_rng(65536)
    random = np.exp(rng.uniform(math.log(LOWEST), math.log(HIGHEST), size=SCALES - len(fixed)))
    return fixed + [float(s) for s in random]


def logistic_model(input_scale: float) -> bytes:
    g = GraphBuilder()
    x = g.tensor((CHUNK,), "int16", input_scale, 0)
    y = g.tensor((CHUNK,), "int16", 1.0 / 32768, 0)
    g.op("LOGISTIC", [x], [y])
    return g.build([x], [y])


def outputs(run, chunks: np.ndarray) -> np.ndarray:  # noqa: ANN001
    return np.concatenate([np.asarray(run(chunk)[0]) for chunk in chunks])


def mismatches(input_scale: float) -> int:
    """Inputs (of the 65,536) whose output differs between our engine and TFLite Micro."""
    data = logistic_model(input_scale)
    ours, reference = NativeModel(compile_bytes(data, name="logistic16")), ReferenceInterpreter(data)
    chunks = ALL_INPUTS.reshape(-1, CHUNK)
    got, want = outputs(ours.run, chunks), outputs(reference.run, chunks)
    assert got.dtype == want.dtype == np.int16 and got.shape == want.shape == ALL_INPUTS.shape
    return int(np.count_nonzero(got != want))


@pytest.fixture(scope="module", autouse=True)
def private_native_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The ~1,000 model libraries (38 KB each) go to a temporary directory, not build/native; the engine
    archive is built (or found) in build/native once and copied there."""
    archive = native.engine_archive()
    where = tmp_path_factory.mktemp("native")
    shutil.copy(archive, where / archive.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "NATIVE_DIR", where)
        yield


def test_the_scales_cover_both_rescaling_paths_and_the_accepted_range() -> None:
    scales = input_scales()
    assert len(scales) == SCALES == len(set(scales))
    assert all(logistic.int16_params(s) == (0, 0) for s in POWER_OF_TWO_PATH)          # x * 3
    assert all(logistic.int16_params(s)[0] > 0 for s in JUST_OFF)                      # the multiplier
    assert min(scales) == LOWEST and max(scales) == HIGHEST
    assert logistic.int16_params(HIGHEST)[0] <= 32767 and logistic.int16_params(LOWEST)[0] > 0


def test_all_65536_inputs_at_1019_input_scales_match_tflite_micro() -> None:
    bad = {s: n for s in input_scales() if (n := mismatches(s))}
    assert not bad, f"{len(bad)} of {SCALES} scales differ: " + ", ".join(
        f"{s:.6g} ({n} inputs)" for s, n in list(bad.items())[:10])


def test_one_table_entry_off_by_one_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a sigmoid table with entry 100 raised by 1 (2^-12: |3x| >> 9 reaches 192)."""
    table = logistic.sigmoid_table()
    table[100] += 1
    monkeypatch.setattr(logistic, "sigmoid_table", lambda: list(table))
    assert mismatches(2.0**-12) > 0

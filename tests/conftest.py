"""Fixtures shared by the tests: the shipped digits models, loaded once per session; the default board flashed."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from host.attacks import FloatModel, ReferenceOracle, load_float_model
from host.core.paths import DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, ROOT


def pytest_configure(config: pytest.Config) -> None:
    """absl's logging handler (TensorFlow's) writes to the sys.stderr of its creation, pytest's capture here, and
    closes that stream when logging is reconfigured unless it is the sys.stderr of the moment: under `capsys`, a
    later dictConfig (distributed's) closed pytest's own capture ("I/O operation on closed file"). The real
    stderr is never closed."""
    import absl.logging

    absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session")
def float_model() -> FloatModel:
    """The shipped float digits model (models/)."""
    return load_float_model(DEFAULT_FLOAT_MODEL)


@pytest.fixture(scope="session")
def oracle() -> ReferenceOracle:
    """The shipped int8 digits model behind the TFLite Micro reference interpreter."""
    return ReferenceOracle(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def flashed_default_board() -> None:
    """`make flash` of the default model into build/flash/ (a no-op when current), for the tests whose host.evaluate,
    host.check or link runs read the flashed board: none of them depends on an earlier test having flashed it.
    Without QEMU or the toolchain it does nothing (the tests that need them skip)."""
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        return
    proc = subprocess.run([sys.executable, "-m", "host.flash"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr

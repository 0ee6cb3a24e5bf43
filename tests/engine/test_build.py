"""Firmware builds of one directory by several processes at once (host.core.files.directory_lock).

Two runs of one model, or tests in parallel (`make test` runs two at a time), build into the same
build/<board>/<model>/: they must take turns, and each must end with a whole ELF.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.core.files import directory_lock
from host.core.paths import DEFAULT_MODEL, ROOT

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no Arm toolchain")

BUILD = """
import sys
from pathlib import Path
from host.compiler import compile_tflite
from host.core.boards import load_board
from host.engine.build import build_firmware
build_firmware(compile_tflite(sys.argv[1]), load_board("mps2-an386"), Path(sys.argv[2]))
"""


def test_builds_of_one_directory_take_turns_and_leave_a_whole_elf(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    with directory_lock(out):
        builders = [subprocess.Popen([sys.executable, "-c", BUILD, str(DEFAULT_MODEL), str(out)], cwd=ROOT,
                                     stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(2.0)   # time enough to import and write model.c, were the lock not honoured
        assert all(b.poll() is None for b in builders)
        assert not (out / "model.c").exists() and not (out / "firmware.elf").exists()
    for builder in builders:
        _, stderr = builder.communicate(timeout=300)
        assert builder.returncode == 0, stderr
    elf = (out / "firmware.elf").read_bytes()
    assert elf[:4] == b"\x7fELF"
    assert not list(out.glob("*.tmp")), "a partial ELF was left behind"

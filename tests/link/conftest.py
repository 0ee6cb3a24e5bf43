"""Fixtures of the link tests: the digits model, its firmware for the default board and a device
booted from it in QEMU (each once per test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from host.compiler import CompiledModel, compile_tflite
from host.core.boards import load_board
from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL
from host.emulators.launch import boot_elf
from host.engine.build import FirmwareImage, build_firmware
from host.link.device import Device


@pytest.fixture(scope="module")
def model() -> CompiledModel:
    return compile_tflite(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def image(model: CompiledModel, tmp_path_factory: pytest.TempPathFactory) -> FirmwareImage:
    return build_firmware(model, load_board(DEFAULT_BOARD), out_dir=tmp_path_factory.mktemp("fw"))


@pytest.fixture(scope="module")
def device(model: CompiledModel, image: FirmwareImage) -> Iterator[Device]:
    with boot_elf(load_board(DEFAULT_BOARD), image.elf, model.sha256, timeout_s=10) as dev:
        yield dev

"""Real models with real inputs on the emulated chip: the first CIFAR-10 test images through the
MLPerf Tiny and David-and-Goliath ResNets, bit-exact with TFLite Micro and correctly classified.
(Random inputs through every shared model on every board: tests/core/test_boards.py.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from host.compiler import compile_tflite
from host.core.boards import load_board
from host.core.paths import SHARED_DIR
from host.emulators.launch import boot_elf
from host.engine.build import build_firmware
from host.engine.reference import ReferenceInterpreter

CIFAR = SHARED_DIR / "data/cifar10/test_first1017.npz"
IMAGES = 8

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(not CIFAR.exists(), reason="../shared (CIFAR-10 images, reference models) is absent"),
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm (make deps)"),
]


@pytest.mark.parametrize(("model", "board", "pixel_range"), [
    ("mlperf-tiny/pretrainedResnet_quant.tflite", "mps2-an386", 255.0),   # MLPerf ResNet takes raw pixels
    ("david-goliath/cifar_resnet_int8.tflite", "mps2-an500", 1.0),        # the study's ResNet takes 0..1
    ("david-goliath/cifar_resnet_int16.tflite", "mps3-an547", 1.0),
])
def test_cifar_images_bit_exact_and_classified(model: str, board: str, pixel_range: float, tmp_path) -> None:  # noqa: ANN001
    path = SHARED_DIR / "models" / model
    with np.load(CIFAR) as data:
        x = data["x"][:IMAGES].astype(np.float32) * np.float32(pixel_range / 255.0)
        y = data["y"][:IMAGES].astype(np.int64)
    compiled = compile_tflite(path)
    spec = load_board(board)
    image = build_firmware(compiled, spec, tmp_path)
    reference = ReferenceInterpreter(path)
    info = compiled.inputs[0]
    predictions = []
    with boot_elf(spec, image.elf, compiled.sha256) as device:
        for k in range(IMAGES):
            q = info.quantize(x[k:k + 1]).reshape(info.shape)
            (ours,), _ = device.infer_arrays(q)
            golden = reference.run(q)[0]
            assert ours.tobytes() == golden.tobytes(), f"{model} image {k}: chip differs from TFLite Micro"
            predictions.append(int(ours.argmax()))
    assert np.mean(np.array(predictions) == y) >= 0.75, (predictions, y.tolist())

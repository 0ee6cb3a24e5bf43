"""Real TinyML models from ../shared run bit-exact through the host-native engine."""

from __future__ import annotations

import numpy as np
import pytest

from host.compiler import compile_tflite
from host.core.paths import SHARED_DIR
from host.engine.native import NativeModel
from host.engine.reference import ReferenceInterpreter
from tests.engine.test_kernels_native import random_input

MODELS = {
    "kws": "mlperf-tiny/kws_ref_model.tflite",
    "vww": "mlperf-tiny/vww_96_int8.tflite",
    "resnet": "mlperf-tiny/pretrainedResnet_quant.tflite",
    "dg-resnet-int8": "david-goliath/cifar_resnet_int8.tflite",
    "dg-resnet-int16": "david-goliath/cifar_resnet_int16.tflite",
    "dg-vww-int16": "david-goliath/vww_int16.tflite",
    "coffee": "david-goliath/coffee_cnn_int8.tflite",
    "toycar": "mlperf-tiny/model_ToyCar_quant_fullint_micro.tflite",
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_real_model_bit_exact_on_random_inputs(name: str) -> None:
    path = SHARED_DIR / "models" / MODELS[name]
    if not path.exists():
        pytest.skip(f"{path} absent (../shared reference data not available)")
    model = compile_tflite(path)
    native = NativeModel(model)
    reference = ReferenceInterpreter(path)
    rng = np.random.default_rng(7)
    info = model.inputs[0]
    for _ in range(5):
        x = random_input(rng, info.dtype, info.shape)
        ours, golden = native.run(x)[0], reference.run(x)[0]
        assert ours.tobytes() == golden.tobytes()

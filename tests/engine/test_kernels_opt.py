"""The optimized kernels (firmware/engine/ops_dsp/ on the Cortex-M4/M7/M55 DSP extension,
ops_mve/ on the Cortex-M55's Helium) match TFLite Micro byte for byte: random single-op models
(the generators of tests/support/tflite_builder.py plus wider ones here that reach the 4-wide inner
loops, odd channel counts and odd output widths, padding, strides, dilation, per-channel scales) and
the real models of ../shared, built for mps2-an386 (M4), mps2-an500 (M7) and mps3-an547 (M55).

Each board keeps one build directory for the whole session, so a model costs one compile of model.c,
a link and a QEMU boot. More seeds: `python -m pytest -m slow tests/engine/test_kernels_opt.py`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from host.compiler import compile_tflite
from host.compiler.compile import compile_bytes
from host.core.boards import load_board
from host.core.paths import SHARED_DIR
from host.engine.build import build_firmware, cpu_features
from tests.support.chip import assert_bit_exact_on_chip, default_suite_boards
from tests.support.tflite_builder import ACTIVATIONS, GENERATORS, GraphBuilder, fb

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)"),
]

# The kernel table's features each board's build has (firmware/engine/tm_kernel_table.h; most specific first).
BOARDS = {"mps2-an386": ("dsp", "fpu"), "mps2-an500": ("dsp", "fpu"), "mps3-an547": ("mve", "dsp", "fpu")}
INPUTS_PER_MODEL = 3
SEEDS = 2           # per generator and board in the default run
SLOW_SEEDS = 12     # under -m slow
REAL_MODELS = {
    "resnet": "mlperf-tiny/pretrainedResnet_quant.tflite",
    "vww": "mlperf-tiny/vww_96_int8.tflite",
    "kws": "mlperf-tiny/kws_ref_model.tflite",
    "toycar": "mlperf-tiny/model_ToyCar_quant_fullint_micro.tflite",
}


def random_conv_wide(rng: np.random.Generator, depthwise: bool = False, rgb: bool = False) -> bytes:
    """An int8 (depthwise) convolution with channel counts that reach the optimized inner loops and
    their tails (in_c 3 for the RGB first layer, else up to 37; out_c up to 19), odd widths, SAME or
    VALID padding, strides 1-2, sometimes dilation, per-channel weight scales."""
    g = GraphBuilder()
    h, w = int(rng.integers(2, 10)), int(rng.integers(2, 12))
    in_c = 3 if rgb else int(rng.choice([1, 2, 4, 5, 8, 13, 16, 17, 32, 37]))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if rng.random() < 0.25:
        kh = kw = 1
    stride_h, stride_w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dil_h, dil_w = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if rng.random() < 0.25 else (1, 1)
    eff_h, eff_w = (kh - 1) * dil_h + 1, (kw - 1) * dil_w + 1
    same = bool(rng.random() < 0.5) or eff_h > h or eff_w > w
    out_h = (h + stride_h - 1) // stride_h if same else (h - eff_h + stride_h) // stride_h
    out_w = (w + stride_w - 1) // stride_w if same else (w - eff_w + stride_w) // stride_w
    out_c = in_c if depthwise else int(rng.integers(1, 20))
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    w_scales = rng.uniform(0.002, 0.05, size=out_c)
    fan_in = kh * kw * (1 if depthwise else in_c)
    out_scale = in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(fan_in) * float(rng.uniform(0.3, 3.0)) / 127.0
    out_zp = int(rng.integers(-128, 128))
    shape = (1, kh, kw, out_c) if depthwise else (out_c, kh, kw, in_c)
    weights = rng.integers(-127, 128, size=shape, dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int32)
    x = g.tensor((1, h, w, in_c), "int8", in_scale, in_zp)
    f = g.tensor(shape, "int8", list(w_scales), 0, weights, quantized_dimension=3 if depthwise else 0)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias) if depthwise or rng.random() < 0.9 else -1
    y = g.tensor((1, out_h, out_w, out_c), "int8", out_scale, out_zp)
    opt = fb.DepthwiseConv2DOptionsT() if depthwise else fb.Conv2DOptionsT()
    if depthwise:
        opt.depthMultiplier = 1
    opt.padding = 0 if same else 1
    opt.strideH, opt.strideW = stride_h, stride_w
    opt.dilationHFactor, opt.dilationWFactor = dil_h, dil_w
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def random_fc_wide(rng: np.random.Generator, dims: tuple[int, int, int] | None = None) -> bytes:
    """int8 FULLY_CONNECTED with depths from 1 to 300 (vector loops and their tails), odd unit counts;
    or (batches, depth, units) = `dims`."""
    g = GraphBuilder()
    batches, depth, units = dims or (int(rng.integers(1, 4)), int(rng.integers(1, 300)), int(rng.integers(1, 24)))
    in_scale, in_zp = float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    w_scale = float(rng.uniform(0.002, 0.05))
    out_scale = in_scale * w_scale * 60.0 * np.sqrt(depth) * float(rng.uniform(0.3, 3.0)) / 127.0
    weights = rng.integers(-127, 128, size=(units, depth), dtype=np.int8)
    x = g.tensor((batches, depth), "int8", in_scale, in_zp)
    f = g.tensor((units, depth), "int8", w_scale, 0, weights)
    bias = rng.integers(-3000, 3000, size=units).astype(np.int32)
    b = g.tensor((units,), "int32", in_scale * w_scale, 0, bias) if rng.random() < 0.85 else -1
    y = g.tensor((batches, units), "int8", out_scale, int(rng.integers(-128, 128)))
    opt = fb.FullyConnectedOptionsT()
    opt.fusedActivationFunction = int(rng.choice(ACTIVATIONS))
    g.op("FULLY_CONNECTED", [x, f, b], [y], opt)
    return g.build([x], [y])


OPT_GENERATORS = {
    "CONV_2D": GENERATORS["CONV_2D"],
    "CONV_2D_WIDE": random_conv_wide,
    "CONV_2D_RGB": lambda rng: random_conv_wide(rng, rgb=True),
    "DEPTHWISE_CONV_2D": GENERATORS["DEPTHWISE_CONV_2D"],
    "DEPTHWISE_CONV_2D_WIDE": lambda rng: random_conv_wide(rng, depthwise=True),
    "FULLY_CONNECTED": GENERATORS["FULLY_CONNECTED"],
    "FULLY_CONNECTED_WIDE": random_fc_wide,
    # int16x8 and grouped/multiplier cases fall back to the portable kernels inside the optimized ones
    "CONV_2D_INT16": GENERATORS["CONV_2D_INT16"],
    "FULLY_CONNECTED_INT16": GENERATORS["FULLY_CONNECTED_INT16"],
}


@pytest.fixture(scope="session")
def board_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return {name: tmp_path_factory.mktemp(name) for name in BOARDS}


def run_bit_exact(board_name: str, out_dir, data: bytes, label: str, rng: np.random.Generator,  # noqa: ANN001
                  model=None) -> None:  # noqa: ANN001
    assert_bit_exact_on_chip(board_name, out_dir, data, label, rng, model, INPUTS_PER_MODEL)


def test_boards_select_the_optimized_kernels() -> None:
    for name, features in BOARDS.items():
        assert cpu_features(load_board(name)) == features


def _check_op(board_name: str, op: str, seeds: range, board_dirs: dict) -> None:  # noqa: ANN001
    for seed in seeds:
        rng = np.random.default_rng([seed, sum(op.encode()), 6])
        run_bit_exact(board_name, board_dirs[board_name], OPT_GENERATORS[op](rng), f"{op} seed {seed}", rng)


@pytest.mark.parametrize("op", sorted(OPT_GENERATORS))
@pytest.mark.parametrize("board_name", default_suite_boards(sorted(BOARDS)))
def test_single_op_optimized(board_name: str, op: str, board_dirs: dict) -> None:
    _check_op(board_name, op, range(SEEDS), board_dirs)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(OPT_GENERATORS))
@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_single_op_optimized_more_seeds(board_name: str, op: str, board_dirs: dict) -> None:
    _check_op(board_name, op, range(SEEDS, SEEDS + SLOW_SEEDS), board_dirs)


@pytest.mark.parametrize("name", sorted(REAL_MODELS))
@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_real_model_optimized(board_name: str, name: str, board_dirs: dict) -> None:
    path = SHARED_DIR / "models" / REAL_MODELS[name]
    if not path.exists():
        pytest.skip(f"{path} absent (../shared reference data not available)")
    model = compile_tflite(path)
    run_bit_exact(board_name, board_dirs[board_name], path.read_bytes(), name, np.random.default_rng(11), model)


def test_fc_weights_are_widened_where_they_fit(tmp_path: Path) -> None:
    """The DSP FULLY_CONNECTED kernel reads weights the compiler widened to int16 (twice their flash) where
    the board has room: 1024 x 360 int8 weights (369 KB) and their 737 KB copy do not fit the 1 MiB flash
    of netduinoplus2, so its build leaves the copy out (TM_FC_WEIGHTS16=0) and runs the int8 path; mps2-an386
    holds both. Bit-exact either way."""
    rng = np.random.default_rng(5)
    data = random_fc_wide(rng, (2, 1024, 360))
    model = compile_bytes(data, name="wide_fc")
    widened = 1024 * 360 * 2 + 360 * 4   # the int16 weights and each unit's doubled bias (60 groups of 6 units)
    assert model.guarded_bytes == {"TM_FC_WEIGHTS16": widened}
    for board_name, copy in (("netduinoplus2", 0), ("mps2-an386", widened)):
        image = build_firmware(model, load_board(board_name), tmp_path / board_name)
        assert image.kernel_weights_bytes == copy, board_name
        assert_bit_exact_on_chip(board_name, tmp_path / board_name, data, "wide FC", rng, model, inputs=2)


def _conv3x3(rng: np.random.Generator, h: int, in_c: int, out_c: int) -> bytes:
    """One int8 CONV_2D 3x3, stride 1, SAME, over an h x h input, no activation."""
    g = GraphBuilder()
    in_scale, w_scales = 0.05, rng.uniform(0.002, 0.05, size=out_c)
    weights = rng.integers(-127, 128, size=(out_c, 3, 3, in_c), dtype=np.int8)
    x = g.tensor((1, h, h, in_c), "int8", in_scale, int(rng.integers(-128, 128)))
    f = g.tensor(weights.shape, "int8", list(w_scales), 0, weights, quantized_dimension=0)
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int32)
    b = g.tensor((out_c,), "int32", list(in_scale * w_scales), 0, bias)
    y = g.tensor((1, h, h, out_c), "int8", in_scale * float(w_scales.mean()) * 60.0 * np.sqrt(9 * in_c) / 127, 5)
    opt = fb.Conv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW = 0, 1, 1
    g.op("CONV_2D", [x, f, b], [y], opt)
    return g.build([x], [y])


def test_conv_winograd_filters_where_they_fit(tmp_path: Path) -> None:
    """The DSP CONV_2D kernel's Winograd path reads filters the compiler transformed (16/9 x 2 bytes per weight)
    where the board has room: a 3x3 128 -> 256 layer's 1.05 MB of them do not fit the 1 MiB flash of
    netduinoplus2, so its build leaves them out (TM_CONV_WINOGRAD=0) and the op takes another path; mps2-an386
    holds them. Bit-exact either way."""
    rng = np.random.default_rng(7)
    data = _conv3x3(rng, 4, 128, 256)
    model = compile_bytes(data, name="winograd_conv")
    words = 256 * 3 * 4  # the requantization words of its 256 channels (TM_CONV_WIDE_RQ), dropped with the filters
    assert model.guarded_bytes == {"TM_CONV_WINOGRAD": 16 * 128 * 256 * 2, "TM_CONV_WIDE_RQ": words}
    for board_name, copy in (("netduinoplus2", 0), ("mps2-an386", 16 * 128 * 256 * 2 + words)):
        image = build_firmware(model, load_board(board_name), tmp_path / board_name)
        assert image.kernel_weights_bytes == copy, board_name
        assert_bit_exact_on_chip(board_name, tmp_path / board_name, data, "Winograd conv", rng, model, inputs=2)

"""Model compiler: TFLM Prepare arithmetic, planning, validation and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from host.compiler import quant
from host.compiler.compile import UnsupportedModelError, compile_bytes, compile_file
from host.compiler.planner import plan_arena, plan_scratch
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL
from host.tflite.reader import ModelFormatError, parse_model
from tests.support.tflite_builder import GraphBuilder, fb, random_conv, random_multi_op


@pytest.mark.parametrize("real", [1e-6, 0.00391, 0.5, 0.75, 1.0, 1.5, 123.456, 2**-31 * 1.5])
def test_quantize_multiplier_reconstructs_value(real: float) -> None:
    q, shift = quant.quantize_multiplier(real)
    assert 2**30 <= q < 2**31
    assert math.isclose(q * 2.0 ** (shift - 31), real, rel_tol=2**-30)


def test_quantize_multiplier_rounds_up_to_next_power() -> None:
    # Mantissa that rounds to 2**31 must renormalise to 2**30 with shift + 1.
    real = (1 - 2**-33) * 0.5
    assert quant.quantize_multiplier(real) == (2**30, 0)
    assert quant.quantize_multiplier(0.0) == (0, 0)


def test_tflite_round_is_half_away_from_zero() -> None:
    assert [quant.tflite_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1, 2, 3, -1, -3]


def test_activation_ranges() -> None:
    assert quant.activation_range("NONE", "int8", 0.1, 3) == (-128, 127)
    assert quant.activation_range("RELU", "int8", 0.1, -5) == (-5, 127)
    assert quant.activation_range("RELU6", "int8", 0.1, -5) == (-5, 55)
    assert quant.activation_range("RELU_N1_TO_1", "int8", 0.1, 0) == (-10, 10)


def test_padding_matches_tflite_same_and_valid() -> None:
    assert quant.out_size("SAME", 7, 3, 2) == 4
    assert quant.out_size("VALID", 7, 3, 2) == 3
    assert quant.pad_before(2, 1, 7, 3, 4) == 1
    assert quant.pad_before(2, 1, 8, 3, 4) == 0  # total 1: the extra goes after


def test_softmax_params_match_known_values() -> None:
    # Input scale of the coffee CNN's softmax (checked bit-exact against TFLM).
    assert quant.softmax_int8_params(1.0, 0.2942154) == (1263645568, 25, -62)


def test_planner_never_overlaps_live_tensors() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_ops = int(rng.integers(1, 8))
        sizes, op_io, produced = {}, [], [0]
        sizes[0] = int(rng.integers(1, 500))
        for i in range(n_ops):
            ins = list(rng.choice(produced, size=min(len(produced), 2), replace=False))
            out = i + 1
            sizes[out] = int(rng.integers(1, 500))
            op_io.append(([int(t) for t in ins], [out]))
            produced.append(out)
        offsets, total = plan_arena(sizes, op_io, [0], [n_ops], [])
        spans = {t: [n_ops + 1, -2] for t in sizes}
        for i, (ins, outs) in enumerate(op_io):
            for t in ins + outs:
                spans[t] = [min(spans[t][0], i), max(spans[t][1], i)]
        spans[0][0], spans[n_ops][1] = -1, n_ops
        for a in sizes:
            assert offsets[a] % 16 == 0 and offsets[a] + sizes[a] <= total
            for b in sizes:
                live_together = spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]
                disjoint = offsets[a] + sizes[a] <= offsets[b] or offsets[b] + sizes[b] <= offsets[a]
                assert a == b or not live_together or disjoint


def test_reshape_output_shares_input_bytes() -> None:
    model = compile_bytes(random_multi_op(np.random.default_rng(1)))
    assert "TM_OP_RESHAPE" in model.c_source
    assert model.arena_bytes > 0


def test_scratch_plan_is_the_largest_kernel_scratch_of_the_core() -> None:
    """Scratch (stack, one op at a time) comes from the ops' scratch functions for the kernels a core runs:
    none with the portable kernels, each op's own figure from its row's first kernel that takes it."""
    model = compile_file(DEFAULT_MODEL)
    assert len(model.op_scratch) == len(model.ops)
    assert model.scratch_bytes(()) == 0
    for features in (("dsp", "fpu"), ("mve", "dsp", "fpu")):
        peak, where = plan_scratch(model.op_scratch, features)
        assert peak == model.scratch_bytes(features) > 0
        assert model.ops[where] in ("CONV_2D", "DEPTHWISE_CONV_2D")
        conv = next(s for s in model.op_scratch if s.kind == "CONV_2D")
        assert peak >= conv.by_kernel[features[0]] > 0
    assert model.scratch_bytes(("mve", "dsp", "fpu")) < model.scratch_bytes(("dsp", "fpu")) <= 16 * 1024


def test_not_a_tflite_file_is_refused() -> None:
    with pytest.raises(ModelFormatError, match="not a TFLite flatbuffer"):
        parse_model(b"\x00" * 64)


@pytest.mark.parametrize("cut", [12, 100, 400])
def test_truncated_file_is_refused(cut: int) -> None:
    data = random_conv(np.random.default_rng(3))
    with pytest.raises(ModelFormatError, match="corrupt or truncated"):
        compile_bytes(data[:cut])


def test_missing_and_wrong_suffix_paths(tmp_path) -> None:  # noqa: ANN001
    keras_file = tmp_path / "model.h5"
    keras_file.write_bytes(b"HDF")
    with pytest.raises(UserError, match="not a .tflite file"):
        compile_file(keras_file)
    with pytest.raises(UserError, match="model file not found"):
        compile_file(tmp_path / "absent.h5")
    with pytest.raises(UserError, match="model file not found"):
        compile_file(tmp_path / "absent.tflite")


def _graph_with_unsupported_ops() -> bytes:
    g = GraphBuilder()
    x = g.tensor((1, 4), "int8", 0.1, 0)
    y = g.tensor((1, 4), "int8", 1 / 256, -128)
    z = g.tensor((1, 4), "int8", 0.1, 0)
    g.op("HARD_SWISH", [x], [y])
    g.op("TANH", [y], [z])
    return g.build([x], [z])


def test_unsupported_ops_are_all_listed_with_index() -> None:
    with pytest.raises(UnsupportedModelError) as err:
        compile_bytes(_graph_with_unsupported_ops())
    text = str(err.value)
    assert "op 0 HARD_SWISH" in text and "op 1 TANH" in text
    assert "supported ops" in text and "CONV_2D" in text


def test_float_model_is_refused_with_quantization_hint() -> None:
    g = GraphBuilder()
    x = g.tensor((1, 4), "float32")
    w = g.tensor((2, 4), "float32", data=np.ones((2, 4), np.float32))
    y = g.tensor((1, 2), "float32")
    g.op("FULLY_CONNECTED", [x, w, -1], [y], fb.FullyConnectedOptionsT())
    with pytest.raises(UnsupportedModelError, match="float model") as err:
        compile_bytes(g.build([x], [y]))
    assert "int8" in str(err.value)


def test_asymmetric_int8_weights_are_refused() -> None:
    g = GraphBuilder()
    x = g.tensor((1, 4), "int8", 0.1, 0)
    w = g.tensor((2, 4), "int8", 0.01, 5, np.ones((2, 4), np.int8))
    y = g.tensor((1, 2), "int8", 0.1, 0)
    g.op("FULLY_CONNECTED", [x, w, -1], [y], fb.FullyConnectedOptionsT())
    with pytest.raises(UnsupportedModelError, match="symmetric"):
        compile_bytes(g.build([x], [y]))


def test_generated_c_carries_model_hash_and_arena() -> None:
    data = random_conv(np.random.default_rng(5))
    model = compile_bytes(data, name="conv")
    assert model.sha256.hex()[:16] in model.c_source
    assert f".arena_bytes = {model.arena_bytes}u" in model.c_source
    assert model.inputs[0].dtype == "int8" and model.ops == ["CONV_2D"]


def _relu_model(shape_signature: list[int] | None = None, subgraphs: int = 1) -> bytes:
    """A one-op int8 model, optionally with a dynamic batch or extra subgraphs."""
    import flatbuffers

    g = GraphBuilder()
    x = g.tensor((1, 4), "int8", 0.1, 0)
    y = g.tensor((1, 4), "int8", 0.1, 0)
    g.op("RELU", [x], [y])
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(g.build([x], [y]), 0))
    if shape_signature is not None:
        model.subgraphs[0].tensors[0].shapeSignature = shape_signature
    model.subgraphs = model.subgraphs * subgraphs
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_dynamic_shapes_and_several_subgraphs_are_refused() -> None:
    with pytest.raises(UserError, match="dynamic shape") as err:
        compile_bytes(_relu_model(shape_signature=[1, -1]))
    assert "op 0 RELU: not supported" in str(err.value)  # every problem at once
    with pytest.raises(UserError, match="2 subgraphs"):
        compile_bytes(_relu_model(subgraphs=2))

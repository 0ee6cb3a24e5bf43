"""Dead-channel pruning (host/compiler/prune.py): cut channels, outputs bit-exact with TFLite Micro."""

from __future__ import annotations

import numpy as np
import pytest

from host.compiler.compile import compile_bytes
from host.compiler.prune import prune_dead_channels
from host.tflite.reader import parse_model
from tests.engine.test_kernels_native import assert_bit_exact
from tests.support.tflite_builder import random_dead_channel_chain


def _channels_between(data: bytes) -> int:
    """Channels of the first conv's output after pruning."""
    graph, _ = prune_dead_channels(parse_model(data).subgraphs[0])
    return graph.tensors[graph.operators[0].outputs[0]].shape[-1]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_dead_channels_are_cut_and_the_outputs_stay_bit_exact(dtype: str, seed: int) -> None:
    rng = np.random.default_rng([seed, len(dtype)])
    dead = int(rng.integers(4, 9))
    data, channels = random_dead_channel_chain(rng, dtype, depthwise_layers=seed % 3, dead=dead,
                                               producer_bias=seed % 4 != 1)
    kept = _channels_between(data)
    assert kept < channels and kept >= channels - dead
    assert kept % 4 == 0 or kept == channels - dead
    assert_bit_exact(data, rng, f"prune-{dtype}-{seed}")


def test_a_reader_that_reads_no_channel_keeps_a_few() -> None:
    rng = np.random.default_rng(3)
    data, channels = random_dead_channel_chain(rng, dead=12)
    data, channels = random_dead_channel_chain(np.random.default_rng(3), dead=channels)
    assert _channels_between(data) == min(4, channels)
    assert_bit_exact(data, rng, "prune-all-dead")


def test_a_tensor_someone_else_sees_is_not_cut() -> None:
    rng = np.random.default_rng(5)
    data, channels = random_dead_channel_chain(rng, dead=6, also_output=True)
    assert _channels_between(data) == channels
    assert_bit_exact(data, rng, "prune-also-output")


def test_the_debugging_build_keeps_every_channel() -> None:
    data, channels = random_dead_channel_chain(np.random.default_rng(8), dead=8)
    pruned, whole = compile_bytes(data, reuse_arena=True), compile_bytes(data, reuse_arena=False)
    assert pruned.weights_bytes < whole.weights_bytes
    assert pruned.cut_channels == channels - _channels_between(data) > 0 and whole.cut_channels == 0

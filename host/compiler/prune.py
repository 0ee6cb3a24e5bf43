"""Dead channels: channels that no model output depends on, removed from the graph before lowering.

A CONV_2D whose filter is zero, for every output channel and tap, on input channel c reads that channel for
nothing: whatever the channel holds, it adds 0 to every sum (TFLite folds the input zero point into the sum as
w * (x - zero_point), which is 0 too). If that channel was made by a CONV_2D and passed through depthwise
convolutions on the way (each output channel of which reads only its own input channel), every MAC that made it
is wasted as well: the producer's filter row, the depthwise filters' column and the reader's filter column of c
can go, and the tensors between lose channel c. The model's outputs do not change by a bit: no kept value reads a
removed one. Removing a producer's rows can leave its own input channels dead, so the pass runs to a fixed point.

Trained models have such channels (MLPerf Tiny's VWW MobileNet: 4 to 225 of the input channels of each of its
last eight 1x1 layers, docs/performance.md). Only chains whose tensors have one reader and are not model inputs
or outputs are cut. The debugging build that keeps every tensor readable (compile_bytes(reuse_arena=False))
does not prune.

Imports: host.tflite.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from host.tflite.reader import Quantization, Subgraph, Tensor


@dataclass(frozen=True)
class _Chain:
    """Ops whose channel c all serve the reader's input channel c: producer conv, depthwise convs, reader conv."""

    producer: int
    depthwise: tuple[int, ...]
    reader: int
    tensors: tuple[int, ...]    # activations between producer and reader


def prune_dead_channels(graph: Subgraph) -> tuple[Subgraph, int]:
    """The graph with every dead channel of a conv -> depthwise* -> conv chain removed (a new Subgraph; the
    given one is not changed), and how many channels were cut (counted at the readers' inputs)."""
    tensors = list(graph.tensors)
    pruned = Subgraph(tensors, graph.inputs, graph.outputs, graph.operators)
    cut = 0
    changed = True
    while changed:
        changed = False
        for reader in range(len(graph.operators)):
            chain = _chain_into(pruned, reader)
            if chain is None:
                continue
            keep = _live_input_channels(tensors[graph.operators[reader].inputs[1]])
            channels = tensors[chain.tensors[-1]].shape[-1]
            if keep.size < channels:
                _cut(pruned, chain, keep)
                cut += channels - keep.size
                changed = True
    return pruned, cut


# Channels are kept in multiples of 4, dead ones added back where needed: the DSP CONV_2D path takes an even
# number of output channels only, and fills a pixel's taps fastest for input channels in whole words.
# VWW on mps2-an386, estimated M4 cycles (P = 1 - 3): exact counts 8.29-8.53 M, even 8.02-8.22 M,
# multiples of 4 7.98-8.18 M, of 8 8.15-8.35 M (12.79-13.03 M unpruned).
MULTIPLE = 4


def _live_input_channels(filt: Tensor) -> np.ndarray:
    """Input channels on which the (O, H, W, I) filter is not all zero, with dead ones added back up to a
    multiple of MULTIPLE (or all of them)."""
    channels = filt.shape[-1]
    live = np.any(filt.array().reshape(-1, channels) != 0, axis=0)
    short = -int(live.sum()) % MULTIPLE if live.any() else MULTIPLE
    for c in np.flatnonzero(~live)[:short]:
        live[c] = True
    return np.flatnonzero(live)


def _chain_into(graph: Subgraph, reader: int) -> _Chain | None:
    """The chain ending at op `reader`, if its input channels can be cut all the way back to a CONV_2D."""
    op = graph.operators[reader]
    if not _is_plain_conv(graph, reader):
        return None
    depthwise: list[int] = []
    between = [op.inputs[0]]
    while True:
        if not _cuttable(graph, between[-1]):
            return None
        producer = _producer(graph, between[-1])
        if producer is None:
            return None
        if _is_plain_conv(graph, producer):
            return _Chain(producer, tuple(reversed(depthwise)), reader, tuple(reversed(between)))
        if not _is_channelwise_depthwise(graph, producer):
            return None
        depthwise.append(producer)
        between.append(graph.operators[producer].inputs[0])


def _is_plain_conv(graph: Subgraph, index: int) -> bool:
    """A CONV_2D with a constant (O, H, W, I) filter over all its input's channels (no groups), its own weights."""
    op = graph.operators[index]
    if op.opcode != "CONV_2D" or len(op.inputs) < 2:
        return False
    filt = graph.tensors[op.inputs[1]]
    data_in = graph.tensors[op.inputs[0]]
    return (len(filt.shape) == 4 and len(data_in.shape) == 4 and filt.shape[3] == data_in.shape[3]
            and _owned_constants(graph, index))


def _is_channelwise_depthwise(graph: Subgraph, index: int) -> bool:
    op = graph.operators[index]
    if op.opcode != "DEPTHWISE_CONV_2D" or len(op.inputs) < 2:
        return False
    filt, data_in, data_out = (graph.tensors[i] for i in (op.inputs[1], op.inputs[0], op.outputs[0]))
    return (len(filt.shape) == 4 and len(data_in.shape) == 4 and data_in.shape[3] == data_out.shape[3] == filt.shape[3]
            and _owned_constants(graph, index))


def _owned_constants(graph: Subgraph, index: int) -> bool:
    """Whether the op's filter and bias are constants read by no other op (cutting them must not change
    another op)."""
    op = graph.operators[index]
    mine = [t for t in op.inputs[1:3] if t >= 0]
    return all(graph.tensors[t].data is not None and _reader_count(graph, t) == 1 for t in mine)


def _cuttable(graph: Subgraph, tensor: int) -> bool:
    """An activation with exactly one reader that is not a model input or output (nobody else sees it)."""
    return _reader_count(graph, tensor) == 1 and tensor not in graph.outputs and tensor not in graph.inputs


def _reader_count(graph: Subgraph, tensor: int) -> int:
    return sum(tensor in op.inputs for op in graph.operators)


def _producer(graph: Subgraph, tensor: int) -> int | None:
    return next((k for k, op in enumerate(graph.operators) if tensor in op.outputs), None)


def _cut(graph: Subgraph, chain: _Chain, keep: np.ndarray) -> None:
    ops, tensors = graph.operators, graph.tensors
    producer = ops[chain.producer]
    _take(tensors, producer.inputs[1], keep, axis=0)
    _take_bias(tensors, producer.inputs, keep)
    for index in chain.depthwise:
        _take(tensors, ops[index].inputs[1], keep, axis=3)
        _take_bias(tensors, ops[index].inputs, keep)
    _take(tensors, ops[chain.reader].inputs[1], keep, axis=3)
    for t in chain.tensors:
        tensors[t] = _with_channels(tensors[t], keep.size)


def _take_bias(tensors: list[Tensor], inputs: list[int], keep: np.ndarray) -> None:
    if len(inputs) > 2 and inputs[2] >= 0:
        _take(tensors, inputs[2], keep, axis=0)


def _take(tensors: list[Tensor], index: int, keep: np.ndarray, axis: int) -> None:
    """Keep only `keep` along `axis` of a constant, and of its quantization if that is per channel along `axis`
    (a reader's filter loses input channels: its per-output-channel scales stay)."""
    t = tensors[index]
    data = np.take(t.array(), keep, axis=axis)
    quant = t.quant
    if quant is not None and quant.per_channel and quant.quantized_dimension == axis:
        zero = quant.zero_point[keep] if quant.zero_point.size == quant.scale.size else quant.zero_point
        quant = Quantization(quant.scale[keep], zero, axis)
    tensors[index] = replace(t, shape=tuple(data.shape), data=np.ascontiguousarray(data).tobytes(),
                             quant=quant, shape_signature=None)


def _with_channels(t: Tensor, channels: int) -> Tensor:
    shape = (*t.shape[:-1], channels)
    signature = None if t.shape_signature is None else (*t.shape_signature[:-1], channels)
    return replace(t, shape=shape, shape_signature=signature)

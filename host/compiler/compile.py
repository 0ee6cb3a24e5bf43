"""The model compiler: validate a .tflite graph, lower its ops, plan, emit C."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from host.compiler.emit import EmitTensor, emit_model_c
from host.compiler.ops import REGISTRY, LoweredOp, OpContext, supported_ops
from host.compiler.planner import plan_arena, plan_without_reuse
from host.compiler.prune import prune_dead_channels
from host.compiler.scratch import OpScratch
from host.compiler.types import CompiledModel, TensorInfo
from host.core.errors import UserError
from host.tflite.reader import Subgraph, Tensor, parse_model, read_model_file


class UnsupportedModelError(UserError):
    """The model uses something the engine does not run; lists every problem."""


def compile_file(path: Path | str, name: str | None = None, reuse_arena: bool = True) -> CompiledModel:
    path = Path(path)
    if path.exists() and not path.is_dir() and path.suffix != ".tflite":
        raise UserError(
            f"not a .tflite file: {path}",
            hint="pass a TFLite model (quantize a Keras model to int8 first)",
        )
    _, data = read_model_file(path)
    return compile_bytes(data, name=name or path.stem, reuse_arena=reuse_arena)


def compile_bytes(data: bytes, name: str = "model", reuse_arena: bool = True) -> CompiledModel:
    """Compile flatbuffer bytes.  reuse_arena=False gives every tensor its own
    bytes and keeps every channel (for debugging: intermediate tensors stay readable after a run);
    otherwise channels no output depends on are cut first (host/compiler/prune.py)."""
    model = parse_model(data)
    if len(model.subgraphs) != 1:
        raise UnsupportedModelError(
            f"model has {len(model.subgraphs)} subgraphs; the engine runs single-subgraph models",
            hint="control flow (WHILE/IF) and multi-signature models are not supported",
        )
    graph = model.subgraphs[0]
    _check_graph(graph)
    graph, cut = prune_dead_channels(graph) if reuse_arena else (graph, 0)
    lowered = [REGISTRY[op.opcode].lower(OpContext(op, graph)) for op in graph.operators]
    model = _build(graph, lowered, data, _c_identifier(name), reuse_arena)
    model.cut_channels = cut
    return model


def _c_identifier(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] or "model"


def _check_graph(graph: Subgraph) -> None:
    problems = _io_problems(graph)
    if _is_float_model(graph):
        raise UnsupportedModelError(
            "this is a float model (its ops compute in float32); the engine runs int8 models",
            hint="quantize it first: TFLite converter with full-integer int8 quantization "
            "(representative dataset, inference_input_type=int8)",
        )
    for op in graph.operators:
        lowering = REGISTRY.get(op.opcode)
        if lowering is None:
            problems.append(f"op {op.index} {op.opcode}: not supported")
            continue
        problems += [f"op {op.index} {op.opcode}: {p}" for p in lowering.check(OpContext(op, graph))]
    if problems:
        listing = "\n  ".join(problems)
        raise UnsupportedModelError(
            f"model cannot be compiled ({len(problems)} problem(s)):\n  {listing}",
            hint=f"supported ops (int8 and int16x8): {', '.join(supported_ops())}",
        )


def _is_float_model(graph: Subgraph) -> bool:
    """Float compute ops (QUANTIZE/DEQUANTIZE at the edges are fine)."""
    edge_ops = {"QUANTIZE", "DEQUANTIZE"}
    dtypes = {
        graph.tensors[op.inputs[0]].dtype
        for op in graph.operators
        if op.opcode not in edge_ops and op.inputs and op.inputs[0] >= 0
    }
    return "float32" in dtypes


def _io_problems(graph: Subgraph) -> list[str]:
    problems = []
    for kind, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for i in indices:
            t = graph.tensors[i]
            sig = t.shape_signature
            if sig is not None and any(d < 0 for d in sig[1:]):
                problems.append(f"model {kind} '{t.name}' has dynamic shape {sig}")
            if t.data is not None:
                problems.append(f"model {kind} '{t.name}' is a constant")
    for t in graph.tensors:
        if t.data is None and any(d < 0 for d in t.shape):
            problems.append(f"tensor '{t.name}' has unknown shape {t.shape}")
    return problems


def _tensor_bytes(t: Tensor) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize


def _build(
    graph: Subgraph, lowered: list[LoweredOp], data: bytes, name: str, reuse_arena: bool
) -> CompiledModel:
    op_io = [(list(op.inputs), list(op.outputs)) for op in graph.operators]
    used_data: set[int] = set()
    for op, low in zip(graph.operators, lowered, strict=True):
        positions = low.used_inputs if low.used_inputs is not None else range(len(op.inputs))
        used_data.update(op.inputs[p] for p in positions if p < len(op.inputs) and op.inputs[p] >= 0)
    referenced = {t for ins, outs in op_io for t in ins + outs if t >= 0}
    referenced |= set(graph.inputs) | set(graph.outputs)
    activations = {t: _tensor_bytes(graph.tensors[t]) for t in referenced if graph.tensors[t].data is None}
    aliases = [
        (op.inputs[0], op.outputs[0])
        for op, low in zip(graph.operators, lowered, strict=True)
        if low.alias_output_to_input and op.inputs[0] in activations
    ]
    if reuse_arena:
        offsets, arena_bytes = plan_arena(activations, op_io, graph.inputs, graph.outputs, aliases)
    else:
        offsets, arena_bytes = plan_without_reuse(activations)
    tensors = [
        EmitTensor(t, offsets.get(t.index, -1), t.index in used_data and t.data is not None)
        for t in graph.tensors
    ]
    sha = hashlib.sha256(data).digest()
    ops = [
        (low, op.inputs, op.outputs, op.opcode)
        for op, low in zip(graph.operators, lowered, strict=True)
    ]
    source = emit_model_c(name, sha, tensors, ops, graph.inputs, graph.outputs, arena_bytes)
    return CompiledModel(
        name=name,
        sha256=sha,
        inputs=[_tensor_info(graph.tensors[i]) for i in graph.inputs],
        outputs=[_tensor_info(graph.tensors[i]) for i in graph.outputs],
        ops=[op.opcode for op in graph.operators],
        arena_bytes=arena_bytes,
        weights_bytes=sum(len(et.tensor.data or b"") for et in tensors if et.with_data),
        c_source=source,
        op_scratch=[OpScratch(low.kind.removeprefix("TM_OP_"), dict(low.scratch)) for low in lowered],
        guarded_bytes=_guarded_bytes(lowered),
    )


def _guarded_bytes(lowered: list[LoweredOp]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for low in lowered:
        for macro, _, data in low.guarded_arrays.values():
            sizes[macro] = sizes.get(macro, 0) + len(data)
    return sizes


def _tensor_info(t: Tensor) -> TensorInfo:
    scale = float(t.quant.scale[0]) if t.quant is not None else 0.0
    zero = int(t.quant.zero_point[0]) if t.quant is not None else 0
    return TensorInfo(name=t.name, dtype=t.dtype, shape=tuple(t.shape), scale=scale, zero_point=zero)

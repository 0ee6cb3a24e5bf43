"""A small, bounds-checked reader for TFLite flatbuffers.

We read only what the compiler needs (tensors, buffers, operators and the
builtin options of supported ops).  Every access is bounds-checked so that a
truncated or corrupt file raises ModelFormatError instead of reading garbage.
Field slots follow tensorflow/lite/schema/schema.fbs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from host.core.errors import UserError
from host.tflite.opcodes import BUILTIN_OPERATOR_NAMES

FILE_IDENTIFIER = b"TFL3"

# TensorType enum -> numpy dtype name (None: a type the engine never handles).
TENSOR_TYPES: dict[int, str] = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
    11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
    16: "uint16", 17: "int4", 18: "bfloat16", 19: "int2", 20: "uint4",
}

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDINGS = {0: "SAME", 1: "VALID"}


class ModelFormatError(UserError):
    """The file is not a readable TFLite flatbuffer."""


class _Buf:
    """Bounds-checked little-endian access to the file bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _check(self, pos: int, size: int) -> None:
        if pos < 0 or pos + size > len(self.data):
            raise ModelFormatError(
                f"corrupt or truncated TFLite file: read of {size} bytes at offset {pos} "
                f"beyond its {len(self.data)} bytes",
                hint="re-export the model with the TFLite converter",
            )

    def unpack(self, fmt: str, pos: int) -> int | float:
        size = struct.calcsize(fmt)
        self._check(pos, size)
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def slice(self, pos: int, size: int) -> bytes:
        self._check(pos, size)
        return self.data[pos:pos + size]


class _Table:
    """One flatbuffer table: fields looked up through its vtable."""

    def __init__(self, buf: _Buf, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - int(buf.unpack("i", pos))
        self.vtable_size = int(buf.unpack("H", self.vtable))

    def _field_pos(self, slot: int) -> int | None:
        entry = 4 + 2 * slot
        if entry >= self.vtable_size:
            return None
        offset = int(self.buf.unpack("H", self.vtable + entry))
        return self.pos + offset if offset else None

    def scalar(self, slot: int, fmt: str, default: int | float = 0) -> int | float:
        pos = self._field_pos(slot)
        return default if pos is None else self.buf.unpack(fmt, pos)

    def _indirect(self, slot: int) -> int | None:
        pos = self._field_pos(slot)
        return None if pos is None else pos + int(self.buf.unpack("I", pos))

    def table(self, slot: int) -> _Table | None:
        pos = self._indirect(slot)
        return None if pos is None else _Table(self.buf, pos)

    def string(self, slot: int) -> str | None:
        pos = self._indirect(slot)
        if pos is None:
            return None
        length = int(self.buf.unpack("I", pos))
        return self.buf.slice(pos + 4, length).decode("utf-8", errors="replace")

    def vector_bytes(self, slot: int, elem_size: int) -> tuple[bytes, int] | None:
        pos = self._indirect(slot)
        if pos is None:
            return None
        count = int(self.buf.unpack("I", pos))
        return self.buf.slice(pos + 4, count * elem_size), count

    def vector(self, slot: int, dtype: str) -> np.ndarray | None:
        dt = np.dtype(dtype).newbyteorder("<")
        raw = self.vector_bytes(slot, dt.itemsize)
        return None if raw is None else np.frombuffer(raw[0], dtype=dt, count=raw[1])

    def tables(self, slot: int) -> list[_Table]:
        pos = self._indirect(slot)
        if pos is None:
            return []
        count = int(self.buf.unpack("I", pos))
        out = []
        for i in range(count):
            elem = pos + 4 + 4 * i
            out.append(_Table(self.buf, elem + int(self.buf.unpack("I", elem))))
        return out


@dataclass
class Quantization:
    scale: np.ndarray          # float32, one per channel (or one)
    zero_point: np.ndarray     # int64
    quantized_dimension: int

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Tensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    buffer: int
    data: bytes | None            # constant contents, None for activations
    quant: Quantization | None
    is_variable: bool

    def array(self) -> np.ndarray:
        if self.data is None:
            raise ValueError(f"tensor {self.name} has no constant data")
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(
            self.shape
        )


@dataclass
class Operator:
    index: int
    opcode: str                   # e.g. "CONV_2D", or "CUSTOM:<name>"
    version: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: _Table | None = field(repr=False)
    intermediates: list[int] = field(default_factory=list)


@dataclass
class Subgraph:
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    operators: list[Operator]


@dataclass
class Model:
    version: int
    subgraphs: list[Subgraph]
    description: str


def _read_quant(table: _Table | None) -> Quantization | None:
    if table is None:
        return None
    scale = table.vector(2, "float32")
    zero = table.vector(3, "int64")
    if scale is None or scale.size == 0:
        return None
    if zero is None or zero.size == 0:
        zero = np.zeros(scale.size, dtype=np.int64)
    return Quantization(
        scale=np.array(scale, dtype=np.float32),
        zero_point=np.array(zero, dtype=np.int64),
        quantized_dimension=int(table.scalar(6, "i", 0)),
    )


def _buffer_data(buffers: list[_Table], index: int, file: _Buf) -> bytes | None:
    if index <= 0 or index >= len(buffers):
        return None
    raw = buffers[index].vector_bytes(0, 1)
    if raw is not None and raw[1] > 0:
        return raw[0]
    offset = int(buffers[index].scalar(1, "Q", 0))
    size = int(buffers[index].scalar(2, "Q", 0))
    if offset > 1 and size > 0:  # large-model layout: data after the flatbuffer
        return file.slice(offset, size)
    return None


def _read_tensor(index: int, t: _Table, buffers: list[_Table], file: _Buf) -> Tensor:
    type_code = int(t.scalar(1, "b", 0))
    shape = t.vector(0, "int32")
    signature = t.vector(7, "int32")
    buffer = int(t.scalar(2, "I", 0))
    return Tensor(
        index=index,
        name=t.string(3) or f"tensor_{index}",
        dtype=TENSOR_TYPES.get(type_code, f"type{type_code}"),
        shape=tuple(int(d) for d in shape) if shape is not None else (),
        shape_signature=tuple(int(d) for d in signature) if signature is not None else None,
        buffer=buffer,
        data=_buffer_data(buffers, buffer, file),
        quant=_read_quant(t.table(4)),
        is_variable=bool(t.scalar(5, "B", 0)),
    )


def _opcode_names(codes: list[_Table]) -> list[tuple[str, int]]:
    names = []
    for code in codes:
        builtin = max(int(code.scalar(0, "b", 0)), int(code.scalar(3, "i", 0)))
        name = BUILTIN_OPERATOR_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{code.string(1) or '?'}"
        names.append((name, int(code.scalar(2, "i", 1))))
    return names


def _read_operator(index: int, op: _Table, opcodes: list[tuple[str, int]]) -> Operator:
    code_index = int(op.scalar(0, "I", 0))
    if code_index >= len(opcodes):
        raise ModelFormatError(f"operator {index} refers to missing opcode {code_index}")
    name, version = opcodes[code_index]

    def ints(slot: int) -> list[int]:
        vec = op.vector(slot, "int32")
        return [] if vec is None else [int(v) for v in vec]

    return Operator(
        index=index,
        opcode=name,
        version=version,
        inputs=ints(1),
        outputs=ints(2),
        options_type=int(op.scalar(3, "B", 0)),
        options=op.table(4),
        intermediates=ints(8),
    )


def parse_model(data: bytes) -> Model:
    """Parse a .tflite flatbuffer; raises ModelFormatError if it is not one."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelFormatError(
            "not a TFLite flatbuffer (file identifier 'TFL3' missing at bytes 4..8)",
            hint="pass a .tflite file produced by the TFLite converter",
        )
    file = _Buf(data)
    root = _Table(file, int(file.unpack("I", 0)))
    buffers = root.tables(4)
    opcodes = _opcode_names(root.tables(1))
    subgraphs = []
    for sg in root.tables(2):
        tensors = [_read_tensor(i, t, buffers, file) for i, t in enumerate(sg.tables(0))]
        inputs = sg.vector(1, "int32")
        outputs = sg.vector(2, "int32")
        subgraphs.append(
            Subgraph(
                tensors=tensors,
                inputs=[] if inputs is None else [int(i) for i in inputs],
                outputs=[] if outputs is None else [int(i) for i in outputs],
                operators=[_read_operator(i, op, opcodes) for i, op in enumerate(sg.tables(3))],
            )
        )
    return Model(
        version=int(root.scalar(0, "I", 0)),
        subgraphs=subgraphs,
        description=root.string(3) or "",
    )


def read_model_file(path: Path) -> tuple[Model, bytes]:
    """Read and parse a model file, with clear errors for a bad path."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file not found: {path}", hint="check the path (--model / MODEL=)")
    if path.is_dir():
        raise UserError(f"model path is a directory, not a .tflite file: {path}")
    data = path.read_bytes()
    try:
        return parse_model(data), data
    except ModelFormatError as err:
        raise ModelFormatError(f"{path}: {err.message}", hint=err.hint) from None

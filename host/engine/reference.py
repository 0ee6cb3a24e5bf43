"""The golden reference: TFLite Micro's own interpreter (pip `tflite-micro`).

The chip must reproduce its output bytes exactly.  (tf.lite.Interpreter is
*not* a valid reference: its optimized kernels round differently.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from host.core.quiet import import_tensorflow_quietly
from host.tflite.reader import Subgraph, parse_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _item_bytes(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 8


def _arena_bytes(data: bytes, graph: Subgraph) -> int:
    """An arena that holds every activation at once: the pip runtime's default, ten times the file's
    size, fails on a model of few weights and large activations."""
    activations = sum(int(np.prod(t.shape, dtype=np.int64)) * _item_bytes(t.dtype)
                      for t in graph.tensors if t.data is None)
    return max(len(data) * 10, 2 * activations + 64 * 1024)


class ReferenceInterpreter:
    """Runs a .tflite model one sample at a time through TFLite Micro."""

    def __init__(self, model: Path | bytes, preserve_all_tensors: bool = False) -> None:
        import_tensorflow_quietly()
        from tflite_micro.python.tflite_micro import runtime

        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        config = (
            runtime.InterpreterConfig.kPreserveAllTensors
            if preserve_all_tensors
            else runtime.InterpreterConfig.kAllocationRecording
        )
        graph = parse_model(data).subgraphs[0]
        self._interp = runtime.Interpreter.from_bytes(data, arena_size=_arena_bytes(data, graph),
                                                      intrepreter_config=config)
        self.n_inputs = len(graph.inputs)
        self.n_outputs = len(graph.outputs)

    def input_details(self, index: int = 0) -> dict:
        return self._interp.get_input_details(index)

    def output_details(self, index: int = 0) -> dict:
        return self._interp.get_output_details(index)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """One inference; each input has the model's exact shape and dtype."""
        for i, x in enumerate(inputs):
            self._interp.set_input(x, i)
        self._interp.invoke()
        return [np.array(self._interp.get_output(i)) for i in range(self.n_outputs)]

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """Single-input, single-output model over a batch: x[k] -> out[k]."""
        shape = tuple(self.input_details(0)["shape"])
        outs = [self.run(np.asarray(sample).reshape(shape))[0] for sample in x]
        return np.stack(outs)

    def tensor(self, index: int) -> np.ndarray:
        """An intermediate tensor (needs preserve_all_tensors=True)."""
        info = self._interp.GetTensor(index, 0)
        return np.asarray(info["tensor_data"]).reshape(tuple(info["shape"]))

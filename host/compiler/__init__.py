"""TFLite flatbuffer -> C model for the firmware engine.

    from host.compiler import compile_tflite
    model = compile_tflite(Path("models/digits_cnn_int8.tflite"))
    model.write(Path("build/model"))          # -> build/model/model.c

Imports: host.core, host.tflite.
"""

from host.compiler.compile import compile_file
from host.compiler.types import CompiledModel, TensorInfo

__all__ = ["CompiledModel", "TensorInfo", "compile_tflite"]


def compile_tflite(path, name: str | None = None) -> CompiledModel:  # noqa: ANN001
    return compile_file(path, name=name)

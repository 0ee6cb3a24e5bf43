"""A defended model trained elsewhere: the study's own adversarially trained, distilled, ensemble-trained
and SAT models (../shared/models/david-goliath-defended/), or any other float model with the undefended
one's inputs and classes, evaluated beside the undefended model like a model a train-based defense
produced: quantized (or given as int8 / int16x8 TFLite files), attacked, run on the chip.

It trains nothing: the study (host.study.runner) loads the files; the config resolves their paths
(relative to the config file) and checks them before any long work.
"""

from __future__ import annotations

from collections.abc import Callable

from host.defenses.base import Defense, Param, register


def _model_file(suffixes: tuple[str, ...]) -> Callable[[str], str | None]:
    """A Param check: empty, or a file name with one of these suffixes."""
    def check(value: str) -> str | None:
        if value and not value.endswith(suffixes):
            return f"expected a {' or '.join(suffixes)} file"
        return None
    return check


@register
class TrainedModel(Defense):
    name = "trained-model"
    kind = "model"
    description = ("a defended model trained elsewhere (float, and its int8 / int16x8 TFLite), evaluated beside "
                   "the undefended one")
    implementation = "the given files (nothing is trained)"
    params_spec = (
        Param("label", str, "", "how results name it (default: the float file's name)"),
        Param("float", str, "", "the defended float model (.h5 or .keras; required), relative to the config",
              _model_file((".h5", ".keras"))),
        Param("int8", str, "", "its int8 model (.tflite); without it, quantized as the undefended one is",
              _model_file((".tflite",))),
        Param("int16x8", str, "", "its int16x8 model (.tflite); without it, quantized", _model_file((".tflite",))),
    )

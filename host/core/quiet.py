"""Import TensorFlow without its C++ start-up banner on stderr.

TF 2.21 logs through absl before TF_CPP_MIN_LOG_LEVEL is read ("oneDNN custom
operations are on", twice); users of our CLIs should see our output only.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly() -> None:
    """Import tensorflow (and tflite_micro, which loads it) with fd 2 muted; errors still surface."""
    if "tensorflow" in sys.modules:
        _quiet_python_logs()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    _quiet_python_logs()


def _quiet_python_logs() -> None:
    """TF's Python logger and Keras' advisory warnings (ART's gradient tapes and Keras-2 .h5
    input names trigger them on every batch) are noise on a user's terminal."""
    import logging
    import warnings

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"The structure of `inputs` doesn't match", category=UserWarning)

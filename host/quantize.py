"""Every precision of one float model: float (Keras, host), int16x8 and int8 (.tflite).

    python -m host.quantize --float-model F.h5 --representative R.npz --data D.npz

Post-training full-integer quantization with the TFLite converter, on a batch-1
trace of the model so every shape is static (a Flatten/Reshape then converts to
one RESHAPE instead of SHAPE/STRIDED_SLICE/PACK, which the engine does not run).
Conversions are deterministic and cached under build/quantized/, keyed by
(float model sha256, representative set sha256, precision, TensorFlow version).
See docs/quantize.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from host.core.data import load_npz_dataset
from host.core.errors import UserError, run_cli
from host.quantization.quantize import (
    CACHE_DIR,
    check_labelled_data,
    experiment_models,
    float_accuracy,
    load_float_keras,
    model_input_shape,
    model_num_classes,
    tflite_accuracy,
    unsupported_ops,
)

# ---------------------------------------------------------------- CLI


def _npz_slice(path: Path, start: int, num: int | None) -> tuple[np.ndarray, np.ndarray]:
    ds = load_npz_dataset(path)
    stop = len(ds) if num is None else start + num
    if start < 0 or stop > len(ds) or start >= stop:
        raise UserError(f"{path}: samples {start}..{stop - 1} are outside its {len(ds)} samples")
    return ds.x[start:stop], ds.y[start:stop]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--float-model", type=Path, required=True, metavar="F", help=".keras, .h5 or SavedModel dir")
    p.add_argument("--representative", type=Path, metavar="R.npz", help="calibration inputs (x, y)")
    p.add_argument("--rep-start", type=int, default=0, help="first representative sample (default 0)")
    p.add_argument("--rep-num", type=int, default=500, help="representative samples (default 500)")
    p.add_argument("--int8", type=Path, metavar="M.tflite", help="use this int8 model instead of converting")
    p.add_argument("--int16", type=Path, metavar="M.tflite", help="use this 16x8 model instead of converting")
    p.add_argument("--data", type=Path, metavar="D.npz", help="report clean accuracy on these samples")
    p.add_argument("--num", type=int, default=None, help="first N samples of --data (default all)")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="default: %(default)s")
    return p


def _check_counts(args: argparse.Namespace) -> None:
    """Sample counts and starts, before any file is read."""
    for flag, value in (("--rep-num", args.rep_num), ("--num", args.num)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}", hint=f"omit {flag} for the default")
    if args.rep_start < 0:
        raise UserError(f"--rep-start must be 0 or more, got {args.rep_start}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_counts(args)
    float_model = load_float_keras(args.float_model)
    rep = _npz_slice(args.representative, args.rep_start, args.rep_num)[0] if args.representative else None
    # --data is checked against the model before the conversions, which can take minutes.
    data = _npz_slice(args.data, 0, args.num) if args.data else None
    if data:
        check_labelled_data(*data, model_input_shape(float_model), model_num_classes(float_model),
                            what=f"--data {args.data}")
    given = {k: v for k, v in (("int8", args.int8), ("int16x8", args.int16)) if v is not None}
    models = experiment_models(args.float_model, rep, given, cache_dir=args.cache_dir, float_model=float_model)
    rows = [("float", "host Keras", "", float_accuracy(models.float_model, *data) if data else None)]
    for q in models.quantized.values():
        ops = unsupported_ops(q.data)
        note = f"{q.origin} {q.sha256[:12]}" + (f", engine lacks {','.join(ops)}" if ops else "")
        rows.append((q.precision, note, str(q.path or ""), tflite_accuracy(q.data, *data) if data else None))
    _print_rows(rows, len(data[1]) if data else 0)
    return 0


def _print_rows(rows: list[tuple[str, str, str, float | None]], n: int) -> None:
    for precision, note, path, acc in rows:
        shown = f"{100 * acc:.1f} % of {n}" if acc is not None else "-"
        print(f"{precision:8s} {shown:>14s}  {note}  {path}".rstrip())


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

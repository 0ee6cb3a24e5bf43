"""Train the PixelCNN that the pixel-defend defense purifies inputs with (host/defenses/pixelcnn.py).

    python -m host.defenses.train_pixelcnn --data ../shared/data/cifar10/test_10k_jpeg.npz --start 1017 \\
        --epochs 5 --out results/pixelcnn/cifar10.keras

Prints bits per sub-pixel after each epoch, on training images and on the pool's last --held-out
images, and writes the .keras checkpoint atomically after every epoch that lowers the held-out bits
(the training bits without a held-out set): an interrupted run keeps its best finished epoch, a later
worse epoch never replaces it; nothing else is left behind on an error or Ctrl-C. --init continues training a
saved PixelCNN (its weights; Adam starts afresh).
A command of its own (not pixelcnn.py's __main__): host.defenses imports pixelcnn for the registry.

Imports: host.core, host.defenses.pixelcnn.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from host.core.data import load_npz_dataset
from host.core.errors import UserError, run_cli
from host.core.files import write_whole
from host.defenses.pixelcnn import load_pixelcnn, train_pixelcnn


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.defenses.train_pixelcnn",
                                description="Train the PixelCNN that the pixel-defend defense purifies inputs with.")
    p.add_argument("--data", required=True, type=Path, help="an .npz with x (uint8 NHWC images, or floats in [0, 1])")
    p.add_argument("--start", type=int, default=0, help="first image of the pool (default 0)")
    p.add_argument("--num", type=int, default=None, help="images in the pool (default: all from --start)")
    p.add_argument("--held-out", type=int, default=500,
                   help="the pool's last N images are not trained on; their bits per sub-pixel is reported (500)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=64, help="hidden channels per colour (the study: 64)")
    p.add_argument("--residual-blocks", type=int, default=4, help="(the study: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None,
                   help="a PixelCNN checkpoint to train further (its architecture replaces --hidden and "
                        "--residual-blocks)")
    p.add_argument("--out", required=True, type=Path, help="the checkpoint to write (.keras)")
    return p


def _check_options(args: argparse.Namespace) -> None:
    """The numbers and the output path, before any image is read or any epoch is trained."""
    for name in ("epochs", "batch_size", "hidden", "residual_blocks", *(("num",) if args.num is not None else ())):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("start", "held_out"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    # NaN fails every comparison, so test for the good case.
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise UserError(f"--learning-rate must be a positive number, got {args.learning_rate:g}",
                        hint="the default is 1e-3")
    _check_out(args.out)


def _check_out(out: Path) -> None:
    """The checkpoint is written after the first epoch: a path that cannot hold it fails now instead."""
    if out.suffix != ".keras":
        raise UserError(f"--out {out}: the checkpoint must be a .keras file")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory", hint="give the checkpoint's file name, e.g. DIR/pixelcnn.keras")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"--out {out}: {parent} is a file, not a directory")


def _pool(args: argparse.Namespace) -> np.ndarray:
    """The --start/--num images of --data, more than --held-out of them."""
    images = load_npz_dataset(args.data).x
    if args.start >= len(images):
        raise UserError(f"--start {args.start}: {args.data} has only {len(images)} images (0..{len(images) - 1})")
    x = images[args.start:None if args.num is None else args.start + args.num]   # finite: load_npz_dataset
    if len(x) <= args.held_out:
        raise UserError(f"the pool has {len(x)} images from index {args.start}: too few to hold out {args.held_out}",
                        hint="lower --held-out or give more images (--start, --num)")
    return x


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _check_options(args)
    x = _pool(args)
    train, held = (x[:len(x) - args.held_out], x[len(x) - args.held_out:]) if args.held_out else (x, x[:0])
    init = load_pixelcnn(args.init, tuple(x.shape[1:])) if args.init is not None else None
    start = f"from {args.init}" if init is not None else f"hidden {args.hidden}, {args.residual_blocks} residual blocks"
    print(f"pixelcnn  {len(train)} training images {tuple(x.shape[1:])}, {len(held)} held out; "
          f"{start}, {args.epochs} epochs")

    best: dict[str, float] = {}

    def show(row: dict[str, float], model: Any) -> None:
        held_text = f", held-out {row['held_out_bits']:.3f}" if "held_out_bits" in row else ""
        score = row.get("held_out_bits", row["train_bits"])
        if not best or score < best["bits"]:
            _save(model, args.out)
            best.update(bits=score, epoch=row["epoch"])
            note = "(saved)"
        else:
            note = f"(kept epoch {best['epoch']:.0f}: {best['bits']:.3f})"
        print(f"epoch {row['epoch']:3d}  {row['seconds']:8.1f} s  bits/sub-pixel: train {row['train_bits']:.3f}"
              f"{held_text}  {note}", flush=True)

    model, _ = train_pixelcnn(train, epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.learning_rate, hidden=args.hidden,
                              residual_blocks=args.residual_blocks, seed=args.seed, held_out=held, progress=show,
                              init=init)
    print(f"saved    {args.out}: epoch {best['epoch']:.0f}, {best['bits']:.3f} bits per sub-pixel "
          f"({model.count_params():,} parameters)")
    return 0


def _save(model: Any, out: Path) -> None:
    """Write the checkpoint atomically: a reader sees the previous epoch's file or this one's, never half."""
    write_whole(out, model.save, suffix=".keras")   # Keras picks the format by the name's end


if __name__ == "__main__":
    sys.exit(run_cli(main))

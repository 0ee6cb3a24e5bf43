"""PixelDefend and its PixelCNN: the masks are causal, our purification is ART's PixelDefend on a real
PixelCNN, checkpoints are checked before use, and the training command writes a usable one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.core.errors import UserError
from host.defenses import get_defense

SHAPE = (6, 6, 3)


@pytest.fixture(scope="module")
def pixelcnn():  # noqa: ANN201
    import keras

    from host.defenses.pixelcnn import build_pixelcnn
    keras.utils.set_random_seed(1)
    return build_pixelcnn(SHAPE, hidden=4, residual_blocks=1)


@pytest.fixture(scope="module")
def checkpoint(pixelcnn, tmp_path_factory) -> Path:  # noqa: ANN001
    path = tmp_path_factory.mktemp("pixelcnn") / "tiny.keras"
    pixelcnn.save(path)
    return path


def test_each_subpixel_sees_only_the_subpixels_before_it(pixelcnn) -> None:  # noqa: ANN001
    """Raster order, then R, G, B within a pixel: the gradient of every output's logits reaches only
    earlier sub-pixels of the input (mask A keeps a sub-pixel from seeing itself)."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random((1, *SHAPE)), tf.float32)
    h, w, c = SHAPE
    order = np.arange(h * w * c).reshape(SHAPE)
    for i, j, k in [(0, 0, 0), (0, 0, 2), (2, 3, 1), (5, 5, 2)]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.reduce_sum(pixelcnn(x)[0, i, j, k])
        reach = np.abs(tape.gradient(out, x).numpy()[0]) > 0
        assert not reach[order >= order[i, j, k]].any()
        if order[i, j, k] > 0:
            assert reach[order < order[i, j, k]].any()


@pytest.mark.parametrize("eps", [0, 5, 38])
def test_purification_is_arts_pixeldefend(pixelcnn, eps: int) -> None:  # noqa: ANN001
    """ART 1.20's PixelDefend, given the same PixelCNN as an ART classifier, returns the same images.

    Levels stay at least eps from 0 and 255: there ART's `uint8 level ± eps` wraps around under
    NumPy 2's scalar rules (NEP 50), its search window comes out empty and the sub-pixel becomes 255;
    under NumPy 1 (the study's) the sum was an int64 and the window was clipped, which is what
    purify() does everywhere."""
    import keras
    from art.defences.preprocessor import PixelDefend
    from art.estimators.classification import TensorFlowV2Classifier

    from host.defenses.pixel_defend import purify
    from host.defenses.pixelcnn import softmax_model

    probabilities = softmax_model(pixelcnn)
    wrapped = keras.Sequential([keras.Input(SHAPE), keras.layers.Lambda(lambda t: probabilities(t),
                                                                      output_shape=(*SHAPE, 256))])
    art_model = TensorFlowV2Classifier(wrapped, nb_classes=256, input_shape=SHAPE, clip_values=(0.0, 1.0))
    rng = np.random.default_rng(eps)
    x = (eps + 1 + rng.random((3, *SHAPE)) * (253 - 2 * eps)).astype(np.float32) / np.float32(255)
    x[0] = np.rint(x[0] * 255) / 255          # on the levels, where ART's truncation can land one below
    theirs, _ = PixelDefend(clip_values=(0.0, 1.0), eps=eps, pixel_cnn=art_model, verbose=False)(x.copy())
    ours = purify(x, probabilities(x).numpy(), eps)
    np.testing.assert_array_equal(ours, theirs)
    if eps == 0:
        np.testing.assert_array_equal(ours, (x * 255).astype(np.uint8) / np.float32(255))


def test_the_defense_purifies_with_its_checkpoint(pixelcnn, checkpoint: Path) -> None:  # noqa: ANN001
    from host.defenses.pixel_defend import purify
    from host.defenses.pixelcnn import softmax_model

    x = np.random.default_rng(2).random((5, *SHAPE)).astype(np.float32)
    defense = get_defense("pixel-defend", pixelcnn=str(checkpoint), batch_size=2)
    out = defense.apply(x)
    np.testing.assert_array_equal(out, purify(x, softmax_model(pixelcnn)(x).numpy(), 38))
    assert np.abs(out - x).max() <= 39 / 255
    wide = defense.apply(x * 2 - 1, input_range=(-1.0, 1.0))     # another range: mapped onto [0, 1] and back
    np.testing.assert_allclose(wide, out * 2 - 1, atol=1e-6)
    defense.check_inputs(SHAPE, (0.0, 1.0))


def test_bad_checkpoints_are_user_errors(checkpoint: Path, tmp_path: Path) -> None:
    from host.core.paths import DEFAULT_FLOAT_MODEL

    with pytest.raises(UserError, match=r"models \(6, 6, 3\) images, but the model's inputs are \(32, 32, 3\)"):
        get_defense("pixel-defend", pixelcnn=str(checkpoint)).check_inputs((32, 32, 3), (0.0, 1.0))
    with pytest.raises(UserError, match="checkpoint not found"):
        get_defense("pixel-defend", pixelcnn=str(tmp_path / "none.keras")).apply(np.zeros((1, *SHAPE), np.float32))
    with pytest.raises(UserError, match="needs its PixelCNN checkpoint"):
        get_defense("pixel-defend").apply(np.zeros((1, *SHAPE), np.float32))
    with pytest.raises(UserError, match="is not a PixelCNN"):
        get_defense("pixel-defend", pixelcnn=str(DEFAULT_FLOAT_MODEL)).check_inputs((8, 8, 1), (0.0, 1.0))
    with pytest.raises(UserError, match="not a .keras file"):
        get_defense("pixel-defend", pixelcnn="model.h5")
    with pytest.raises(UserError, match="eps=256 is invalid"):
        get_defense("pixel-defend", eps=256)


def digits_study_with_pixel_defend() -> str:
    """A small digits study whose last table is a pixel-defend [[defense]] without its checkpoint."""
    from host.core.paths import ROOT

    return f"""
[model]
float = "{ROOT / 'models/digits_cnn.keras'}"
precisions = ["float32"]
[dataset]
path = "builtin:digits-test"
num = 8
[[attack]]
name = "fgsm"
eps = [0.1]
[[defense]]
name = "pixel-defend"
"""


def test_a_study_resolves_the_checkpoint_and_requires_it(checkpoint: Path, tmp_path: Path) -> None:
    from host.study.config import load_experiment

    base = digits_study_with_pixel_defend()
    (tmp_path / "pixelcnn").mkdir()
    (tmp_path / "pixelcnn/tiny.keras").write_bytes(checkpoint.read_bytes())
    config = tmp_path / "c.toml"
    config.write_text(base + 'pixelcnn = "pixelcnn/tiny.keras"\n')
    spec = load_experiment(config).defenses[0]
    assert spec.params["pixelcnn"] == str(tmp_path / "pixelcnn/tiny.keras")
    assert spec.label == "pixel-defend(pixelcnn=tiny.keras)"
    config.write_text(base)
    with pytest.raises(UserError, match="give its pixelcnn file"):
        load_experiment(config)
    config.write_text(base + 'pixelcnn = "missing.keras"\n')
    with pytest.raises(UserError, match="missing.keras"):
        load_experiment(config)


def test_a_study_refuses_a_pixelcnn_of_other_images_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from host.core.paths import ROOT

    config = tmp_path / "c.toml"
    config.write_text(digits_study_with_pixel_defend() + f'pixelcnn = "{checkpoint}"\n')
    proc = subprocess.run([sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(tmp_path),
                           "--run-id", "e", "--workers", "0", "--no-progress"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "models (6, 6, 3) images, but the model's inputs are (8, 8, 1)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "e").exists()


def test_the_training_command_writes_a_checkpoint_that_learned(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two epochs on flat-coloured images: bits per sub-pixel fall well below uniform's 8."""
    from host.defenses.pixelcnn import load_pixelcnn
    from host.defenses.train_pixelcnn import main

    rng = np.random.default_rng(0)
    x = np.repeat(rng.integers(0, 4, (40, 1, 1, 3)) * 60, 6, axis=1).repeat(6, axis=2).astype(np.uint8)
    np.savez(tmp_path / "pool.npz", x=x, y=np.zeros(len(x), np.uint8))
    out = tmp_path / "out/pixelcnn.keras"
    assert main(["--data", str(tmp_path / "pool.npz"), "--epochs", "2", "--hidden", "4", "--residual-blocks", "1",
                 "--held-out", "8", "--batch-size", "8", "--learning-rate", "0.01", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "32 training images (6, 6, 3), 8 held out" in text and "epoch   2" in text
    held = float(text.split("held-out ")[-1].split()[0])
    assert held < 4.0, text
    assert load_pixelcnn(out, SHAPE) is not None and sorted(p.name for p in out.parent.iterdir()) == ["pixelcnn.keras"]
    with pytest.raises(UserError, match="too few to hold out"):
        main(["--data", str(tmp_path / "pool.npz"), "--held-out", "40", "--out", str(out)])


@pytest.mark.parametrize("flags,message", [
    (["--learning-rate", "-1"], "--learning-rate must be a positive number, got -1"),
    (["--learning-rate", "0"], "--learning-rate must be a positive number, got 0"),
    (["--learning-rate", "nan"], "--learning-rate must be a positive number, got nan"),
    (["--held-out", "-5"], "--held-out must be 0 or more, got -5"),
    (["--start", "-3"], "--start must be 0 or more, got -3"),
    (["--start", "12"], r"--start 12: .*pool.npz has only 12 images \(0..11\)"),
    (["--num", "-3"], "--num must be at least 1, got -3"),
])
def test_the_training_command_refuses_bad_numbers(tmp_path: Path, flags: list[str], message: str) -> None:
    """Refused before any training: a negative learning rate used to save a diverged checkpoint."""
    from host.defenses.train_pixelcnn import main

    np.savez(tmp_path / "pool.npz", x=np.zeros((12, *SHAPE), np.uint8), y=np.zeros(12, np.uint8))
    out = tmp_path / "pixelcnn.keras"
    with pytest.raises(UserError, match=message):
        main(["--data", str(tmp_path / "pool.npz"), "--held-out", "2", "--epochs", "1", "--hidden", "4",
              "--residual-blocks", "1", *flags, "--out", str(out)])
    assert not out.exists()


def test_the_training_command_refuses_non_finite_images_and_unwritable_outputs(tmp_path: Path) -> None:
    from host.defenses.train_pixelcnn import main

    x = np.full((12, *SHAPE), 0.5, np.float32)
    x[3, 1, 2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(12, np.uint8))
    common = ["--held-out", "2", "--epochs", "1", "--hidden", "4", "--residual-blocks", "1"]
    with pytest.raises(UserError, match="1 .*values .*are NaN or infinite"):
        main(["--data", str(tmp_path / "nan.npz"), *common, "--out", str(tmp_path / "p.keras")])
    np.savez(tmp_path / "pool.npz", x=np.zeros((12, *SHAPE), np.uint8), y=np.zeros(12, np.uint8))
    (tmp_path / "file").write_text("")
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(UserError, match="file is a file, not a directory"):
        main(["--data", str(tmp_path / "pool.npz"), *common, "--out", str(tmp_path / "file/p.keras")])
    with pytest.raises(UserError, match="dir.keras is a directory"):
        main(["--data", str(tmp_path / "pool.npz"), *common, "--out", str(tmp_path / "dir.keras")])


def test_training_continues_from_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--init trains a saved PixelCNN further: its first epoch starts where the saved one ended."""
    from host.defenses.train_pixelcnn import main

    rng = np.random.default_rng(0)
    x = np.repeat(rng.integers(0, 4, (40, 1, 1, 3)) * 60, 6, axis=1).repeat(6, axis=2).astype(np.uint8)
    np.savez(tmp_path / "pool.npz", x=x, y=np.zeros(len(x), np.uint8))
    common = ["--data", str(tmp_path / "pool.npz"), "--held-out", "8", "--batch-size", "8", "--learning-rate", "0.01"]
    first, second = tmp_path / "first.keras", tmp_path / "second.keras"
    assert main([*common, "--epochs", "1", "--hidden", "4", "--residual-blocks", "1", "--out", str(first)]) == 0
    after_one = float(capsys.readouterr().out.split("held-out ")[-1].split()[0])
    assert main([*common, "--epochs", "1", "--init", str(first), "--out", str(second)]) == 0
    text = capsys.readouterr().out
    assert f"from {first}" in text and "(saved)" in text
    assert float(text.split("held-out ")[-1].split()[0]) < after_one < 8.0, text
    with pytest.raises(UserError, match="PixelCNN checkpoint not found"):
        main([*common, "--init", str(tmp_path / "none.keras"), "--out", str(second)])

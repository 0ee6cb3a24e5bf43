"""Train the default model: a small int8 CNN on scikit-learn's 8x8 digits.

    python models/train_digits.py            # writes models/digits_cnn{.keras,_int8.tflite,.json}

Deterministic: fixed seeds + TF op determinism, so a retrain on the same
TF/Keras version reproduces the committed files' accuracies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from host.core.data import DIGITS_CLASS_NAMES, DIGITS_SPLIT_SEED, load_digits_split  # noqa: E402
from host.engine.reference import ReferenceInterpreter  # noqa: E402
from host.tflite.reader import parse_model  # noqa: E402

ALLOWED_OPS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "FULLY_CONNECTED", "RESHAPE", "SOFTMAX",
}
TRAIN_SEED = 1234
EPOCHS = 40
BATCH_SIZE = 32
FLAT_FEATURES = 2 * 2 * 32  # after two 2x2 poolings of an 8x8 map with 32 channels


def seed_everything(seed: int) -> None:
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(batch_size: int | None = None):
    from tensorflow import keras

    layers = keras.layers
    inputs = keras.Input(shape=(8, 8, 1), batch_size=batch_size, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.MaxPool2D(2)(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    # A fixed-shape Reshape (not Flatten) so the converter emits a single RESHAPE.
    x = layers.Reshape((FLAT_FEATURES,))(x)
    x = layers.Dense(10)(x)
    outputs = layers.Softmax(name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train(x_train: np.ndarray, y_train: np.ndarray, epochs: int):
    from tensorflow import keras

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=2)
    return model


def convert_int8(model, x_train: np.ndarray) -> bytes:
    import tensorflow as tf

    def representative_data():
        for sample in x_train[:500]:
            yield [sample[np.newaxis].astype(np.float32)]

    # A batch-1 twin makes every shape static, so the Reshape converts to a lone
    # RESHAPE instead of SHAPE/STRIDED_SLICE/PACK computing a dynamic shape.
    fixed_batch = build_model(batch_size=1)
    fixed_batch.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed_batch)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def tflite_ops(tflite: bytes) -> list[str]:
    return [op.opcode for op in parse_model(tflite).subgraphs[0].operators]


def int8_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy through TFLite Micro (the device's golden reference), int8 in and out."""
    graph = parse_model(tflite).subgraphs[0]
    tin = graph.tensors[graph.inputs[0]]
    scale, zero = float(tin.quant.scale[0]), int(tin.quant.zero_point[0])
    x_q = np.clip(np.round(x.astype(np.float64) / scale) + zero, -128, 127).astype(np.int8)
    outputs = ReferenceInterpreter(tflite).run_batch(x_q)
    return float(np.mean(outputs.reshape(len(y), -1).argmax(axis=1) == y))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED, help="training seed (weights init, shuffling)")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    x_train, y_train, x_test, y_test = load_digits_split(DIGITS_SPLIT_SEED)
    model = train(x_train, y_train, args.epochs)
    float_acc = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))

    tflite = convert_int8(model, x_train)
    ops = tflite_ops(tflite)
    extra = sorted(set(ops) - ALLOWED_OPS)
    if extra:
        raise SystemExit(f"converted model has unsupported ops {extra}; ops: {ops}")
    int8_acc = int8_accuracy(tflite, x_test, y_test)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    model.save(args.out_dir / "digits_cnn.keras")
    (args.out_dir / "digits_cnn_int8.tflite").write_bytes(tflite)
    metadata = {
        "name": "digits_cnn",
        "dataset": "sklearn.datasets.load_digits",
        "input_shape": [1, 8, 8, 1],
        "input_range": [0.0, 1.0],
        "input_scaling": "pixel / 16",
        "class_names": list(DIGITS_CLASS_NAMES),
        "split": {"function": "host.core.data.load_digits_split", "seed": DIGITS_SPLIT_SEED, "test_size": 0.25,
                  "stratify": True, "n_train": len(y_train), "n_test": len(y_test)},
        "train": {"seed": args.seed, "epochs": args.epochs, "batch_size": BATCH_SIZE, "optimizer": "adam(1e-3)"},
        "float_test_accuracy": round(float_acc, 6),
        "int8_test_accuracy": round(int8_acc, 6),
        "int8_accuracy_measured_with": "host.engine.reference.ReferenceInterpreter (TFLite Micro)",
        "ops": ops,
        "tflite_sha256": hashlib.sha256(tflite).hexdigest(),
    }
    (args.out_dir / "digits_cnn.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"float test accuracy {float_acc:.4f}, int8 (TFLM) {int8_acc:.4f}; ops {ops}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

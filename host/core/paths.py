"""Well-known locations inside the project checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOARDS_DIR = ROOT / "boards"
FIRMWARE_DIR = ROOT / "firmware"
MODELS_DIR = ROOT / "models"
BUILD_DIR = ROOT / "build"
FLASH_DIR = BUILD_DIR / "flash"
RESULTS_DIR = ROOT / "results"
SHARED_DIR = ROOT.parent / "shared"

DEFAULT_BOARD = "mps2-an386"
DEFAULT_MODEL = MODELS_DIR / "digits_cnn_int8.tflite"
DEFAULT_FLOAT_MODEL = MODELS_DIR / "digits_cnn.keras"

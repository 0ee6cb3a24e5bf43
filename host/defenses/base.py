"""The defense registry: one interface for every adversarial defense.

A defense is a class with a name, a kind and declared parameters (with defaults):

* kind "preprocess": `apply(x, input_range)` maps a float batch (NHWC, inside the model's input
  range) to a float batch of the same shape inside the same range.  Defenses with an integer
  definition on the quantized input tensor also implement `apply_quantized(q, scale, zero_point,
  input_range)` (`has_integer_reference` is True): the NumPy reference a firmware pre-processing
  stage must match bit for bit.  Where that definition differs from quantize(apply(x)) on purpose
  (combined-squeezing), `acts_on_quantized_input` is True and studies feed it to quantized models.
* kind "train": `train(float_model, x_train, y_train, input_range, **overrides)` returns a NEW
  float Keras model with the input model's architecture (a clone, fine-tuned), ready for
  host.quantization.quantize.quantize.
* kind "model": a defended model trained elsewhere, given as files (trained_model.py); the study
  evaluates it as it evaluates a train-based defense's model.

Modules register their class with @register; callers use get_defense(name, **params).
Parameters are validated on construction (UserError naming the defense and the parameter).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from host.core.errors import UserError
from host.core.params import Param, at_least_one, in_range, non_negative, one_of, positive  # noqa: F401  (re-exported)
from host.core.registry import Configurable, Registry, seed_everything  # noqa: F401  (seed_everything re-exported)

KINDS = ("preprocess", "train", "model")



SEED = Param("seed", int, 0, "seed for every random choice (shuffling, random starts, initialisation)",
             non_negative)


class Defense(Configurable, ABC):
    """Base class: subclasses set the class attributes (and implement apply or train); see Configurable."""

    what = "defense"
    kind: ClassVar[str]                      # "preprocess", "train" or "model"
    implementation: ClassVar[str] = ""       # the ART class doing the work, or "ours: ..."
    file_params: ClassVar[tuple[str, ...]] = ()   # parameters naming files: a study resolves them against its config

    def check_inputs(self, input_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """Before long work: a UserError if this defense cannot serve a model with these inputs."""


def check_input_range(input_range: Sequence[float], defense: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise UserError(f"defense '{defense}': input_range must be two numbers, got {input_range!r}") from None
    if not lo < hi:
        raise UserError(f"defense '{defense}': empty input range [{lo}, {hi}]")
    return lo, hi


class Preprocessor(Defense):
    """An input transformation applied before the model (on the host or in firmware)."""

    kind = "preprocess"
    has_integer_reference: ClassVar[bool] = False
    # True: a quantized model's defended input is apply_quantized(quantize(x)) (the defense has its
    # own definition on quantized inputs, like the study's combined squeezer); False: quantize(apply(x))
    acts_on_quantized_input: ClassVar[bool] = False

    def apply(self, x: np.ndarray, input_range: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
        """The defended inputs: float32, same shape, inside input_range.

        x is a float batch NHWC in input_range (values outside by more than 1e-6 of the range
        width are a UserError; smaller excursions are clipped first).
        """
        lo, hi = check_input_range(input_range, self.name)
        x = np.asarray(x)
        if x.ndim != 4:
            raise UserError(f"defense '{self.name}': inputs must be a batch of NHWC images, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or (x.size and not np.all(np.isfinite(x))):
            raise UserError(f"defense '{self.name}': inputs must be finite numbers")
        x = x.astype(np.float32)
        if len(x) == 0:
            return x.copy()
        tol = 1e-6 * (hi - lo)
        if float(x.min()) < lo - tol or float(x.max()) > hi + tol:
            raise UserError(
                f"defense '{self.name}': input values {float(x.min()):g}..{float(x.max()):g} fall outside "
                f"the input range [{lo:g}, {hi:g}]",
                hint="pass input_range= the range the model was trained on",
            )
        x = np.clip(x, lo, hi)
        out = np.asarray(self._apply(x, lo, hi), dtype=np.float32).reshape(x.shape)
        return np.clip(out, lo, hi).astype(np.float32)

    @abstractmethod
    def _apply(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """The transformation on a clipped float32 NHWC batch."""

    def apply_quantized(
        self, q: np.ndarray, scale: float, zero_point: int, input_range: Sequence[float] = (0.0, 1.0),
    ) -> np.ndarray:
        """The integer definition on the quantized input tensor (same dtype as q); see docs/defenses.md."""
        raise UserError(
            f"defense '{self.name}' ({self.describe()}) has no integer definition on quantized inputs",
            hint="feature-squeezing, median-smoothing and spatial-smoothing with filter=median have one",
        )

    def chip_stage(self) -> Any:
        """The firmware pre-processing stage doing the same (host.engine.preprocess.ChipStage), or None."""
        return None


class Trainer(Defense):
    """A defense that produces a new float model (same architecture) by (re-)training."""

    kind = "train"

    def train(
        self,
        float_model: Any,
        x_train: np.ndarray,
        y_train: np.ndarray,
        input_range: Sequence[float] = (0.0, 1.0),
        **overrides: Any,
    ) -> Any:
        """A new Keras model: a clone of float_model fine-tuned by this defense.

        The input model is not modified.  `overrides` replace this instance's parameters for
        this call (validated the same way).  Same inputs and seed: same weights.
        """
        params = self._validated(overrides, base=self.params)
        lo, hi = check_input_range(input_range, self.name)
        x, y = check_training_data(float_model, x_train, y_train, (lo, hi), self.name)
        seed_everything(int(params["seed"]))
        return self._train(float_model, x, y, (lo, hi), params)

    @abstractmethod
    def _train(self, float_model: Any, x: np.ndarray, y: np.ndarray, input_range: tuple[float, float],
               params: dict[str, Any]) -> Any:
        """The training itself; returns the new Keras model."""


def check_training_data(
    model: Any, x: np.ndarray, y: np.ndarray, input_range: tuple[float, float], defense: str,
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.ndim < 2 or len(x) != len(y):
        raise UserError(f"defense '{defense}': {len(x)} training inputs but {len(y)} labels")
    if len(x) == 0:
        raise UserError(f"defense '{defense}': the training set is empty")
    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        raise UserError(f"defense '{defense}': needs a single-input Keras model")
    shape = tuple(inputs[0].shape[1:])
    if tuple(x.shape[1:]) != shape:
        raise UserError(
            f"defense '{defense}': training inputs have shape {x.shape[1:]} but the model expects {shape}"
        )
    lo, hi = input_range
    if float(x.min()) < lo - 1e-6 * (hi - lo) or float(x.max()) > hi + 1e-6 * (hi - lo):
        raise UserError(
            f"defense '{defense}': training inputs {float(x.min()):g}..{float(x.max()):g} fall outside "
            f"the input range [{lo:g}, {hi:g}]",
        )
    classes = int(model.outputs[0].shape[-1])
    if y.min() < 0 or y.max() >= classes or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"defense '{defense}': labels must be integers in 0..{classes - 1}")
    return np.clip(x, lo, hi).astype(np.float32), y.astype(np.int64)


# host.defenses' __init__ imports every defense module
_REGISTRY = Registry("defense", "host.defenses", allowed={"kind": KINDS})


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator adding a defense to the registry under cls.name."""
    return _REGISTRY.register(cls)


def list_defenses(kind: str | None = None) -> list[str]:
    """Registered defense names (sorted), optionally only one kind."""
    if kind is not None and kind not in KINDS:
        raise UserError(f"unknown defense kind '{kind}'", hint=f"kinds: {', '.join(KINDS)}")
    return [n for n in _REGISTRY.names() if kind is None or _REGISTRY[n].kind == kind]


def defense_class(name: str) -> type[Defense]:
    return _REGISTRY.lookup(name)


def get_defense(name: str, **params: Any) -> Defense:
    """A defense instance by registry name; UserError for an unknown name or bad params."""
    return defense_class(name)(**params)


def describe_registry() -> str:
    """One line per defense: name, kind, implementation, description, parameters with defaults."""
    return _REGISTRY.describe(
        lambda name, cls, params: f"{name:18s} {cls.kind:10s} {cls.description} [{params}] ({cls.implementation})"
    )


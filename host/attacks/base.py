"""The attack registry: one interface for every adversarial attack.

An attack is a class with a name, a threat model, a norm and declared
parameters (with defaults); `generate(model, x, y)` returns adversarial inputs
inside the ε-ball around x and inside the model's input range.  Modules
register their class with @register; callers use get_attack(name, **params).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from host.attacks.target import FloatModel
from host.errors import UserError

THREAT_MODELS = ("white-box", "black-box")


@dataclass(frozen=True)
class Param:
    """One attack parameter: its type, default, and a check returning a problem or None."""

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None

    def validate(self, value: Any, attack: str) -> Any:
        value = self._coerce(value, attack)
        problem = self.check(value) if self.check else None
        if problem:
            raise UserError(f"attack '{attack}': {self.name}={value!r} is invalid: {problem}")
        return value

    def _coerce(self, value: Any, attack: str) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise UserError(f"attack '{attack}': {self.name} must be true or false, got {value!r}")
        if self.type is int and isinstance(value, float) and not value.is_integer():
            raise UserError(f"attack '{attack}': {self.name} must be an integer, got {value!r}")
        try:
            return self.type(value)
        except (TypeError, ValueError):
            raise UserError(
                f"attack '{attack}': {self.name} must be {self.type.__name__}, got {value!r}"
            ) from None


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


EPS = Param("eps", float, 0.1, "L∞ radius of the perturbation, in input units", positive)
SEED = Param("seed", int, 0, "seed for any randomness (random init, noise)", non_negative)
BATCH_SIZE = Param("batch_size", int, 128, "inputs per gradient batch", at_least_one)


class Attack(ABC):
    """Base class: subclasses set the class attributes and implement _generate."""

    name: ClassVar[str]
    threat_model: ClassVar[str]          # "white-box" (needs gradients) or "black-box"
    norm: ClassVar[str]                  # "inf", "2", ...
    description: ClassVar[str]
    params_spec: ClassVar[tuple[Param, ...]] = (EPS, SEED)

    def __init__(self, **params: Any) -> None:
        spec = {p.name: p for p in self.params_spec}
        unknown = sorted(set(params) - set(spec))
        if unknown:
            raise UserError(
                f"attack '{self.name}' has no parameter(s) {', '.join(unknown)}",
                hint=f"its parameters: {', '.join(sorted(spec))}",
            )
        self.params: dict[str, Any] = {
            name: p.validate(params[name], self.name) if name in params else p.default
            for name, p in spec.items()
        }
        self._check_params()

    @property
    def eps(self) -> float:
        return float(self.params["eps"])

    def _check_params(self) -> None:
        """Cross-parameter checks (override)."""
        return None

    def generate(self, model: FloatModel | Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Adversarial versions of x (float32), within eps of x (L∞) and clipped to the input range."""
        target = model if isinstance(model, FloatModel) else FloatModel(model)
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if len(x) != len(y):
            raise UserError(f"attack '{self.name}': {len(x)} inputs but {len(y)} labels")
        if len(x) == 0:
            return x.copy()
        self._seed_rngs()
        x_adv = self._generate(target, x, y)
        return self.project(x, x_adv, target.input_range)

    def project(self, x: np.ndarray, x_adv: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
        """Clip onto the ε-ball around x (this attack's norm) and the input range."""
        if self.norm != "inf":
            raise NotImplementedError(f"projection for norm {self.norm}")
        lo, hi = input_range
        x_adv = np.clip(x_adv, x - self.eps, x + self.eps)
        return np.clip(x_adv, lo, hi).astype(np.float32)

    @abstractmethod
    def _generate(self, model: FloatModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The attack itself; the result is projected afterwards."""

    def _seed_rngs(self) -> None:
        # ART draws random starts from NumPy's global generator.
        seed = int(self.params.get("seed", 0))
        random.seed(seed)
        np.random.seed(seed)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})"


_REGISTRY: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator adding an attack to the registry under cls.name."""
    if cls.threat_model not in THREAT_MODELS:
        raise ValueError(f"{cls.__name__}: threat_model must be one of {THREAT_MODELS}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"attack name '{cls.name}' registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def list_attacks() -> list[str]:
    _load_builtin_attacks()
    return sorted(_REGISTRY)


def attack_class(name: str) -> type[Attack]:
    _load_builtin_attacks()
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise UserError(
            f"unknown attack '{name}'",
            hint=f"available attacks: {', '.join(sorted(_REGISTRY))}",
        )
    return _REGISTRY[key]


def get_attack(name: str, **params: Any) -> Attack:
    """An attack instance by registry name; UserError for an unknown name or bad params."""
    return attack_class(name)(**params)


def describe_registry() -> str:
    """One line per attack: name, threat model, norm, parameters with defaults."""
    lines = []
    for name in list_attacks():
        cls = _REGISTRY[name]
        params = ", ".join(f"{p.name}={p.default}" for p in cls.params_spec)
        lines.append(f"{name:10s} {cls.threat_model:11s} L{cls.norm:3s} {cls.description} [{params}]")
    return "\n".join(lines)


def _load_builtin_attacks() -> None:
    import host.attacks  # noqa: F401  (its __init__ imports every attack module)

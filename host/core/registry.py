"""A registry of named classes (attacks, defenses): register, look up by name, list, describe.

Registered classes are Configurable: a name and declared parameters (host.core.params), validated
on construction the same way for an attack and a defense.  Lookups first import the package that
registers the built-ins, so a registry is complete whatever was imported before.
"""

from __future__ import annotations

import importlib
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from host.core.errors import UserError
from host.core.params import Param, format_params, validate_params


class Configurable:
    """What an attack and a defense share: a registry name and declared, validated parameters.

    Subclasses (host.attacks.base.Attack, host.defenses.base.Defense) set `what` ("attack",
    "defense": used in messages); each concrete class sets name, description and params_spec.
    Construction validates the keyword arguments (UserError naming the owner and the parameter),
    fills in defaults and runs the cross-parameter checks of _check_params.
    """

    what: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    params_spec: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = self._validated(params)
        self._check_params()

    @property
    def owner(self) -> str:
        """How messages name this instance, e.g. "attack 'pgd'"."""
        return f"{self.what} '{self.name}'"

    def _validated(self, params: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The full parameter set: `params` validated over `base` (default: the declared defaults)."""
        return validate_params(self.params_spec, params, self.owner, base)

    def _check_params(self) -> None:
        """Cross-parameter checks (override)."""
        return None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The declared parameters with their defaults, in declaration order."""
        return {p.name: p.default for p in cls.params_spec}

    def describe(self) -> str:
        """'pgd(eps=0.1, max_iter=20, ...)': the name and every parameter's value."""
        return f"{self.name}({format_params(self.params)})"


class Registry:
    def __init__(self, what: str, builtins: str, allowed: Mapping[str, Sequence[str]] | None = None) -> None:
        self.what = what                  # "attack", "defense": used in messages
        self.builtins = builtins          # the package whose import registers the built-ins
        self.allowed = dict(allowed or {})  # class attribute -> the values a registered class may give it
        self.classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Class decorator adding cls under cls.name (ValueError for a disallowed attribute value)."""
        for attribute, values in self.allowed.items():
            if getattr(cls, attribute, None) not in values:
                raise ValueError(f"{cls.__name__}: {attribute} must be one of {values}")
        if cls.name in self.classes and self.classes[cls.name] is not cls:
            raise ValueError(f"{self.what} name '{cls.name}' registered twice")
        self.classes[cls.name] = cls
        return cls

    def names(self) -> list[str]:
        importlib.import_module(self.builtins)
        return sorted(self.classes)

    def lookup(self, name: str) -> Any:
        """The class registered as `name` (case-insensitive); UserError listing the registry otherwise."""
        key = str(name).strip().lower()
        if key not in self.classes:
            raise UserError(f"unknown {self.what} '{name}'", hint=f"available {self.what}s: {', '.join(self.names())}")
        return self.classes[key]

    def __getitem__(self, name: str) -> Any:
        return self.classes[name]

    def describe(self, line: Callable[[str, Any, str], str]) -> str:
        """One line per registered class, by name: line(name, cls, its parameters' defaults as text)."""
        return "\n".join(
            line(name, self.classes[name], format_params(self.classes[name].defaults())) for name in self.names()
        )


def seed_everything(seed: int) -> None:
    """Python's, NumPy's global (ART draws from it) and, once imported, TensorFlow's generators."""
    random.seed(seed)
    np.random.seed(seed)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)

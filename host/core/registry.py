"""A registry of named classes (attacks, defenses): register, look up by name, list.

Lookups first import the package that registers the built-ins, so a registry is
complete whatever was imported before.
"""

from __future__ import annotations

import importlib
import random
import sys
from typing import Any

import numpy as np

from host.core.errors import UserError


class Registry:
    def __init__(self, what: str, builtins: str) -> None:
        self.what = what                  # "attack", "defense": used in messages
        self.builtins = builtins          # the package whose import registers the built-ins
        self.classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Class decorator adding cls under cls.name."""
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


def seed_everything(seed: int) -> None:
    """Python's, NumPy's global (ART draws from it) and, once imported, TensorFlow's generators."""
    random.seed(seed)
    np.random.seed(seed)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)

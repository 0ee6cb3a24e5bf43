"""Adversarial attacks behind one registry (see docs/attacks.md).

Importing this package registers every built-in attack; none imports
TensorFlow or ART until it generates.
"""

from host.attacks import fgsm, noise, pgd  # noqa: F401  (registers the attacks)
from host.attacks.base import (
    Attack,
    Param,
    attack_class,
    describe_registry,
    get_attack,
    list_attacks,
    register,
)
from host.attacks.target import FloatModel, load_float_model

__all__ = [
    "Attack", "FloatModel", "Param", "attack_class", "describe_registry", "get_attack",
    "list_attacks", "load_float_model", "register",
]

"""Adversarial defenses behind one registry (see docs/defenses.md).

Importing this package registers every built-in defense; none imports TensorFlow or ART
until it is applied or trains.
"""

from host.defenses import (  # noqa: F401  (registers the defenses)
    distillation,
    ensemble_at,
    feature_squeezing,
    jpeg,
    median_smoothing,
    pgd_at,
    sinkhorn_at,
)
from host.defenses.base import (
    KINDS,
    Defense,
    Param,
    Preprocessor,
    Trainer,
    defense_class,
    describe_registry,
    get_defense,
    list_defenses,
    register,
)

__all__ = [
    "KINDS", "Defense", "Param", "Preprocessor", "Trainer",
    "defense_class", "describe_registry", "get_defense", "list_defenses", "register",
]

"""Adversarial defenses behind one registry (see docs/defenses.md).

Importing this package registers every built-in defense; none imports TensorFlow or ART
until it is applied or trains.

Imports: host.core, host.compiler, host.engine, host.emulators, host.backends, host.quantization,
host.attacks; TensorFlow and ART inside functions only. `chip_cost` is a command
(`python -m host.defenses.chip_cost`) kept here under its published name.
"""

from host.defenses import (  # noqa: F401  (registers the defenses)
    combined_squeezing,
    distillation,
    ensemble_at,
    feature_squeezing,
    jpeg,
    median_smoothing,
    pgd_at,
    pixel_defend,
    sinkhorn_at,
    trained_model,
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

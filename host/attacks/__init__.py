"""Adversarial attacks behind one registry (see docs/attacks.md).

Importing this package registers every built-in attack; none imports
TensorFlow or ART until it generates.

Imports: host.core, host.engine, host.backends (oracles); TensorFlow and ART inside functions only.
"""

from host.attacks import (  # noqa: F401  (registers the attacks)
    apgd_ce,
    apgd_t,
    autoattack,
    boundary,
    cw_l2,
    cw_linf,
    deepfool,
    ead,
    fab_t,
    fgsm,
    geoda,
    hopskipjump,
    jsma,
    noise,
    patch,
    pgd,
    square,
    zoo,
)
from host.attacks.base import (
    Attack,
    Param,
    attack_class,
    describe_registry,
    get_attack,
    list_attacks,
    register,
)
from host.attacks.oracle import FloatOracle, QuantizedOracle, QueryOracle, ReferenceOracle
from host.attacks.target import FloatModel, load_float_model

__all__ = [
    "Attack", "FloatModel", "FloatOracle", "Param", "QuantizedOracle", "QueryOracle", "ReferenceOracle",
    "attack_class", "describe_registry", "get_attack", "list_attacks", "load_float_model", "register",
]

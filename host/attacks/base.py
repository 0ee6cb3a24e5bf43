"""The attack registry: one interface for every adversarial attack.

An attack is a class with a name, a threat model, a norm, what it runs on
(`needs`: the float model, a query oracle over the quantized model, or nothing)
and declared parameters (with defaults); `generate(model, x, y)` returns
adversarial inputs inside the model's input range and, for bounded attacks,
inside the ε-ball around x in the attack's norm.  Minimal-perturbation attacks
(C&W, DeepFool, EAD, JSMA, decision-based ones) take `eps` as an optional budget:
a result farther than eps from x is replaced by x (the attack failed within the
budget).  Modules register their class with @register; callers use
get_attack(name, **params).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from host.attacks.oracle import QueryOracle
from host.attacks.target import FloatModel
from host.core.errors import UserError
from host.core.params import Param, at_least_one, in_range, non_negative, one_of, positive  # noqa: F401  (re-exported)
from host.core.registry import Configurable, Registry, seed_everything

THREAT_MODELS = ("white-box", "black-box")
NEEDS = ("float-model", "oracle", "nothing")
NORMS = ("inf", "2", "1", "0", "patch")



EPS = Param("eps", float, 0.1, "L∞ radius of the perturbation, in input units", positive)
SEED = Param("seed", int, 0, "seed for any randomness (random init, noise)", non_negative)
BATCH_SIZE = Param("batch_size", int, 128, "inputs per gradient batch", at_least_one)
# Minimal-perturbation attacks: eps is a budget in the attack's own norm, unbounded by default.
BUDGET = Param(
    "eps", float, math.inf,
    "budget in this attack's norm: a result farther than eps from x is replaced by x (inf: none)",
    positive,
)


class Attack(Configurable, ABC):
    """Base class: subclasses set the class attributes and implement _generate (parameters: Configurable)."""

    what = "attack"
    threat_model: ClassVar[str]          # "white-box" (needs gradients) or "black-box"
    norm: ClassVar[str]                  # "inf", "2", "1", "0" or "patch" (no norm bound)
    params_spec: ClassVar[tuple[Param, ...]] = (EPS, SEED)
    # What generate(model, ...) takes: "float-model" (FloatModel or a Keras model),
    # "oracle" (a QueryOracle, normally over the quantized model) or "nothing" (either).
    needs: ClassVar[str] = "float-model"
    # True: the result is always within eps of x (norm `norm`); False: eps is a budget
    # (minimal-perturbation attacks) or absent (patch).
    bounded: ClassVar[bool] = True
    art_class: ClassVar[str] = ""        # the ART class doing the work, for docs and listings
    # A study crafts this attack on a whole input set in one work unit instead of one per shard: for
    # attacks whose later steps run on the inputs earlier ones left (AutoAttack's stages), which a
    # 50-input shard leaves a handful each, so per-step overhead dominates (docs/cluster.md).
    craft_whole_set: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # validated into self.params, then _check_params
        self.last_queries: int | None = None  # oracle queries used by the last generate (oracle attacks)

    @property
    def eps(self) -> float:
        return float(self.params.get("eps", math.inf))

    @property
    def target_class(self) -> int | None:
        """The class a targeted attack pushes every input to (None: untargeted)."""
        return None

    def generate(self, model: FloatModel | QueryOracle | Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Adversarial versions of x (float32) in the input range (and the ε-ball when bounded).

        `model` is what the attack declares in `needs`: a FloatModel (or bare Keras model) for
        white-box attacks, a QueryOracle for black-box query attacks (their query count is in
        `last_queries` afterwards); anything else is a UserError before any work.
        """
        target = self._target(model)
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if len(x) != len(y):
            raise UserError(f"attack '{self.name}': {len(x)} inputs but {len(y)} labels")
        self.last_queries = 0 if isinstance(target, QueryOracle) else None
        if len(x) == 0:
            return x.copy()
        self._check_inputs(target, x)
        self._seed_rngs()
        before = target.queries if isinstance(target, QueryOracle) else 0
        x_adv = np.asarray(self._generate(target, x, y), dtype=np.float32).reshape(x.shape)
        if isinstance(target, QueryOracle):
            self.last_queries = target.queries - before
        return self.project(x, x_adv, target.input_range)

    def _target(self, model: Any) -> FloatModel | QueryOracle:
        if self.needs == "oracle":
            if not isinstance(model, QueryOracle):
                raise UserError(
                    f"attack '{self.name}' is a black-box query attack: it runs on a QueryOracle "
                    f"(e.g. host.attacks.oracle.ReferenceOracle('model_int8.tflite')), "
                    f"not on {type(model).__name__}",
                )
            return model
        if isinstance(model, QueryOracle):
            if self.needs == "nothing":
                return model
            raise UserError(
                f"attack '{self.name}' is white-box: it needs the float model (FloatModel or a Keras "
                f"model), not a query oracle",
            )
        return model if isinstance(model, FloatModel) else FloatModel(model)

    def check(self, model: FloatModel | QueryOracle | Any, x: np.ndarray) -> None:
        """What generate would refuse about this model and these inputs (UserError), without
        running the attack: a study calls it for every attack before its long work starts."""
        self._check_inputs(self._target(model), np.asarray(x, dtype=np.float32))

    def _check_inputs(self, target: FloatModel | QueryOracle, x: np.ndarray) -> None:
        """Model-dependent parameter checks, before any long work (override)."""
        return None

    def project(self, x: np.ndarray, x_adv: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
        """Clip to the input range and onto the ε-ball (bounded attacks) or the budget (others)."""
        lo, hi = input_range
        if self.norm == "patch":
            return np.clip(x_adv, lo, hi).astype(np.float32)
        if self.bounded and self.norm == "inf":
            x_adv = np.clip(x_adv, x - self.eps, x + self.eps)
        elif self.bounded and self.norm == "2":
            dist = perturbation_norm(x, x_adv, "2")
            factor = np.minimum(1.0, self.eps / np.maximum(dist, 1e-12)).astype(np.float32)
            x_adv = x + (x_adv - x) * factor.reshape((-1,) + (1,) * (x.ndim - 1))
        elif self.bounded:
            raise NotImplementedError(f"projection for norm {self.norm}")
        # Clipping towards the box (which contains x) never moves a point away from x.
        x_adv = np.clip(x_adv, lo, hi).astype(np.float32)
        if not self.bounded and math.isfinite(self.eps):
            over = perturbation_norm(x, x_adv, self.norm) > self.eps * (1 + 1e-6)
            x_adv[over] = x[over]
        return x_adv

    @abstractmethod
    def _generate(self, model: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The attack itself (model: FloatModel or QueryOracle per `needs`); projected afterwards."""

    def _seed_rngs(self) -> None:
        # ART draws random starts from NumPy's global generator; the patch uses TensorFlow's.
        seed_everything(int(self.params.get("seed", 0)))


# host.attacks' __init__ imports every attack module
_REGISTRY = Registry("attack", "host.attacks", allowed={"threat_model": THREAT_MODELS})


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator adding an attack to the registry under cls.name."""
    return _REGISTRY.register(cls)


def list_attacks() -> list[str]:
    return _REGISTRY.names()


def attack_class(name: str) -> type[Attack]:
    return _REGISTRY.lookup(name)


def get_attack(name: str, **params: Any) -> Attack:
    """An attack instance by registry name; UserError for an unknown name or bad params."""
    return attack_class(name)(**params)


def norm_label(norm: str, bounded: bool = True) -> str:
    """'Linf', 'L2', ... ('patch' as is); minimal-perturbation attacks get a 'min-' prefix."""
    label = norm if norm == "patch" else f"L{norm}"
    return label if bounded or norm == "patch" else f"min-{label}"


def perturbation_norm(x: np.ndarray, x_adv: np.ndarray, norm: str) -> np.ndarray:
    """Per-sample size of x_adv - x in the given norm ("inf", "2", "1", "0")."""
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    if norm == "inf":
        return np.abs(delta).max(axis=1) if delta.size else np.zeros(len(x))
    if norm == "2":
        return np.sqrt((delta**2).sum(axis=1))
    if norm == "1":
        return np.abs(delta).sum(axis=1)
    if norm == "0":
        return (delta != 0).sum(axis=1).astype(np.float64)
    raise ValueError(f"no perturbation norm '{norm}'")


def describe_registry() -> str:
    """One line per attack: name, threat model, norm, what it runs on, parameters with defaults."""
    return _REGISTRY.describe(
        lambda name, cls, params: f"{name:12s} {cls.threat_model:10s} {norm_label(cls.norm, cls.bounded):9s} "
                                  f"{cls.needs:11s} {cls.description} [{params}]"
    )


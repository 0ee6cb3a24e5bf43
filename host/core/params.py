"""Declared parameters of registry entries (attacks, defenses): type, default, range check.

    Param("max_iter", int, 20, "iterations", at_least_one).validate("40", "attack 'pgd'") -> 40

Values from a command line or a TOML file arrive as strings or numbers and are coerced;
a bad one is a UserError naming the owner and the parameter; validate_params does a whole
set (unknown names, coercion, range checks) for host.core.registry.Configurable, the base
that attacks and defenses share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from host.core.errors import UserError


@dataclass(frozen=True)
class Param:
    """One parameter: its type, default, and a check returning a problem or None.

    type may be bool, int, float, str or tuple (a comma-separated string is split; other
    sequences are kept as tuples, single non-string values wrapped).
    """

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None

    def validate(self, value: Any, owner: str) -> Any:
        """The coerced value; `owner` names what it belongs to, e.g. "attack 'pgd'"."""
        value = self._coerce(value, owner)
        problem = self.check(value) if self.check else None
        if problem:
            raise UserError(f"{owner}: {self.name}={value!r} is invalid: {problem}")
        return value

    def _coerce(self, value: Any, owner: str) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise UserError(f"{owner}: {self.name} must be true or false, got {value!r}")
        if self.type is tuple:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(value) if isinstance(value, Sequence) else (value,)
        if self.type is int and isinstance(value, float) and not value.is_integer():
            raise UserError(f"{owner}: {self.name} must be an integer, got {value!r}")
        if self.type in (int, float) and isinstance(value, bool):
            raise UserError(f"{owner}: {self.name} must be {self.type.__name__}, got {value!r}")
        try:
            return self.type(value)
        except (TypeError, ValueError):
            raise UserError(f"{owner}: {self.name} must be {self.type.__name__}, got {value!r}") from None


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


def in_range(lo: float, hi: float, lo_open: bool = False) -> Callable[[float], str | None]:
    """A check for lo <= value <= hi (lo < value when lo_open)."""

    def check(value: float) -> str | None:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
        return None if ok else f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]"

    return check


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def validate_params(
    spec: Sequence[Param], given: Mapping[str, Any], owner: str, base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every declared parameter (in spec order): the given value coerced and checked, else `base`'s
    value (a previous validate_params result), else the default.  An undeclared name is a UserError."""
    declared = {p.name: p for p in spec}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UserError(
            f"{owner} has no parameter(s) {', '.join(unknown)}",
            hint=f"its parameters: {', '.join(sorted(declared)) or '(none)'}",
        )
    return {
        name: p.validate(given[name], owner) if name in given else (base[name] if base is not None else p.default)
        for name, p in declared.items()
    }


def format_params(params: Mapping[str, Any]) -> str:
    """'eps=0.1, seed=0': parameters as a describe() or a registry listing shows them."""
    return ", ".join(f"{k}={v}" for k, v in params.items())

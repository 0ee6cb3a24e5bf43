"""host.core.params and host.core.registry: the parameter validation and registry that attacks and
defenses share (one implementation, both base classes on it)."""

from __future__ import annotations

from typing import Any

import pytest

from host.attacks import Attack, get_attack
from host.core.errors import UserError
from host.core.params import (
    Param,
    at_least_one,
    format_params,
    in_range,
    one_of,
    positive,
    validate_params,
)
from host.core.registry import Configurable, Registry
from host.defenses import Defense, get_defense

SPEC = (
    Param("rate", float, 0.5, "a rate", in_range(0, 1, lo_open=True)),
    Param("steps", int, 3, "steps", at_least_one),
    Param("mode", str, "fast", "mode", one_of("fast", "slow")),
    Param("on", bool, True, "switch"),
    Param("labels", tuple, (), "labels"),
)


def test_defaults_in_spec_order_and_coercion_from_strings() -> None:
    assert validate_params(SPEC, {}, "thing 'x'") == {"rate": 0.5, "steps": 3, "mode": "fast", "on": True, "labels": ()}
    given = {"labels": "a, b,", "on": "no", "steps": "7", "rate": "0.25"}
    got = validate_params(SPEC, given, "thing 'x'")
    assert list(got) == ["rate", "steps", "mode", "on", "labels"]
    assert got == {"rate": 0.25, "steps": 7, "mode": "fast", "on": False, "labels": ("a", "b")}
    assert validate_params(SPEC, {"steps": 4.0}, "thing 'x'")["steps"] == 4


def test_base_values_are_kept_and_overridden() -> None:
    base = validate_params(SPEC, {"steps": 9, "mode": "slow"}, "thing 'x'")
    got = validate_params(SPEC, {"rate": 1}, "thing 'x'", base=base)
    assert got == {**base, "rate": 1.0} and base["rate"] == 0.5


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"rate": 0}, "thing 'x': rate=0.0 is invalid: must be in (0, 1]"),
        ({"steps": 0}, "thing 'x': steps=0 is invalid: must be >= 1"),
        ({"steps": 2.5}, "thing 'x': steps must be an integer, got 2.5"),
        ({"steps": True}, "thing 'x': steps must be int, got True"),
        ({"rate": "abc"}, "thing 'x': rate must be float, got 'abc'"),
        ({"on": "maybe"}, "thing 'x': on must be true or false, got 'maybe'"),
        ({"mode": "warp"}, "thing 'x': mode='warp' is invalid: must be one of fast, slow"),
        ({"speed": 1, "colour": 2}, "thing 'x' has no parameter(s) colour, speed"),
    ],
)
def test_bad_values_name_the_owner_and_parameter(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as err:
        validate_params(SPEC, given, "thing 'x'")
    assert str(err.value).startswith(message)


def test_unknown_names_hint_the_declared_ones() -> None:
    with pytest.raises(UserError) as err:
        validate_params(SPEC, {"speed": 1}, "thing 'x'")
    assert err.value.hint == "its parameters: labels, mode, on, rate, steps"
    with pytest.raises(UserError) as err:
        validate_params((), {"speed": 1}, "thing 'y'")
    assert err.value.hint == "its parameters: (none)"


class Widget(Configurable):
    what = "widget"
    name = "knob"
    description = "a test widget"
    params_spec = (Param("lo", float, 0.0, "low"), Param("hi", float, 1.0, "high", positive))

    def _check_params(self) -> None:
        if self.params["lo"] >= self.params["hi"]:
            raise UserError(f"{self.owner}: lo must be < hi")


def test_configurable_validates_checks_and_describes() -> None:
    w = Widget(hi="2")
    assert w.params == {"lo": 0.0, "hi": 2.0} and w.owner == "widget 'knob'"
    assert w.describe() == "knob(lo=0.0, hi=2.0)" and Widget.defaults() == {"lo": 0.0, "hi": 1.0}
    assert w._validated({"lo": 1}, base=w.params) == {"lo": 1.0, "hi": 2.0}
    with pytest.raises(UserError, match="widget 'knob': lo must be < hi"):
        Widget(lo=3)
    with pytest.raises(UserError, match=r"widget 'knob' has no parameter\(s\) width"):
        Widget(width=3)
    assert format_params({}) == "" and format_params({"a": 1, "b": "x"}) == "a=1, b=x"


def test_attacks_and_defenses_share_the_one_implementation() -> None:
    assert issubclass(Attack, Configurable) and issubclass(Defense, Configurable)
    for make, name, owner in ((get_attack, "pgd", "attack 'pgd'"), (get_defense, "pgd-at", "defense 'pgd-at'")):
        with pytest.raises(UserError) as err:
            make(name, bogus=1)
        assert str(err.value).startswith(f"{owner} has no parameter(s) bogus")
        assert err.value.hint.startswith("its parameters: ") and "max_iter" in err.value.hint
        with pytest.raises(UserError, match=f"{owner}: max_iter must be int, got 'x'"):
            make(name, max_iter="x")
        assert make(name).owner == owner


def test_registry_checks_declared_attributes_and_describes() -> None:
    registry = Registry("widget", "host.core.params", allowed={"what": ("widget",)})
    assert registry.register(Widget) is Widget and registry.names() == ["knob"]
    assert registry.lookup(" KNOB ") is Widget
    assert registry.describe(lambda name, cls, params: f"{name} [{params}]") == "knob [lo=0.0, hi=1.0]"
    with pytest.raises(UserError) as err:
        registry.lookup("dial")
    assert str(err.value).startswith("unknown widget 'dial'") and err.value.hint == "available widgets: knob"

    class Gadget(Widget):
        what = "gadget"

    with pytest.raises(ValueError, match=r"Gadget: what must be one of \('widget',\)"):
        registry.register(Gadget)

    class Twin(Widget):
        pass

    with pytest.raises(ValueError, match="widget name 'knob' registered twice"):
        registry.register(Twin)

"""Fixtures shared by the attack tests: the shipped digits models, loaded once per session."""

from __future__ import annotations

import pytest

from host.attacks import FloatModel, ReferenceOracle, load_float_model
from host.core.paths import DEFAULT_FLOAT_MODEL, DEFAULT_MODEL


@pytest.fixture(scope="session")
def float_model() -> FloatModel:
    """The shipped float digits model (models/)."""
    return load_float_model(DEFAULT_FLOAT_MODEL)


@pytest.fixture(scope="session")
def oracle() -> ReferenceOracle:
    """The shipped int8 digits model behind the TFLite Micro reference interpreter."""
    return ReferenceOracle(DEFAULT_MODEL)

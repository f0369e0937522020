"""Strict numerics for every test: strict dtype promotion, rank promotion raises."""

import jax
import pytest

_STANDARD_MARK = "standard_promotion"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{_STANDARD_MARK}: run the test with standard (not strict) dtype promotion, "
        "for third-party code that relies on implicit promotion",
    )


@pytest.fixture(autouse=True)
def _strict_numerics(request):
    # Context managers, not global flags: the setting ends with the test and never
    # leaks into doctests or into modules outside tests/.
    standard = request.node.get_closest_marker(_STANDARD_MARK) is not None
    promotion = "standard" if standard else "strict"
    with jax.numpy_dtype_promotion(promotion), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def standard_promotion():
    """Standard dtype promotion inside a test that otherwise runs strict."""
    with jax.numpy_dtype_promotion("standard"):
        yield

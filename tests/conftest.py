"""Shared fixtures. Tree generators live in ``tests/trees.py`` as plain functions."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test sees the same random trees."""
    return np.random.default_rng(20240607)


@pytest.fixture(params=["serial", "cpu"])
def backend(request) -> str:
    """Each backend that runs without a GPU."""
    return request.param

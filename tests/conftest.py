"""Fixtures shared by every layer of the suite.

Helper modules (tree generators, reference solves, NEURON models) live in
``tests/support`` (on ``sys.path`` through ``pythonpath`` in ``pyproject.toml``); each
layer folder has its own ``conftest.py`` with that layer's factories. The NEURON
fixtures (a clean NEURON before and after a test, the demo models, the compiled
AmpaNmda) are in ``support/neuron_fixtures.py``, loaded here for every layer that runs
NEURON.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ["neuron_fixtures"]


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test sees the same random trees."""
    return np.random.default_rng(20240607)


@pytest.fixture(params=["serial", "cpu"])
def backend(request) -> str:
    """Each solver backend that runs without a GPU."""
    return request.param

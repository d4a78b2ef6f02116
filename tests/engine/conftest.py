"""Factories for the engine's tests: small cells made of real ``.mod`` files.

The NEURON fixtures (a clean NEURON before and after a test, the demo models, the
compiled AmpaNmda) come from ``tests/support/neuron_fixtures.py``, loaded for the whole
suite by ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import engine_models
from dhs.engine import CellModel


@pytest.fixture
def cell_of() -> Callable[..., CellModel]:
    """``cell_of(case, n_nodes=12, seed=3)``: a branched cell with the mechanisms of
    :data:`engine_models.CASES` ``[case]`` (density mechanisms at every node with
    membrane, an IClamp at node 1)."""

    def make(case: str, n_nodes: int = 12, seed: int = 3) -> CellModel:
        return engine_models.model_of(engine_models.CASES[case], n_nodes, seed)

    return make

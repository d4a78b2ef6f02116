"""Factories for the core tests (``tests/core``): seeded generators and named trees.

The tree generators themselves and the shared catalogue of named trees (``trees.CASES``)
live in ``tests/support/trees.py``; random Hines systems and the reference solve in
``tests/support/systems.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import trees
from dhs import Tree


@pytest.fixture(scope="session")
def seeded_rng() -> Callable[..., np.random.Generator]:
    """``seeded_rng(*keys)``: a generator seeded from the keys (the same keys, the same
    draws), so that a case's data do not depend on which other tests ran."""
    return trees.seeded_rng


@pytest.fixture(scope="session")
def random_tree() -> Callable[[int, np.random.Generator], Tree]:
    """``random_tree(n, rng)``: a random recursive tree of n nodes, renumbered at random
    (one root, somewhere; parents do not precede their children)."""

    def make(n: int, rng: np.random.Generator) -> Tree:
        return Tree(trees.relabelled(trees.random_recursive(n, rng), rng))

    return make

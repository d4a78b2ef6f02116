"""Small engine models built by hand (no NEURON): shared by the engine's tests."""

from __future__ import annotations

import numpy as np

from dhs.engine import MechanismTable

__all__ = ["random_tree", "table"]


def table(name: str, node, **params) -> MechanismTable:
    """A built-in mechanism's table with one value per parameter (broadcast to every
    instance); hh evaluates its rates exactly (``usetable = 0``)."""
    node = np.atleast_1d(np.asarray(node, dtype=np.int64))
    return MechanismTable(
        name, node, {p: np.broadcast_to(np.asarray(v, float), node.shape).copy()
                     for p, v in params.items()},
        {"usetable": 0.0} if name == "hh" else {},
    )  # fmt: skip


def random_tree(n: int, seed: int, reach: int) -> dict:
    """A branched tree in parent-before-child order with NEURON-like coefficients: the
    ``parent, area, cm, a, b`` of a :class:`CellModel` (node 0 a root without membrane)."""
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(max(0, i - reach), i)) for i in range(1, n)])
    area = rng.uniform(50.0, 500.0, n)
    area[0] = 100.0
    cm = np.where(np.arange(n) == 0, 0.0, 1.0)
    a = -rng.uniform(0.5, 5.0, n)
    b = -rng.uniform(0.5, 5.0, n)
    a[0] = b[0] = 0.0
    return {"parent": parent, "area": area, "cm": cm, "a": a, "b": b}

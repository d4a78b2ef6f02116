"""The CPU kernel's walk over node blocks, on trees whose parents lie many blocks back.

The ``cpu`` assembly runs from the last block of nodes back and eliminates each block as
soon as its rows are complete, handing the terms of a child in a later block to its
parent's row when the parent's block comes (``storage.cross_block_children``). Real
morphologies cross a block only at some branch points; here every node's parent is
drawn from all earlier nodes, so most links cross, and the result is checked against a
dense solve of NEURON's step.
"""

from __future__ import annotations

import numpy as np
import pytest

from dhs import Tree, to_dense
from dhs.engine import CellModel, Engine, RunOptions, storage
from dhs.engine.model import MechanismTable
from engine_models import random_tree

DT = 0.025  # ms


def _passive_cell(n_nodes: int, seed: int) -> CellModel:
    tree = random_tree(n_nodes, seed, reach=n_nodes)
    rng = np.random.default_rng(seed)
    membrane = np.arange(1, n_nodes)
    params = {
        "g": rng.uniform(1e-4, 1e-3, membrane.size),  # S/cm2
        "e": rng.uniform(-90.0, -40.0, membrane.size),  # mV
    }
    pas = MechanismTable("pas", membrane, params)
    return CellModel(mechanisms={"pas": pas}, v_init=-65.0, **tree)


def _dense_run(model: CellModel, n_steps: int) -> np.ndarray:
    """NEURON's fixed step for a passive cell, with the tree matrix solved densely:
    rows ``d x_i + b_i x_parent``, the parent's row ``a_i x_i``; v += x."""
    pas = model.mechanisms["pas"]
    g = np.zeros(model.n)
    e = np.zeros(model.n)
    g[pas.node], e[pas.node] = pas.params["g"], pas.params["e"]
    v = np.full(model.n, model.v_init)
    children = np.flatnonzero(model.parent >= 0)
    parents = model.parent[children]
    tree = Tree(model.parent)
    diagonal = g + 1e-3 / DT * model.cm
    diagonal[children] -= model.b[children]
    np.add.at(diagonal, parents, -model.a[children])
    matrix = to_dense(tree, model.a, model.b, diagonal)
    for _ in range(n_steps):
        rhs = -g * (v - e)
        dv = v[parents] - v[children]
        rhs[children] -= model.b[children] * dv
        np.add.at(rhs, parents, model.a[children] * dv)
        v = v + np.linalg.solve(matrix, rhs)
    return v


@pytest.mark.parametrize("n_nodes, seed", [(300, 1), (517, 2)])
def test_far_parents_match_a_dense_solve(n_nodes, seed):
    model = _passive_cell(n_nodes, seed)
    blocks = storage.node_blocks(n_nodes)
    _, cross_child = storage.cross_block_children(model.parent, blocks)
    assert cross_child.size > n_nodes // 2  # most links cross a block boundary
    n_steps = 40
    expected = _dense_run(model, n_steps)
    for chunk in (1, 4):
        result = Engine(model, 3, chunk=chunk, workers=1).run(
            RunOptions(n_steps * DT, dt=DT, record_nodes=tuple(range(model.n)))
        )
        assert np.abs(result.v[:, :, -1] - expected).max() < 1e-9  # mV
    assert np.abs(expected - model.v_init).max() > 1.0  # the cell moved


def test_cross_block_children_lists_every_crossing_link_once():
    parent = random_tree(700, 5, reach=700)["parent"]
    block_ptr = storage.node_blocks(parent.size)
    cross_ptr, cross_child = storage.cross_block_children(parent, block_ptr)
    block_of = np.searchsorted(block_ptr, np.arange(parent.size), side="right") - 1
    expected = [
        [c for c in range(parent.size) if parent[c] >= 0
         and block_of[parent[c]] == block and block_of[c] != block]
        for block in range(block_ptr.size - 1)
    ]  # fmt: skip
    found = [
        cross_child[cross_ptr[block] : cross_ptr[block + 1]].tolist()
        for block in range(block_ptr.size - 1)
    ]
    assert found == expected

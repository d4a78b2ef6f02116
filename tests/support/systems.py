"""Random Hines systems in NEURON's convention, and a reference solve independent of dhs.

The convention (:mod:`dhs.matrix`): row i reads
``d[i] x[i] + b[i] x[parent[i]] + sum over children c of i: a[c] x[c] = rhs[i]``.

:func:`cable_system` builds what NEURON assembles for a passive cable: node i has an
area ``area[i]`` and an axial conductance ``g[i]`` to its parent, so

* ``b[i] = -g[i] / area[i]`` (the parent's coefficient in row i),
* ``a[i] = -g[i] / area[parent[i]]`` (node i's coefficient in its parent's row),
* ``d[i] = leak[i] + g[i] / area[i] + sum over children c: g[c] / area[i]``,

so every row is strictly diagonally dominant: ``d[i] = leak[i] + sum |off-diagonal|``.
``a`` and ``b`` of a root are never read by a solve; they are filled with large finite
garbage here, so that a solver that reads them gives a wrong answer.

:func:`reference_solve` never calls a dhs solver: dense ``numpy.linalg.solve`` on
:func:`dhs.to_dense` for small trees, ``scipy.sparse.linalg.spsolve`` on a matrix built
here (:func:`sparse_matrix`) for larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

import dhs
from paths import MORPHOLOGIES

__all__ = [
    "DENSE_MAX_N",
    "MORPHOLOGY_DIR",
    "HinesSystem",
    "cable_system",
    "load_morphology",
    "reference_solve",
    "relative_error",
    "sparse_matrix",
]

MORPHOLOGY_DIR = MORPHOLOGIES

# Up to this many nodes the reference is a dense LU solve; above it, a sparse one.
DENSE_MAX_N = 300


@dataclass(frozen=True)
class HinesSystem:
    """One system (d, rhs of shape (n,)) or a batch ((batch, n)); a, b (n,) or (batch, n)."""

    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    rhs: np.ndarray

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.a, self.b, self.d, self.rhs

    def astype(self, dtype) -> HinesSystem:
        return HinesSystem(*(array.astype(dtype) for array in self.arrays))

    def copy(self) -> HinesSystem:
        return self.astype(self.d.dtype)


def load_morphology(name: str) -> dict[str, np.ndarray]:
    """The arrays of ``data/morphologies/<name>.npz`` (parent, NEURON's a, b, d, rhs, ...)."""
    with np.load(MORPHOLOGY_DIR / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def cable_system(
    parent: np.ndarray,
    rng: np.random.Generator,
    batch: int | None = None,
    *,
    per_instance: bool = False,
) -> HinesSystem:
    """A random, strictly diagonally dominant cable system on the tree ``parent``.

    Parameters
    ----------
    parent : int array (n,)
    rng : Generator
    batch : int, optional
        None for one system (every array (n,)); else d and rhs are (batch, n).
    per_instance : bool
        With a batch: a and b are (batch, n), each system its own cable; otherwise they
        are (n,), shared, and only the leak (hence d) and rhs differ between systems.
    """
    parent = np.asarray(parent, np.int64)
    n = parent.size
    rows = 1 if batch is None else batch
    coupling_rows = rows if per_instance else 1
    if per_instance and batch is None:
        raise ValueError("per_instance needs a batch")
    child = np.flatnonzero(parent >= 0)
    roots = np.flatnonzero(parent < 0)

    g = rng.uniform(1.0, 10.0, size=(coupling_rows, n))  # axial conductance to the parent
    area = rng.uniform(0.5, 2.0, size=(coupling_rows, n))
    a = np.empty((coupling_rows, n))
    b = np.empty((coupling_rows, n))
    b[:, child] = -g[:, child] / area[:, child]
    a[:, child] = -g[:, child] / area[:, parent[child]]
    # Never read by a solve: large garbage, so that reading it shows.
    a[:, roots] = rng.uniform(1e3, 1e4, size=(coupling_rows, roots.size))
    b[:, roots] = -rng.uniform(1e3, 1e4, size=(coupling_rows, roots.size))

    coupling_sum = np.zeros((coupling_rows, n))
    coupling_sum[:, child] -= b[:, child]  # own coupling to the parent
    for row in range(coupling_rows):  # children's couplings in their parent's row
        np.add.at(coupling_sum[row], parent[child], -a[row, child])
    leak = rng.uniform(0.05, 0.5, size=(rows, n))
    d = leak + coupling_sum
    rhs = rng.standard_normal((rows, n))
    if batch is None:
        return HinesSystem(a[0], b[0], d[0], rhs[0])
    if not per_instance:
        a, b = a[0], b[0]
    return HinesSystem(a, b, d, rhs)


def sparse_matrix(parent: np.ndarray, a: np.ndarray, b: np.ndarray, d: np.ndarray):
    """The (n, n) matrix of one system as ``scipy.sparse`` CSC, built from the convention."""
    parent = np.asarray(parent, np.int64)
    n = parent.size
    child = np.flatnonzero(parent >= 0)
    rows = np.concatenate([np.arange(n), child, parent[child]])
    cols = np.concatenate([np.arange(n), parent[child], child])
    values = np.concatenate(
        [np.asarray(d, np.float64), np.asarray(b, np.float64)[child], np.asarray(a)[child]]
    )
    return scipy.sparse.coo_matrix((values, (rows, cols)), shape=(n, n)).tocsc()


def reference_solve(parent: np.ndarray, system: HinesSystem) -> np.ndarray:
    """Solve in float64 without dhs's solvers; the result is shaped like ``system.rhs``."""
    parent = np.asarray(parent, np.int64)
    n = parent.size
    tree = dhs.Tree(parent)
    d = np.asarray(system.d, np.float64).reshape(-1, n)
    rhs = np.asarray(system.rhs, np.float64).reshape(-1, n)
    a = np.asarray(system.a, np.float64).reshape(-1, n)
    b = np.asarray(system.b, np.float64).reshape(-1, n)
    x = np.empty_like(rhs)
    for row in range(rhs.shape[0]):
        coupling = row if a.shape[0] > 1 else 0
        if n <= DENSE_MAX_N:
            matrix = dhs.to_dense(tree, a[coupling], b[coupling], d[row])
            x[row] = np.linalg.solve(matrix, rhs[row])
        else:
            matrix = sparse_matrix(parent, a[coupling], b[coupling], d[row])
            x[row] = scipy.sparse.linalg.spsolve(matrix, rhs[row])
    return x.reshape(np.shape(system.rhs))


def relative_error(x: np.ndarray, reference: np.ndarray) -> float:
    """``max |x - reference| / max |reference|``, computed in float64."""
    x = np.asarray(x, np.float64)
    reference = np.asarray(reference, np.float64)
    return float(np.max(np.abs(x - reference)) / np.max(np.abs(reference)))

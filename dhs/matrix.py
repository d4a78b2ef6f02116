"""The Hines matrix convention, input checks and a dense reference.

Matrix convention
-----------------
Every solver in :mod:`dhs` uses NEURON's convention. For a tree with ``parent`` array
``p``, row i of the system reads::

    d[i] * x[i]  +  b[i] * x[p[i]]  +  sum over children c of i:  a[c] * x[c]  =  rhs[i]

* ``a[c]`` belongs to the child c but sits in its parent's row (the upper triangle in a
  parent-before-child numbering); ``b[i]`` is the parent's coefficient in row i.
* ``a`` and ``b`` of a root are not used (a root has no parent).
* The solvers are unit-agnostic: x has the units of ``rhs / d``. With the arrays NEURON
  assembles (mS/cm² and mA/cm² for segment rows, µS and nA for zero-area rows), x is the
  voltage change Δv in mV.

Shapes
------
``d`` and ``rhs`` are ``(n,)`` for one system or ``(batch, n)`` for a batch; ``a`` and
``b`` are ``(n,)``, shared by the whole batch, or ``(batch, n)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tree import Tree

__all__ = ["System", "check_system", "diagnose_failure", "to_dense"]


@dataclass(frozen=True)
class System:
    """Checked inputs as 2-D arrays: ``a``, ``b`` (1 or batch, n); ``d``, ``rhs`` (batch, n)."""

    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    rhs: np.ndarray
    batched: bool  # False when d and rhs were given as (n,)
    coupling_per_system: bool = False  # True when a and b were given as (batch, n)

    @property
    def batch(self) -> int:
        return self.d.shape[0]


def _as_float_array(name: str, value, dtype: np.dtype) -> np.ndarray:
    if type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous:
        return value  # the common case, checked cheaply (a solve can take microseconds)
    array = np.asarray(value)
    if (
        array.dtype == object
        or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
        or array.dtype == bool
    ):
        raise ValueError(f"{name} must be a real floating-point array, got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{name} has integer dtype {array.dtype}; pass floating-point values "
            f"(the solver computes in {np.dtype(dtype).name})"
        )
    return np.ascontiguousarray(array, dtype=dtype)


def check_system(tree: Tree, a, b, d, rhs, dtype=np.float64) -> System:
    """Check shapes and dtypes against ``tree`` and return 2-D C-contiguous views.

    Arrays already of ``dtype`` and C-contiguous are not copied. Values are not checked
    here: the solvers check finiteness while they read, and :func:`diagnose_failure`
    names the culprit when they report a problem.

    Raises
    ------
    ValueError
        Naming the array whose shape or dtype is wrong.
    """
    n = tree.n
    arrays = {
        name: _as_float_array(name, value, dtype)
        for name, value in (("a", a), ("b", b), ("d", d), ("rhs", rhs))
    }
    d2, rhs2 = arrays["d"], arrays["rhs"]
    if d2.shape != rhs2.shape:
        raise ValueError(f"d has shape {d2.shape} but rhs has shape {rhs2.shape}; they must match")
    if d2.ndim not in (1, 2) or d2.shape[-1] != n:
        raise ValueError(
            f"d and rhs must have shape ({n},) or (batch, {n}) for this {n}-node tree, "
            f"got {d2.shape}"
        )
    batched = d2.ndim == 2
    batch = d2.shape[0] if batched else 1
    if batched and batch == 0:
        raise ValueError("d and rhs have an empty batch (shape (0, n))")
    for name in ("a", "b"):
        array = arrays[name]
        allowed = [(n,)] + ([(batch, n)] if batched else [])
        if array.shape not in allowed:
            raise ValueError(
                f"{name} has shape {array.shape}; expected "
                + " or ".join(str(shape) for shape in allowed)
            )
    if arrays["a"].shape != arrays["b"].shape:
        raise ValueError(
            f"a has shape {arrays['a'].shape} but b has shape {arrays['b'].shape}; "
            "they must both be shared (n,) or both per instance (batch, n)"
        )
    two_d = {name: array.reshape(-1, n) for name, array in arrays.items()}
    return System(batched=batched, coupling_per_system=arrays["a"].ndim == 2, **two_d)


def to_dense(tree: Tree, a: np.ndarray, b: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The (n, n) dense matrix of one system, for tests and small examples."""
    matrix = np.diag(np.asarray(d, dtype=np.float64))
    child = np.flatnonzero(tree.parent >= 0)
    parent = tree.parent[child]
    matrix[child, parent] = np.asarray(b)[child]
    matrix[parent, child] = np.asarray(a)[child]
    return matrix


def diagnose_failure(tree: Tree, system: System, rows=None) -> ValueError:
    """Explain why a solve produced non-finite values: a bad input or a zero pivot.

    Called only after a solver reported a problem, so it may be slow. ``rows`` narrows
    the search to the batch rows the solver flagged.
    """
    n = tree.n
    for name in ("a", "b", "d", "rhs"):
        array = getattr(system, name)
        bad = np.argwhere(~np.isfinite(array))
        if bad.size:
            row, node = (int(v) for v in bad[0])
            indexed_by_row = system.batched and (name in ("d", "rhs") or system.coupling_per_system)
            where = f"{name}[{row}, {node}]" if indexed_by_row else f"{name}[{node}]"
            return ValueError(
                f"{where} is {array[row, node]} (not finite); {len(bad)} non-finite "
                f"value(s) in {name}"
            )
    # Eliminate in the solve's dtype, so that a pivot that is 0 in float32 is found.
    for row in range(system.batch) if rows is None else rows:
        a = system.a[min(row, system.a.shape[0] - 1)]
        b = system.b[min(row, system.b.shape[0] - 1)]
        pivot = system.d[row].copy()
        for i in tree.order[::-1]:
            p = tree.parent[i]
            if pivot[i] == 0.0:
                where = f" in system {row}" if system.batched else ""
                return ValueError(
                    f"zero pivot at node {int(i)}{where}: after eliminating its subtree "
                    f"d[{int(i)}] is 0, so the matrix is singular"
                )
            if p >= 0:
                factor = a[i] / pivot[i]
                pivot[p] -= factor * b[i]
    return ValueError(
        f"the solution of this {n}-node system is not finite although all inputs are "
        "finite and no pivot is exactly 0: the matrix is too ill-conditioned for the dtype"
    )

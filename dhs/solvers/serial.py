"""The reference serial Hines solve (Numba), in the tree's own numbering.

It is deliberately plain: one system after another, one node after another, in a
breadth-first (parent-before-child) order of the tree. It is the baseline that the
parallel solvers are measured and tested against. Matrix convention: :mod:`dhs.matrix`.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["hines_solve"]


@numba.njit(cache=True, error_model="numpy")
def hines_solve(parent, order, a, b, d, rhs, x, failed):
    """Solve every row of a batch; ``x`` receives the solutions.

    Parameters
    ----------
    parent, order : int64 arrays (n,)
        The tree and a parent-before-child order of its nodes.
    a, b : (1 or batch, n) arrays
        Coupling coefficients, shared when they have one row.
    d, rhs, x : (batch, n) arrays
        Diagonal and right-hand side (read only) and the solution (written).
    failed : bool array (batch,)
        Set for each row whose pivots or solution contain a non-finite value (a zero
        pivot or a non-finite input gives one); the caller then diagnoses the row.
    """
    n = parent.size
    pivot = np.empty(n, d.dtype)
    for row in range(d.shape[0]):
        coupling_row = row if a.shape[0] > 1 else 0
        ar = a[coupling_row]
        br = b[coupling_row]
        xr = x[row]
        for i in range(n):
            pivot[i] = d[row, i]
            xr[i] = rhs[row, i]
        for position in range(n - 1, -1, -1):
            i = order[position]
            p = parent[i]
            if p >= 0:
                factor = ar[i] / pivot[i]
                pivot[p] -= factor * br[i]
                xr[p] -= factor * xr[i]
        # x * 0 is 0 for finite x and nan otherwise. Any non-finite d, rhs, or a, b of a
        # non-root node makes a pivot or a solution value non-finite.
        check = 0.0
        for position in range(n):
            i = order[position]
            p = parent[i]
            if p >= 0:
                xr[i] = (xr[i] - br[i] * xr[p]) / pivot[i]
            else:
                xr[i] = xr[i] / pivot[i]
            check += xr[i] * 0.0 + pivot[i] * 0.0
        failed[row] = check != 0.0

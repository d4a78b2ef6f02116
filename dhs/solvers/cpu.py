"""The fast exact CPU solves. Matrix convention: :mod:`dhs.matrix`.

Both kernels solve independent systems side by side, parallel over work items with
``prange``; :class:`dhs.solver.Solver` picks one (why: ``dhs/DESIGN.md``).

* :func:`tiled_solve`, for batches of at least :data:`WIDTH` systems: tiles of ``WIDTH``
  systems gathered node-major into per-thread scratch, solved with vectorised inner
  loops over the tile, scattered back.
* :func:`interleaved_solve`, for fewer systems: solved in place in the output rows,
  interleaved node by node, with whole cells as work items.

Both walk the nodes in a parent-before-child order close to memory order.
"""

from __future__ import annotations

import types

import numba
import numpy as np

__all__ = [
    "DEFAULT_TILE",
    "WIDTH",
    "interleaved_solve",
    "interleaved_solve_one_thread",
    "tiled_solve",
    "tiled_solve_one_thread",
]

# Systems per tile of tiled_solve: a compile-time constant so that the inner loops
# vectorise (8 doubles = one AVX-512 register); 8 also measured best for the
# interleaved kernel on a 2-core Zen 4.
WIDTH = 8
DEFAULT_TILE = 8

# Below this many node-solves per call the one-thread kernels run: waking Numba's thread
# pool between the steps of a NEURON run cost milliseconds per call here (measured: a
# two-cell, 168-node model took 10 ms per step with threads and 0.1 ms without).
PARALLEL_MIN_NODES = 100_000


@numba.njit(parallel=True, cache=True, error_model="numpy")
def tiled_solve(
    order, parent_position, a, b, d, rhs, x, pivot_scratch, value_scratch, failed_tiles
):
    """Solve a batch in node-major tiles of :data:`WIDTH` systems.

    Parameters
    ----------
    order : int64 array (n,)
        All nodes in a parent-before-child order; scratch row k holds node ``order[k]``.
    parent_position : int64 array (n,)
        Scratch row of the parent of ``order[k]``, or -1 for a root.
    a, b : (1 or batch, n) arrays in the tree's numbering
    d, rhs : (batch, n) arrays in the tree's numbering (read only)
    x : (batch, n) array, receives the solution; may be ``rhs`` itself
    pivot_scratch, value_scratch : arrays (workers, n, WIDTH), overwritten
    failed_tiles : bool array (n_tiles,)
        Set for each tile whose pivots or solution are not all finite. Any non-finite
        d, rhs, or a, b of a non-root node makes one of them non-finite.
    """
    workers = pivot_scratch.shape[0]
    n = order.size
    batch = d.shape[0]
    shared = a.shape[0] == 1
    tiles = (batch + WIDTH - 1) // WIDTH
    for worker in numba.prange(workers):
        pivot = pivot_scratch[worker]
        value = value_scratch[worker]
        check = np.zeros(WIDTH)
        coupling_a = np.zeros((n, WIDTH)) if not shared else np.zeros((0, WIDTH))
        coupling_b = np.zeros((n, WIDTH)) if not shared else np.zeros((0, WIDTH))
        for tile in range(worker, tiles, workers):
            first = tile * WIDTH
            width = min(WIDTH, batch - first)
            # Gather node by node: WIDTH sequential read streams, contiguous writes.
            # Missing systems of the last tile are padded with the identity.
            for k in range(n):
                node = order[k]
                for q in range(width):
                    pivot[k, q] = d[first + q, node]
                    value[k, q] = rhs[first + q, node]
                for q in range(width, WIDTH):
                    pivot[k, q] = 1.0
                    value[k, q] = 0.0
                if not shared:
                    for q in range(width):
                        coupling_a[k, q] = a[first + q, node]
                        coupling_b[k, q] = b[first + q, node]
                    for q in range(width, WIDTH):
                        coupling_a[k, q] = 0.0
                        coupling_b[k, q] = 0.0
            # Triangularise, children before parents.
            for k in range(n - 1, -1, -1):
                up = parent_position[k]
                if up < 0:
                    continue
                if shared:
                    a_k = a[0, order[k]]
                    b_k = b[0, order[k]]
                    for q in range(WIDTH):
                        factor = a_k / pivot[k, q]
                        pivot[up, q] -= factor * b_k
                        value[up, q] -= factor * value[k, q]
                else:
                    for q in range(WIDTH):
                        factor = coupling_a[k, q] / pivot[k, q]
                        pivot[up, q] -= factor * coupling_b[k, q]
                        value[up, q] -= factor * value[k, q]
            # Back-substitute, parents before children. x * 0 is 0 for finite x and
            # nan otherwise; one accumulator per system keeps the loop vectorisable.
            for q in range(WIDTH):
                check[q] = 0.0
            for k in range(n):
                up = parent_position[k]
                if up < 0:
                    for q in range(WIDTH):
                        value[k, q] = value[k, q] / pivot[k, q]
                elif shared:
                    b_k = b[0, order[k]]
                    for q in range(WIDTH):
                        value[k, q] = (value[k, q] - b_k * value[up, q]) / pivot[k, q]
                else:
                    for q in range(WIDTH):
                        value[k, q] = (value[k, q] - coupling_b[k, q] * value[up, q]) / pivot[k, q]
                for q in range(WIDTH):
                    check[q] += value[k, q] * 0.0 + pivot[k, q] * 0.0
            finite = True
            for q in range(WIDTH):
                finite = finite and check[q] == 0.0
            failed_tiles[tile] = not finite
            for k in range(n):
                node = order[k]
                for q in range(width):
                    x[first + q, node] = value[k, q]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def interleaved_solve(
    order, parent, group_ptr, a, b, d, rhs, x, pivot_scratch, lane_check, failed_items
):
    """Solve a batch; see the module docstring.

    Parameters
    ----------
    order : int64 array (n,)
        Tree nodes, group after group, each group in a parent-before-child order.
    parent : int64 array (n,)
        The tree's parent array (its own numbering).
    group_ptr : int64 array (n_groups + 1,)
        Group g is ``order[group_ptr[g]:group_ptr[g + 1]]``, closed under parents.
    a, b : (1 or batch, n) arrays in the tree's numbering
    d, rhs : (batch, n) arrays in the tree's numbering (read only)
    x : (batch, n) array, receives the solution; may be ``rhs`` itself
    pivot_scratch : array (workers, tile, n), overwritten
    lane_check : array (workers, tile), overwritten
    failed_items : bool array (n_groups * n_tiles,)
        Set for each work item whose pivots or solution are not all finite. Any
        non-finite d, rhs, or a, b of a non-root node makes one of them non-finite.
    """
    workers = pivot_scratch.shape[0]
    tile = pivot_scratch.shape[1]
    batch = d.shape[0]
    shared = a.shape[0] == 1
    tiles = (batch + tile - 1) // tile
    n_items = (group_ptr.size - 1) * tiles
    for worker in numba.prange(workers):
        pivot = pivot_scratch[worker]
        check = lane_check[worker]
        for item in range(worker, n_items, workers):
            group = item // tiles
            first = (item % tiles) * tile
            width = min(tile, batch - first)
            lo = group_ptr[group]
            hi = group_ptr[group + 1]
            for q in range(width):
                row = first + q
                check[q] = 0.0
                for position in range(lo, hi):
                    i = order[position]
                    pivot[q, i] = d[row, i]
                    x[row, i] = rhs[row, i]
            # Triangularise, children before parents.
            for position in range(hi - 1, lo - 1, -1):
                i = order[position]
                p = parent[i]
                if p < 0:
                    continue
                for q in range(width):
                    row = first + q
                    coupling = 0 if shared else row
                    factor = a[coupling, i] / pivot[q, i]
                    pivot[q, p] -= factor * b[coupling, i]
                    x[row, p] -= factor * x[row, i]
            # Back-substitute, parents before children. x * 0 is 0 for finite x and nan
            # otherwise: one accumulator per system, so no dependency across systems.
            for position in range(lo, hi):
                i = order[position]
                p = parent[i]
                for q in range(width):
                    row = first + q
                    if p >= 0:
                        coupling = 0 if shared else row
                        solution = (x[row, i] - b[coupling, i] * x[row, p]) / pivot[q, i]
                    else:
                        solution = x[row, i] / pivot[q, i]
                    x[row, i] = solution
                    check[q] += solution * 0.0 + pivot[q, i] * 0.0
            finite = True
            for q in range(width):
                finite = finite and check[q] == 0.0
            failed_items[item] = not finite


def _one_thread_twin(kernel):
    """The same kernel compiled without the thread pool (waking it cost more than a
    small solve: 225 µs against 35 µs for 168 nodes).

    The twin is a renamed copy of the Python function: Numba's disk cache is keyed by
    the function's qualified name, and a shared name would let one build be served for
    the other.
    """
    body = kernel.py_func
    twin = types.FunctionType(
        body.__code__, body.__globals__, f"{body.__name__}_one_thread", body.__defaults__,
        body.__closure__,
    )  # fmt: skip
    twin.__qualname__ = f"{body.__qualname__}_one_thread"
    twin.__doc__ = body.__doc__
    return numba.njit(cache=True, error_model="numpy")(twin)


tiled_solve_one_thread = _one_thread_twin(tiled_solve)
interleaved_solve_one_thread = _one_thread_twin(interleaved_solve)

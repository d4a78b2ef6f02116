"""The fast exact CPU solve: several systems interleaved, parallel over work items.

A work item is one *group* of nodes (a set of whole cells, in a parent-before-child
order) for a tile of up to ``tile`` systems of the batch. The item's systems are
solved in place in the output rows, one node at a time for all of them: their
operations are independent, so the core overlaps the divide latency that limits a
serial Hines solve, while each row is still walked sequentially through memory.

Two orders serve as groups (chosen in :class:`dhs.solver.Solver`):

* for large batches, one group holding the whole tree in a memory-friendly
  parent-before-child order (the tree's own numbering when it is one already);
* for a single system or a few, each cell in its DHS order (:mod:`dhs.layout`):
  consecutive nodes of a step are independent, which gives instruction-level
  parallelism, and the cells of a forest are spread over the cores.

No data is transposed: traffic per node is d and rhs read once, x written once,
a and b read once (or once per batch when shared). Matrix convention: :mod:`dhs.matrix`.
"""

from __future__ import annotations

import numba

__all__ = ["DEFAULT_TILE", "interleaved_solve"]

# Systems interleaved per work item; 8 measured best on a 2-core Zen 4 (REFERENCE §3).
DEFAULT_TILE = 8


@numba.njit(parallel=True, cache=True)
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

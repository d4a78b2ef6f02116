"""The fast exact CPU solve: DHS numbering, tiles of systems, parallel over tiles.

A work item is one component (cell) of the tree for a tile of up to ``tile`` systems
of the batch. The item's values are gathered, node-major, into per-thread scratch
(``scratch[worker, array, node, system]``), so that the inner loops run over the
tile's systems: they are independent, contiguous and vectorise, which hides the
divide latency that limits a serial Hines solve. The nodes follow the DHS layout
(:mod:`dhs.layout`); for a single system, consecutive nodes of one step are
independent too, which gives the core instruction-level parallelism.

Memory traffic per node is what the bandwidth bound assumes: d and rhs read once,
x written once, a and b read once (or once per batch when shared); the two passes
over the tile run in cache. Matrix convention: :mod:`dhs.matrix`.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["DEFAULT_TILE", "scratch_shape", "tiled_solve"]

DEFAULT_TILE = 8
SCRATCH_ARRAYS = 4  # a, b, d (pivots), rhs (becomes x)


def scratch_shape(workers: int, max_component: int, tile: int) -> tuple[int, int, int, int]:
    return (workers, SCRATCH_ARRAYS, max_component, tile)


@numba.njit(parallel=True, cache=True)
def tiled_solve(node_of, parent, node_ptr, a, b, d, rhs, x, scratch, failed_items):
    """Solve a batch; see the module docstring.

    Parameters
    ----------
    node_of, parent, node_ptr : int64 arrays
        From :class:`dhs.layout.Layout`: new index -> tree node, parents in the new
        numbering, and each component's range of new indices.
    a, b : (1 or batch, n) arrays in the tree's numbering
    d, rhs : (batch, n) arrays in the tree's numbering (read only)
    x : (batch, n) array, receives the solution; may be ``rhs`` itself
    scratch : array of shape ``scratch_shape(workers, max_component, tile)``
    failed_items : bool array (n_components * n_tiles,)
        Set for each work item that met a non-finite value.
    """
    workers = scratch.shape[0]
    tile = scratch.shape[3]
    batch = d.shape[0]
    shared = a.shape[0] == 1
    tiles = (batch + tile - 1) // tile
    n_items = (node_ptr.size - 1) * tiles
    for worker in numba.prange(workers):
        coupling_a = scratch[worker, 0]
        coupling_b = scratch[worker, 1]
        pivot = scratch[worker, 2]
        value = scratch[worker, 3]
        for item in range(worker, n_items, workers):
            component = item // tiles
            first = (item % tiles) * tile
            width = min(tile, batch - first)
            lo = node_ptr[component]
            size = node_ptr[component + 1] - lo
            check = 0.0
            # Gather: each system's row is read contiguously (permuted within the cell).
            for q in range(width):
                row = first + q
                coupling_row = 0 if shared else row
                for local in range(size):
                    node = node_of[lo + local]
                    av = a[coupling_row, node]
                    bv = b[coupling_row, node]
                    dv = d[row, node]
                    rv = rhs[row, node]
                    coupling_a[local, q] = av
                    coupling_b[local, q] = bv
                    pivot[local, q] = dv
                    value[local, q] = rv
                    check += av * 0.0 + bv * 0.0 + dv * 0.0 + rv * 0.0
            # Triangularise: children have larger new indices than their parents.
            for local in range(size - 1, 0, -1):
                up = parent[lo + local] - lo
                for q in range(width):
                    factor = coupling_a[local, q] / pivot[local, q]
                    pivot[up, q] -= factor * coupling_b[local, q]
                    value[up, q] -= factor * value[local, q]
            for q in range(width):
                value[0, q] = value[0, q] / pivot[0, q]
            # Back-substitute from the root.
            for local in range(1, size):
                up = parent[lo + local] - lo
                for q in range(width):
                    value[local, q] = (
                        value[local, q] - coupling_b[local, q] * value[up, q]
                    ) / pivot[local, q]
            for q in range(width):
                row = first + q
                for local in range(size):
                    solution = value[local, q]
                    x[row, node_of[lo + local]] = solution
                    check += solution * 0.0
            failed_items[item] = check != 0.0

"""The engine's storage: chunk-major arrays, node blocks and the DHS numbering.

Everything a generated kernel (:mod:`dhs.engine.kernel`) reads is built here from a
:class:`~dhs.engine.model.CellModel` and the per-instance values of an
:class:`~dhs.engine.integrate.Engine`:

* **chunk-major storage** ``(n_chunks, rows, width)``: the instances innermost, one block
  of memory per chunk (the CPU's vectorised loops over :data:`WIDTH` instances, or one; CUDA's one
  chunk as wide as the batch for ``thread``, or one chunk per instance for ``lanes``);
* **node blocks** (``cpu``, ``thread``): the nodes in runs of :data:`NODE_BLOCK`, and for
  every mechanism and ion the rows at each block's nodes, so a step works through the
  tree block by block while the block's data are in cache;
* **the DHS numbering** (``lanes``): the nodes renumbered by :func:`dhs.layout.dhs_layout`
  so that every Hu step is a contiguous run; rows keep their order, their nodes are
  renumbered.

The design note is ``dhs/engine/DESIGN.md``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..layout import Layout, dhs_layout
from ..tree import Tree
from .model import CellModel

__all__ = [
    "NODE_BLOCK",
    "WIDTH",
    "aligned_empty",
    "auto_width",
    "block_bounds",
    "build_table",
    "chunk_major",
    "chunk_plan",
    "cross_block_children",
    "default_workers",
    "dhs_numbering",
    "instance_bytes",
    "slots",
]

CACHE_LINE = 64  # bytes
#: Nodes per block of the ``cpu``/``thread`` schemes' passes over the tree.
NODE_BLOCK = 64
#: The widest CPU chunk (instances in the inner, vectorised loop). Measured on one core,
#: µs per instance-step, chunks of 16 / 32 / 64 / 128: the 1,399-node demo cell 7.5 / 5.3 /
#: 4.4 / 4.0, the L5PC 43.5 / 39.1 / 37.4 / 36.1. A node's loops have a fixed cost (its
#: indices, the overlap checks, the vector loop's set-up) that wider chunks share out.
#: Large models too, now that a step makes two passes over the state (assembly with
#: elimination, then back-substitution with the states): the 24,635-node demo cell at 2
#: workers and 128 instances, ns per node and instance-step with chunks of 8 / 16 / 32 /
#: 64: 4.8 / 3.9 / 3.0 / 2.7 (with three passes, 8 had been the best).
WIDTH = 64


def aligned_empty(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data start on a cache line."""
    size = math.prod(shape)
    itemsize = np.dtype(dtype).itemsize
    buffer = np.empty(size + CACHE_LINE // itemsize, dtype)
    offset = (-buffer.ctypes.data % CACHE_LINE) // itemsize
    return buffer[offset : offset + size].reshape(shape)


def chunk_plan(n_instances: int, width: int, workers: int) -> tuple[np.ndarray, list[int]]:
    """How the CPU engine splits the instances into chunks and the chunks into workers.

    The instances are split into ``workers`` contiguous groups of equal size (within 1),
    and each group into chunks of ``width`` instances and one narrower last chunk, so
    every worker gets the same work.

    Returns
    -------
    starts : ndarray of int64, shape (n_chunks + 1,)
        Chunk c holds instances ``starts[c] .. starts[c + 1] - 1``.
    bounds : list of int, length ``workers + 1``
        Worker w runs chunks ``bounds[w] .. bounds[w + 1] - 1``.
    """
    starts = [0]
    bounds = [0]
    for w in range(workers):
        end = (w + 1) * n_instances // workers
        while starts[-1] < end:
            starts.append(min(end, starts[-1] + width))
        bounds.append(len(starts) - 1)
    return np.array(starts, dtype=np.int64), bounds


def chunk_major(values: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``(..., N)`` -> ``(n_chunks, ..., width)``: chunk c holds instances ``starts[c] ..``
    in its first columns; the columns past them repeat its last instance (finite
    numbers, never read)."""
    values = np.asarray(values, dtype=np.float64)
    n_chunks = starts.size - 1
    out = aligned_empty((n_chunks, *values.shape[:-1], width))
    for c in range(n_chunks):
        start, stop = starts[c], starts[c + 1]
        out[c, ..., : stop - start] = values[..., start:stop]
        out[c, ..., stop - start :] = values[..., stop - 1 : stop]
    return out


def slots(starts: np.ndarray, width: int) -> np.ndarray:
    """Instance q's row in a chunk-major array viewed as ``(n_chunks * width, ...)``."""
    counts = np.diff(starts)
    chunk = np.repeat(np.arange(counts.size), counts)
    return chunk * width + (np.arange(starts[-1]) - starts[chunk])


def default_workers() -> int:
    """CPU threads for a run: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def instance_bytes(model: CellModel) -> tuple[int, int]:
    """Bytes one instance of ``model`` holds in the engine: (parameters, state).

    Derived from the mechanism descriptions, as the generated kernel stores them:
    parameters are cm per node and v_init; state is v, rhs and d per node, every
    mechanism instance's stored fields (:attr:`Mechanism.fields` less the optional
    assigned ones), two assembly terms per instance with a current, five fields per ion
    node, the final v and a spike flag.
    """
    n = model.n
    fields = 0
    terms = 0
    for table in model.mechanisms.values():
        mechanism = table.mechanism
        optional = set(mechanism.translation.optional)
        fields += table.count * sum(1 for f in mechanism.fields if f not in optional)
        if mechanism.has_current:
            terms += 2 * table.count
    ions = sum(5 * table.node.size for table in model.ions.values())
    parameters = 8 * (n + 1)
    state = 8 * (3 * n + fields + terms + ions + n) + 9  # v, rhs, d; fields; v_final; flag
    return parameters, state


def auto_width(n_instances: int, workers: int = 1) -> int:
    """The CPU chunk width: :data:`WIDTH`, and never wider than a worker's share of the
    instances (a single instance gets a chunk of one, and with it a path without loops
    over instances)."""
    return max(1, min(WIDTH, -(-n_instances // max(1, workers))))


def block_bounds(nodes: np.ndarray, block_ptr: np.ndarray) -> np.ndarray:
    """For rows sorted by node: row ``bounds[b]`` is the first at or after block b's
    first node (``bounds[-1]`` = the number of rows)."""
    return np.searchsorted(nodes, block_ptr, side="left").astype(np.int64)


def node_blocks(n_nodes: int) -> np.ndarray:
    """``block_ptr``: block b holds nodes ``block_ptr[b] .. block_ptr[b + 1] - 1``."""
    return np.append(np.arange(0, n_nodes, NODE_BLOCK), n_nodes).astype(np.int64)


def cross_block_children(
    parent: np.ndarray, block_ptr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The children whose parent lies in an earlier block, grouped by the parent's block.

    The ``cpu``/``thread`` assembly walks the blocks from the last one back and
    eliminates each block right after assembling it; a child in a later block adds its
    terms to its parent's row when the parent's block comes, after the parent's own.

    Returns
    -------
    cross_ptr : ndarray of int64, shape (n_blocks + 1,)
        Block b's entries are ``cross_child[cross_ptr[b] .. cross_ptr[b + 1] - 1]``.
    cross_child : ndarray of int64
        Child nodes, in increasing index within a block.
    """
    parent = np.asarray(parent, dtype=np.int64)
    nodes = np.arange(parent.size, dtype=np.int64)
    child_block = np.searchsorted(block_ptr, nodes, side="right") - 1
    has_parent = parent >= 0
    parent_block = np.full(parent.size, -1, np.int64)
    parent_block[has_parent] = np.searchsorted(block_ptr, parent[has_parent], side="right") - 1
    crossing = has_parent & (parent_block != child_block)
    children = nodes[crossing]
    order = np.argsort(parent_block[crossing], kind="stable")  # children stay increasing
    counts = np.bincount(parent_block[crossing], minlength=block_ptr.size - 1)
    cross_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return cross_ptr, children[order]


def point_order(nodes: np.ndarray) -> np.ndarray:
    """A point process's rows sorted by node, stably (NEURON's order among the ones at
    one node, which is the order their currents are summed in)."""
    return np.argsort(nodes, kind="stable").astype(np.int64)


def unit_ptr(sorted_nodes: np.ndarray) -> np.ndarray:
    """Bounds, in the sorted rows, of the runs of rows at one node."""
    if sorted_nodes.size == 0:
        return np.zeros(1, np.int64)
    starts = np.flatnonzero(np.diff(sorted_nodes)) + 1
    return np.concatenate([[0], starts, [sorted_nodes.size]]).astype(np.int64)


def dhs_numbering(model: CellModel, lanes: int) -> Layout:
    """The DHS layout of the model's tree for ``lanes`` lanes per cell."""
    return dhs_layout(Tree(model.parent), lanes)


def build_table(mechanism, spec, globals_: dict, celsius: float) -> tuple[np.ndarray, np.ndarray]:
    """A TABLE's values, built as NEURON builds it (from the GLOBALs and celsius)."""
    build = getattr(mechanism.module, f"build_{spec.function}")
    out = np.zeros((len(spec.variables), spec.points + 1))
    known = {"celsius": celsius, **globals_}
    missing = [name for name in spec.inputs if name not in known]
    if missing:
        raise ValueError(
            f"{mechanism.name}: the TABLE of {spec.function} depends on {missing}, "
            "which are not GLOBALs"
        )
    low, mfac = build(out, *[known[name] for name in spec.inputs])
    return out, np.array([low, mfac])

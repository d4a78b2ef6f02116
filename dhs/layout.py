"""Node permutations that make each DHS step a contiguous run of memory.

The solvers renumber the nodes once per topology:

* each component (cell) gets a contiguous range of new indices, in root order;
* inside a component the new index is the *reverse* of Hu's elimination order, so the
  root comes first, every parent precedes its children (a valid Hines numbering), and
  each step's nodes are adjacent. A GPU warp therefore reads one step with contiguous
  (coalesced) loads, and a CPU core finds independent nodes next to each other.

Each component gets its own Hu schedule (:func:`dhs.schedule.schedule`, the single
source of the step order): on a GPU one block runs one cell, so steps never mix cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import instance_of, thread_count
from .schedule import schedule
from .tree import Tree

__all__ = ["Layout", "dhs_layout"]


@dataclass(frozen=True)
class Layout:
    """The DHS numbering of a tree and its per-component step tables.

    Attributes
    ----------
    threads : int
        k used for every component's schedule.
    node_of : ndarray of int64, shape (n,)
        ``node_of[j]`` is the tree's node at new index j.
    index_of : ndarray of int64, shape (n,)
        Inverse of ``node_of``.
    parent : ndarray of int64, shape (n,)
        Parents in the new numbering; ``parent[j] < j`` for every non-root j.
    child_ptr, child_index : ndarray of int64
        Children in the new numbering, CSR form; each parent's children in decreasing
        tree index (the order serial Hines eliminates them in).
    node_ptr : ndarray of int64, shape (n_components + 1,)
        Component c owns new indices ``node_ptr[c]:node_ptr[c + 1]``; its root is
        ``node_ptr[c]``.
    step_ptr : ndarray of int64, shape (n_components + 1,)
        Component c's steps are ``step_lo[s]:step_hi[s]`` for s in
        ``range(step_ptr[c], step_ptr[c + 1])``, in elimination order (leaves first).
    step_lo, step_hi : ndarray of int64
        New-index bounds of every step; ``step_hi - step_lo <= threads``.
    """

    threads: int
    node_of: np.ndarray
    index_of: np.ndarray
    parent: np.ndarray
    child_ptr: np.ndarray
    child_index: np.ndarray
    node_ptr: np.ndarray
    step_ptr: np.ndarray
    step_lo: np.ndarray
    step_hi: np.ndarray

    @property
    def n(self) -> int:
        return int(self.node_of.size)

    @property
    def n_components(self) -> int:
        return int(self.node_ptr.size - 1)

    @property
    def component_sizes(self) -> np.ndarray:
        return np.diff(self.node_ptr)

    @property
    def component_steps(self) -> np.ndarray:
        """Elimination steps of each component (back-substitution takes as many)."""
        return np.diff(self.step_ptr)


def dhs_layout(tree: Tree, threads: int) -> Layout:
    """Renumber ``tree`` so that each component's Hu steps are contiguous.

    Parameters
    ----------
    tree : Tree
    threads : int
        k for the per-component Hu schedules.
    """
    instance_of("tree", tree, Tree, "a dhs.Tree")
    threads = thread_count("threads", threads)
    node_of = np.empty(tree.n, np.int64)
    node_ptr = np.zeros(tree.n_components + 1, np.int64)
    step_lo_parts, step_hi_parts = [], []
    step_ptr = np.zeros(tree.n_components + 1, np.int64)
    start = 0
    for c, nodes in enumerate(tree.component_nodes()):
        component_schedule = schedule(tree.subtree(nodes), threads)
        end = start + nodes.size
        # Reverse elimination order: the root lands at `start`, leaves of step 0 at the end.
        node_of[start:end] = nodes[component_schedule.order[::-1]]
        bounds = component_schedule.step_ptr
        step_lo_parts.append(end - bounds[1:])
        step_hi_parts.append(end - bounds[:-1])
        node_ptr[c + 1] = end
        step_ptr[c + 1] = step_ptr[c] + component_schedule.n_steps
        start = end

    index_of = np.empty(tree.n, np.int64)
    index_of[node_of] = np.arange(tree.n)
    old_parent = tree.parent[node_of]
    parent = np.where(old_parent >= 0, index_of[np.maximum(old_parent, 0)], -1)
    has_parent = parent >= 0
    child_ptr = np.zeros(tree.n + 1, np.int64)
    np.cumsum(np.bincount(parent[has_parent], minlength=tree.n), out=child_ptr[1:])
    # A parent's children in serial Hines's elimination order (decreasing tree index),
    # so that a parent pulling from them subtracts the same terms in the same order.
    children = np.flatnonzero(has_parent)
    child_index = children[np.lexsort((-node_of[children], parent[children]))]

    arrays = dict(
        node_of=node_of,
        index_of=index_of,
        parent=parent,
        child_ptr=child_ptr,
        child_index=child_index,
        node_ptr=node_ptr,
        step_ptr=step_ptr,
        step_lo=np.concatenate(step_lo_parts),
        step_hi=np.concatenate(step_hi_parts),
    )
    for array in arrays.values():
        array.setflags(write=False)
    return Layout(threads=threads, **arrays)

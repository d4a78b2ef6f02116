"""Tree topology: validation, depth, children and the NetworkX view.

A tree (or a forest of several cells) is given by its ``parent`` array: ``parent[i]``
is the index of node i's parent, or -1 when i is a root. Any numbering is accepted;
nothing here assumes that parents come before their children.
"""

from __future__ import annotations

import os
from functools import cached_property

import numba
import numpy as np

from .swc import SwcSamples, read_swc

__all__ = ["SwcSamples", "Tree"]


@numba.njit(cache=True)
def _breadth_first(roots: np.ndarray, child_ptr: np.ndarray, child_index: np.ndarray):
    """Breadth-first order from the roots, depth and component (root) of every node.

    Nodes never reached from a root lie on, or hang below, a cycle; their depth is -1.
    """
    n = child_ptr.size - 1
    order = np.empty(n, np.int64)
    depth = np.full(n, -1, np.int64)
    component = np.full(n, -1, np.int64)
    tail = 0
    for c in range(roots.size):
        r = roots[c]
        order[tail] = r
        depth[r] = 0
        component[r] = c
        tail += 1
    head = 0
    while head < tail:
        i = order[head]
        head += 1
        for q in range(child_ptr[i], child_ptr[i + 1]):
            c = child_index[q]
            depth[c] = depth[i] + 1
            component[c] = component[i]
            order[tail] = c
            tail += 1
    return order[:tail], depth, component


class Tree:
    """A validated rooted tree or forest.

    Parameters
    ----------
    parent : array_like of int, shape (n,)
        ``parent[i]`` is the parent of node i, or -1 for a root. Several roots make a
        forest (several cells). Any numbering is allowed.

    Raises
    ------
    ValueError
        If ``parent`` is not a 1-D integer array, is empty, has an entry outside
        ``[-1, n)``, a node that is its own parent, no root, or a cycle. The message
        names the offending node(s).

    Attributes
    ----------
    n : int
        Number of nodes.
    parent : ndarray of int64
        Read-only copy of the parent array.
    depth : ndarray of int64
        ``depth[root] = 0`` and ``depth[child] = depth[parent] + 1``.
    roots : ndarray of int64
        Root nodes in increasing order; root ``roots[c]`` heads component ``c``.
    component : ndarray of int64
        Index (into ``roots``) of the cell each node belongs to.
    order : ndarray of int64
        A breadth-first order: every parent comes before its children.
    child_ptr, child_index : ndarray of int64
        Children in CSR form: the children of i are
        ``child_index[child_ptr[i]:child_ptr[i + 1]]``, in increasing node order.
    """

    def __init__(self, parent: np.ndarray | list[int], *, swc: SwcSamples | None = None):
        parent_array = np.asarray(parent)
        if parent_array.ndim != 1:
            raise ValueError(f"parent must be a 1-D array, got shape {parent_array.shape}")
        if parent_array.size == 0:
            raise ValueError("parent is empty: a tree needs at least one node")
        if parent_array.dtype == bool or not np.issubdtype(parent_array.dtype, np.integer):
            raise ValueError(f"parent must be an integer array, got dtype {parent_array.dtype}")
        n = parent_array.size
        # Range-check before casting: a huge unsigned value must not wrap to -1 (root).
        too_large = np.flatnonzero(parent_array >= n)
        if too_large.size:
            i = int(too_large[0])
            raise ValueError(
                f"parent[{i}] = {parent_array[i]} is out of range: parents must be -1 (root) "
                f"or a node index in [0, {n}) ({too_large.size} such node(s))"
            )
        parent_array = parent_array.astype(np.int64, copy=True)

        out_of_range = np.flatnonzero(parent_array < -1)
        if out_of_range.size:
            i = int(out_of_range[0])
            raise ValueError(
                f"parent[{i}] = {parent_array[i]} is out of range: parents must be -1 (root) "
                f"or a node index in [0, {n}) ({out_of_range.size} such node(s))"
            )
        self_parent = np.flatnonzero(parent_array == np.arange(n))
        if self_parent.size:
            i = int(self_parent[0])
            raise ValueError(f"node {i} is its own parent (parent[{i}] = {i})")
        roots = np.flatnonzero(parent_array == -1)
        if roots.size == 0:
            raise ValueError("parent has no root (no entry equal to -1), so it has a cycle")

        has_parent = parent_array >= 0
        child_count = np.bincount(parent_array[has_parent], minlength=n)
        child_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(child_count, out=child_ptr[1:])
        # Stable sort by parent keeps each node's children in increasing order.
        child_index = np.flatnonzero(has_parent)[
            np.argsort(parent_array[has_parent], kind="stable")
        ]
        order, depth, component = _breadth_first(roots, child_ptr, child_index)
        if order.size < n:
            raise ValueError(_describe_cycle(parent_array, depth))

        for array in (parent_array, depth, component, roots, order, child_ptr, child_index):
            array.setflags(write=False)
        self.n: int = n
        self.parent = parent_array
        self.depth = depth
        self.roots = roots
        self.component = component
        self.order = order
        self.child_ptr = child_ptr
        self.child_index = child_index
        self.swc = swc

    # ------------------------------------------------------------------ topology
    @property
    def n_components(self) -> int:
        """Number of separate cells (roots)."""
        return int(self.roots.size)

    @property
    def height(self) -> int:
        """Largest depth of any node (0 for a single node)."""
        return int(self.depth.max())

    @cached_property
    def n_children(self) -> np.ndarray:
        """Number of children of every node."""
        counts = np.diff(self.child_ptr)
        counts.setflags(write=False)
        return counts

    @cached_property
    def leaves(self) -> np.ndarray:
        """Nodes without children, in increasing order."""
        leaves = np.flatnonzero(self.n_children == 0)
        leaves.setflags(write=False)
        return leaves

    def children(self, node: int) -> np.ndarray:
        """Children of ``node`` in increasing order."""
        if not 0 <= node < self.n:
            raise IndexError(f"node {node} is out of range [0, {self.n})")
        return self.child_index[self.child_ptr[node] : self.child_ptr[node + 1]]

    @cached_property
    def parent_before_child(self) -> bool:
        """True when every parent has a smaller index than its children (Hines order)."""
        return bool(np.all(self.parent < np.arange(self.n)))

    def component_nodes(self) -> list[np.ndarray]:
        """The nodes of each component (cell), each in breadth-first order."""
        by_component = self.order[np.argsort(self.component[self.order], kind="stable")]
        sizes = np.bincount(self.component, minlength=self.n_components)
        return np.split(by_component, np.cumsum(sizes)[:-1])

    def subtree(self, nodes: np.ndarray) -> Tree:
        """The tree induced by ``nodes``, renumbered ``0..len(nodes)-1`` in the given order.

        ``nodes`` must be closed under taking parents, such as a whole component.
        """
        nodes = np.asarray(nodes, dtype=np.int64)
        new_index = np.full(self.n, -1, np.int64)
        new_index[nodes] = np.arange(nodes.size)
        old_parent = self.parent[nodes]
        new_parent = np.where(old_parent >= 0, new_index[np.maximum(old_parent, 0)], -1)
        missing = np.flatnonzero((old_parent >= 0) & (new_parent < 0))
        if missing.size:
            raise ValueError(f"node {nodes[missing[0]]}'s parent is not among the given nodes")
        return Tree(new_parent)

    # ------------------------------------------------------------------ NetworkX view
    def to_networkx(self):
        """The tree as a ``networkx.DiGraph`` with edges parent -> child.

        Each node carries its ``depth`` as a node attribute.
        """
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from((i, {"depth": int(h)}) for i, h in enumerate(self.depth))
        child = np.flatnonzero(self.parent >= 0)
        graph.add_edges_from(zip(self.parent[child].tolist(), child.tolist(), strict=True))
        return graph

    def depth_levels(self) -> list[np.ndarray]:
        """Nodes grouped by depth, computed by NetworkX breadth-first layers from the roots.

        Level h holds every node at depth h, sorted. This is NetworkX's independent
        partition of the tree into levels; it agrees with :attr:`depth`.
        """
        import networkx as nx

        layers = nx.bfs_layers(self.to_networkx(), self.roots.tolist())
        return [np.sort(np.fromiter(layer, np.int64)) for layer in layers]

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_swc(cls, path: str | os.PathLike) -> Tree:
        """Read an SWC file, one tree node per sample, in file order.

        The file is read and validated by :func:`dhs.swc.read_swc`: sample ids may be any
        distinct non-negative integers in any order; any negative parent id marks a root.
        The per-sample coordinates, radii and line numbers are kept in :attr:`swc`.

        Raises
        ------
        ValueError
            On any fault :func:`dhs.swc.read_swc` finds (a short line, a bad field, a
            duplicate id, a missing parent, a cycle, no root); the message names the
            file, the line and the sample.
        """
        morphology = read_swc(path)
        return cls(morphology.parent, swc=morphology.samples)

    def __repr__(self) -> str:
        return f"Tree(n={self.n}, components={self.n_components}, height={self.height})"


def _describe_cycle(parent: np.ndarray, depth: np.ndarray) -> str:
    """Name one cycle among the nodes that no root reaches."""
    import networkx as nx

    unreached = np.flatnonzero(depth < 0)
    graph = nx.DiGraph()
    graph.add_edges_from((int(i), int(parent[i])) for i in unreached)
    cycle = [int(u) for u, _ in nx.find_cycle(graph)]
    path = " -> ".join(str(i) for i in [*cycle, cycle[0]])
    return (
        f"parent has a cycle: {path} (following parent links); "
        f"{unreached.size} node(s) cannot reach a root"
    )

"""Generators of test trees, as plain functions returning parent arrays (np.int64).

``parent[i]`` is the parent of node i, or -1 for a root. Unless relabelled with
:func:`relabel`, every generator here numbers parents before their children.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "CASES",
    "ROOTED_TREE_COUNTS",
    "binary",
    "caterpillar",
    "chain",
    "deep_attachment",
    "forest",
    "naive_depth",
    "preferential_attachment",
    "random_forest",
    "random_permutation",
    "random_recursive",
    "relabel",
    "relabelled",
    "rooted_trees",
    "seeded_rng",
    "star",
]


def chain(n: int) -> np.ndarray:
    """A path 0 - 1 - ... - (n-1) rooted at 0."""
    return np.arange(-1, n - 1, dtype=np.int64)


def star(n: int) -> np.ndarray:
    """Root 0 with n - 1 leaves."""
    parent = np.zeros(n, np.int64)
    parent[0] = -1
    return parent


def caterpillar(spine: int, legs_per_node: int) -> np.ndarray:
    """A chain of ``spine`` nodes, each carrying ``legs_per_node`` leaves.

    Spine nodes come first (0..spine-1), then the legs of spine node 0, 1, ...
    """
    legs = np.repeat(np.arange(spine, dtype=np.int64), legs_per_node)
    return np.concatenate([chain(spine), legs])


def binary(levels: int) -> np.ndarray:
    """The full binary tree with ``levels`` levels (2**levels - 1 nodes), heap order."""
    n = 2**levels - 1
    parent = (np.arange(n, dtype=np.int64) - 1) // 2
    parent[0] = -1
    return parent


def random_recursive(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random recursive tree: ``parent[i]`` uniform in ``[0, i)``."""
    parent = np.empty(n, np.int64)
    parent[0] = -1
    if n > 1:
        parent[1:] = np.floor(rng.random(n - 1) * np.arange(1, n)).astype(np.int64)
    return parent


def preferential_attachment(n: int, rng: np.random.Generator) -> np.ndarray:
    """Node i attaches to j < i with probability proportional to 1 + children(j).

    Gives bushy trees with a few hubs (many siblings, shallow).
    """
    parent = np.empty(n, np.int64)
    parent[0] = -1
    weight = np.ones(n)
    for i in range(1, n):
        w = weight[:i]
        j = int(rng.choice(i, p=w / w.sum()))
        parent[i] = j
        weight[j] += 1.0
    return parent


def deep_attachment(n: int, rng: np.random.Generator, bias: float = 4.0) -> np.ndarray:
    """Node i attaches to j < i with probability proportional to (1 + depth(j)) ** bias.

    Gives deep, stringy trees with side branches (dendrite-like).
    """
    parent = np.empty(n, np.int64)
    parent[0] = -1
    depth = np.zeros(n)
    for i in range(1, n):
        w = (1.0 + depth[:i]) ** bias
        j = int(rng.choice(i, p=w / w.sum()))
        parent[i] = j
        depth[i] = depth[j] + 1
    return parent


def random_permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(n).astype(np.int64)


def relabel(parent: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Renumber node i as ``perm[i]``; returns the parent array in the new numbering."""
    parent = np.asarray(parent, np.int64)
    perm = np.asarray(perm, np.int64)
    assert np.array_equal(np.sort(perm), np.arange(parent.size)), "perm is not a permutation"
    new_parent = np.full(parent.size, -1, np.int64)
    has_parent = parent >= 0
    new_parent[perm[has_parent]] = perm[parent[has_parent]]
    return new_parent


def relabelled(parent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``parent`` renumbered by a random permutation, so parents no longer come first."""
    return relabel(parent, random_permutation(np.asarray(parent).size, rng))


def seeded_rng(*keys) -> np.random.Generator:
    """A generator seeded from ``keys`` (names, numbers): the same keys, the same draws."""
    return np.random.default_rng([zlib.crc32(str(key).encode()) for key in keys])


def forest(trees: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate parent arrays into one forest, offsetting each tree's indices."""
    parts = []
    offset = 0
    for parent in trees:
        parent = np.asarray(parent, np.int64)
        parts.append(np.where(parent >= 0, parent + offset, -1))
        offset += parent.size
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def random_forest(
    n_trees: int, max_size: int, rng: np.random.Generator, *, shuffle: bool = True
) -> np.ndarray:
    """A forest of random recursive trees of random sizes, optionally renumbered."""
    sizes = rng.integers(1, max_size + 1, size=n_trees)
    parent = forest([random_recursive(int(m), rng) for m in sizes])
    if shuffle:
        parent = relabelled(parent, rng)
    return parent


def naive_depth(parent: np.ndarray) -> np.ndarray:
    """Depth of every node by walking parent links up to the root (O(n * height))."""
    parent = np.asarray(parent).tolist()
    depth = []
    for i in range(len(parent)):
        d = 0
        j = parent[i]
        while j != -1:
            d += 1
            j = parent[j]
            assert d <= len(parent), "cycle"
        depth.append(d)
    return np.array(depth, np.int64)


# Number of unlabelled rooted trees with m nodes, OEIS A000081 (m = 1, 2, ...).
ROOTED_TREE_COUNTS = (1, 1, 2, 4, 9, 20, 48, 115, 286, 719, 1842, 4766)


def _canonical(children: list[list[int]], v: int) -> str:
    """AHU canonical string of the rooted subtree at v (equal iff isomorphic)."""
    return "(" + "".join(sorted(_canonical(children, c) for c in children[v])) + ")"


def rooted_trees(m: int) -> list[np.ndarray]:
    """Every unlabelled rooted tree with m nodes, once each, as a BFS-numbered parent array.

    Built from ``networkx.nonisomorphic_trees(m)`` (every free tree once) by rooting each
    at every node and deduplicating by the AHU canonical form of the rooted tree. Every
    rooted tree arises this way (forget its root, then root the free tree there), so the
    result is complete; the count can be checked against :data:`ROOTED_TREE_COUNTS`.
    """
    import networkx as nx

    if m == 1:
        return [np.array([-1], np.int64)]
    seen: dict[str, np.ndarray] = {}
    for free_tree in nx.nonisomorphic_trees(m):
        for root in free_tree.nodes:
            bfs_parent = {root: -1, **dict(nx.bfs_predecessors(free_tree, root))}
            order = [root, *(v for _, v in nx.bfs_edges(free_tree, root))]
            index = {v: i for i, v in enumerate(order)}
            parent = np.array(
                [-1 if bfs_parent[v] == -1 else index[bfs_parent[v]] for v in order], np.int64
            )
            children: list[list[int]] = [[] for _ in range(m)]
            for i in range(1, m):
                children[parent[i]].append(i)
            seen.setdefault(_canonical(children, 0), parent)
    return list(seen.values())


# Named test trees, shared by the tree and solver tests: each builder takes a seeded
# Generator and returns a parent array. "_relabelled" ones are renumbered at random, so
# their parents do not precede their children.
CASES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "single": lambda rng: np.array([-1], np.int64),
    "two_nodes": lambda rng: chain(2),
    "two_roots": lambda rng: np.array([-1, -1], np.int64),
    "chain": lambda rng: chain(100),
    "chain_reversed": lambda rng: relabel(chain(100), np.arange(100)[::-1].copy()),
    "star": lambda rng: star(40),
    "star_relabelled": lambda rng: relabelled(star(40), rng),
    "caterpillar": lambda rng: caterpillar(12, 3),
    "caterpillar_relabelled": lambda rng: relabelled(caterpillar(12, 3), rng),
    "binary": lambda rng: binary(6),
    "binary_relabelled": lambda rng: relabelled(binary(6), rng),
    "recursive_relabelled": lambda rng: relabelled(random_recursive(500, rng), rng),
    "deep_relabelled": lambda rng: relabelled(deep_attachment(300, rng), rng),
    "preferential": lambda rng: preferential_attachment(300, rng),
    "preferential_relabelled": lambda rng: relabelled(preferential_attachment(300, rng), rng),
    "forest_in_order": lambda rng: forest([chain(5), star(4), [-1], binary(3), caterpillar(4, 2)]),
    "forest_relabelled": lambda rng: random_forest(7, 60, rng),
    "forest_of_singletons": lambda rng: forest([[-1]] * 5),
}

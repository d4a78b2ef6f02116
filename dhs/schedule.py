"""The DHS elimination schedule: Hu's highest-level-first algorithm and its lower bound.

Eliminating node i (the triangularisation step of :mod:`dhs.matrix`) needs all of
i's children eliminated first. With k threads, each step eliminates at most k nodes.
This is the scheduling problem P | in-tree, p_j = 1 | C_max, and Hu (1961) showed that
always taking the k deepest ready nodes is optimal. The optimum equals

    lower_bound = max over h of ( h + ceil(Q_h / k) ),   Q_h = #nodes with depth >= h,

which is O(n) to compute and is the test oracle for every schedule built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from .checks import instance_of, thread_count
from .tree import Tree

__all__ = [
    "Schedule",
    "breadth_first_level_steps",
    "lower_bound",
    "schedule",
]


@dataclass(frozen=True)
class Schedule:
    """A parallel elimination order for a tree.

    Attributes
    ----------
    order : ndarray of int64, shape (n,)
        All nodes in elimination order (tree's own numbering); step s is
        ``order[step_ptr[s]:step_ptr[s + 1]]``.
    step_ptr : ndarray of int64, shape (n_steps + 1,)
        Step boundaries in ``order``.
    threads : int
        The k the schedule was built for; no step is longer.
    lower_bound : int
        ``max_h (h + ceil(Q_h / k))``: no schedule with k threads has fewer steps.
    """

    order: np.ndarray
    step_ptr: np.ndarray
    threads: int
    lower_bound: int

    @property
    def n_steps(self) -> int:
        """Number of parallel elimination steps (back-substitution takes as many)."""
        return int(self.step_ptr.size - 1)

    @cached_property
    def steps(self) -> list[np.ndarray]:
        """Step s's node ids, in the tree's numbering; each at most ``threads`` long."""
        return np.split(self.order, self.step_ptr[1:-1])

    @cached_property
    def step_of(self) -> np.ndarray:
        """``step_of[i]`` is the step in which node i is eliminated."""
        step_of = np.empty(self.order.size, np.int64)
        step_of[self.order] = np.repeat(np.arange(self.n_steps), np.diff(self.step_ptr))
        return step_of


def lower_bound(tree: Tree, threads: int) -> int:
    """Fewest steps any k-thread schedule can take: ``max_h (h + ceil(Q_h / k))``.

    ``Q_h`` counts nodes with depth >= h. Hu's algorithm attains this bound.
    """
    instance_of("tree", tree, Tree, "a dhs.Tree")
    threads = thread_count("threads", threads)
    per_depth = np.bincount(tree.depth)
    at_or_below = np.cumsum(per_depth[::-1])[::-1]  # Q_h for h = 0..height
    heights = np.arange(per_depth.size)
    return int(np.max(heights + -(-at_or_below // threads)))


def breadth_first_level_steps(tree: Tree, threads: int) -> int:
    """Steps of the breadth-first-level scheme: each depth level in chunks of k.

    Levels are processed deepest first and never mixed, which is what Jaxley's "dhs"
    solver does. It is not optimal; the gap to :func:`lower_bound` is what Hu's
    algorithm buys.
    """
    instance_of("tree", tree, Tree, "a dhs.Tree")
    threads = thread_count("threads", threads)
    per_depth = np.bincount(tree.depth)
    return int(np.sum(-(-per_depth // threads)))


def schedule(tree: Tree, threads: int = 32) -> Schedule:
    """Hu's highest-level-first schedule, O(n): the DHS elimination order.

    At every step the (at most) k deepest *ready* nodes are eliminated; a node is
    ready once all of its children have been eliminated in earlier steps. This is
    optimal, so ``n_steps == lower_bound`` always holds.

    Ties between ready nodes of equal depth go to the node that became ready most
    recently (last in, first out); the initial leaves of a depth are taken in
    increasing id order. A lane therefore tends to walk up one branch: a node is
    eliminated right after its last child, while that child's values are still in
    cache, and in section-contiguous numberings (NEURON, SWC) consecutive steps touch
    neighbouring memory.

    Parameters
    ----------
    tree : Tree
    threads : int
        k, the number of nodes eliminated in parallel per step (>= 1).

    Returns
    -------
    Schedule
    """
    instance_of("tree", tree, Tree, "a dhs.Tree")
    threads = thread_count("threads", threads)
    order, step_ptr = _hu(tree.parent, tree.depth, tree.n_children, threads, tree.height)
    for array in (order, step_ptr):
        array.setflags(write=False)
    return Schedule(
        order=order, step_ptr=step_ptr, threads=threads, lower_bound=lower_bound(tree, threads)
    )


@numba.njit(cache=True)
def _hu(parent, depth, n_children, k, height):
    """Hu's algorithm with one LIFO stack per depth and a sorted list of non-empty depths.

    The list of non-empty depths is doubly linked, in decreasing depth. A parent freed
    at depth h-1 is linked in right after its child's depth h, which stays listed until
    the end of the step, so every insertion is O(1) and the whole run is O(n).
    """
    n = parent.size
    remaining = n_children.copy()
    stack_top = np.full(height + 1, -1, np.int64)  # per depth: last pushed node
    below_in_stack = np.full(n, -1, np.int64)
    lower = np.full(height + 1, -1, np.int64)  # next non-empty depth below
    higher = np.full(height + 1, -1, np.int64)
    listed = np.zeros(height + 1, np.bool_)

    for i in range(n - 1, -1, -1):  # decreasing ids so that pops give increasing ids
        if n_children[i] == 0:
            h = depth[i]
            below_in_stack[i] = stack_top[h]
            stack_top[h] = i
    top = -1
    previous = -1
    for h in range(height, -1, -1):
        if stack_top[h] != -1:
            listed[h] = True
            if previous == -1:
                top = h
            else:
                lower[previous] = h
                higher[h] = previous
            previous = h

    order = np.empty(n, np.int64)
    step_ptr = np.empty(n + 1, np.int64)
    step_ptr[0] = 0
    taken = np.empty(k, np.int64)
    visited = np.empty(k, np.int64)
    position = 0
    n_steps = 0
    while position < n:
        count = 0
        n_visited = 0
        h = top
        while count < k and h != -1:
            visited[n_visited] = h
            n_visited += 1
            while count < k and stack_top[h] != -1:
                node = stack_top[h]
                stack_top[h] = below_in_stack[node]
                taken[count] = node
                count += 1
            h = lower[h]
        for t in range(count):
            node = taken[t]
            order[position + t] = node
            p = parent[node]
            if p >= 0:
                remaining[p] -= 1
                if remaining[p] == 0:
                    hp = depth[p]
                    if not listed[hp]:
                        hc = hp + 1  # the child's depth, still listed this step
                        after = lower[hc]
                        lower[hc] = hp
                        higher[hp] = hc
                        lower[hp] = after
                        if after != -1:
                            higher[after] = hp
                        listed[hp] = True
                    below_in_stack[p] = stack_top[hp]
                    stack_top[hp] = p
        for v in range(n_visited):
            h = visited[v]
            if stack_top[h] == -1:  # drained this step: unlink
                up = higher[h]
                down = lower[h]
                if up == -1:
                    top = down
                else:
                    lower[up] = down
                if down != -1:
                    higher[down] = up
                listed[h] = False
                lower[h] = -1
                higher[h] = -1
        position += count
        n_steps += 1
        step_ptr[n_steps] = position
    return order, step_ptr[: n_steps + 1].copy()

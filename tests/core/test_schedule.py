"""Tests of the DHS schedule: validity, optimality against an exhaustive search, bounds."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trees
from dhs import Schedule, Tree, breadth_first_level_steps, lower_bound, schedule
from paths import MORPHOLOGIES

THREADS = (1, 2, 3, 4, 7, 16, 32, 64)
MORPHOLOGY_DIR = MORPHOLOGIES


# ----------------------------------------------------------------------------- oracles
def assert_valid_schedule(tree: Tree, result: Schedule, k: int) -> None:
    """Every node once, at most k per step, every child in a strictly earlier step."""
    n = tree.n
    assert isinstance(result, Schedule)
    assert result.threads == k
    assert result.order.shape == (n,)
    assert np.array_equal(np.sort(result.order), np.arange(n)), "not every node exactly once"
    steps = result.steps
    assert result.n_steps == len(steps)
    assert result.step_ptr[0] == 0
    assert result.step_ptr[-1] == n
    assert np.array_equal(np.concatenate(steps), result.order)
    sizes = [step.size for step in steps]
    assert min(sizes) >= 1, "empty step"
    assert max(sizes) <= k, f"a step has {max(sizes)} > {k} nodes"
    step_of = np.empty(n, np.int64)
    for s, step in enumerate(steps):
        step_of[step] = s
    assert np.array_equal(result.step_of, step_of)
    child = np.flatnonzero(tree.parent >= 0)
    bad = child[step_of[child] >= step_of[tree.parent[child]]]
    assert bad.size == 0, f"node {bad[:1]} is eliminated no earlier than its parent"


def assert_highest_level_first(tree: Tree, result: Schedule, k: int) -> None:
    """Each step takes min(k, #ready) ready nodes, none shallower than a ready node left over.

    Ready: all children eliminated in earlier steps. This is Hu's rule, checked by
    simulation independent of the implementation.
    """
    parent = tree.parent
    depth = tree.depth
    remaining = np.bincount(parent[parent >= 0], minlength=tree.n)
    ready = remaining == 0
    for s, step in enumerate(result.steps):
        assert ready[step].all(), f"step {s} takes a node that is not ready"
        n_ready = int(ready.sum())
        assert step.size == min(k, n_ready), f"step {s} leaves a thread idle"
        ready[step] = False
        if ready.any():
            assert depth[ready].max() <= depth[step].min(), f"step {s} skips a deeper node"
        freed = parent[step]
        freed = freed[freed >= 0]
        np.subtract.at(remaining, freed, 1)
        ready[freed[remaining[freed] == 0]] = True


def naive_lower_bound(parent: np.ndarray, k: int) -> int:
    """max_h (h + ceil(Q_h / k)) with Q_h counted node by node from naive depths."""
    depth = trees.naive_depth(parent).tolist()
    best = 0
    for h in range(max(depth) + 1):
        q = sum(1 for d in depth if d >= h)
        best = max(best, h + math.ceil(q / k))
    return best


def brute_force_steps(parent: np.ndarray, k: int) -> int:
    """Exact fewest steps by breadth-first search over sets of eliminated nodes.

    From a state (bitmask of eliminated nodes) any non-empty subset of at most k of the
    ready nodes may be eliminated; nothing about which subset is best is assumed.
    """
    parent = [int(p) for p in parent]
    n = len(parent)
    child_mask = [0] * n
    for i, p in enumerate(parent):
        if p >= 0:
            child_mask[p] |= 1 << i
    full = (1 << n) - 1
    frontier = {0}
    seen = {0}
    steps = 0
    while full not in frontier:
        following = set()
        for done in frontier:
            ready = [1 << v for v in range(n) if not done >> v & 1 and child_mask[v] & ~done == 0]
            for size in range(1, min(k, len(ready)) + 1):
                for subset in combinations(ready, size):
                    state = done | sum(subset)
                    if state not in seen:
                        seen.add(state)
                        following.add(state)
        frontier = following
        steps += 1
    return steps


def check_optimal(parent: np.ndarray, k: int) -> Schedule:
    tree = Tree(parent)
    result = schedule(tree, k)
    assert_valid_schedule(tree, result, k)
    bound = lower_bound(tree, k)
    assert result.lower_bound == bound
    assert result.n_steps == bound, f"{result.n_steps} steps, lower bound {bound}"
    return result


# ----------------------------------------------------------------------------- named trees
def _relabelled(parent: np.ndarray, seed: int) -> np.ndarray:
    return trees.relabelled(parent, np.random.default_rng(seed))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


NAMED = {
    "single": lambda: np.array([-1], np.int64),
    "chain-2": lambda: trees.chain(2),
    "chain-100": lambda: trees.chain(100),
    "chain-100-reversed": lambda: trees.relabel(trees.chain(100), np.arange(100)[::-1].copy()),
    "star-2": lambda: trees.star(2),
    "star-65": lambda: trees.star(65),
    "star-1000": lambda: trees.star(1000),
    "caterpillar-10x2": lambda: trees.caterpillar(10, 2),
    "caterpillar-50x7": lambda: trees.caterpillar(50, 7),
    "caterpillar-300x1-relabelled": lambda: _relabelled(trees.caterpillar(300, 1), 1),
    "binary-1": lambda: trees.binary(1),
    "binary-6": lambda: trees.binary(6),
    "binary-11": lambda: trees.binary(11),
    "binary-9-relabelled": lambda: _relabelled(trees.binary(9), 2),
    "recursive-10": lambda: trees.random_recursive(10, _rng(10)),
    "recursive-100": lambda: trees.random_recursive(100, _rng(100)),
    "recursive-1000": lambda: trees.random_recursive(1000, _rng(1000)),
    "recursive-5000": lambda: trees.random_recursive(5000, _rng(5000)),
    "recursive-3000-relabelled": lambda: _relabelled(trees.random_recursive(3000, _rng(3)), 3),
    "preferential-2000-relabelled": lambda: _relabelled(
        trees.preferential_attachment(2000, _rng(4)), 4
    ),
    "deep-1500": lambda: trees.deep_attachment(1500, _rng(5)),
    "deep-1500-relabelled": lambda: _relabelled(trees.deep_attachment(1500, _rng(6)), 6),
    "forest-singletons": lambda: trees.forest([[-1]] * 40),
    "forest-mixed": lambda: trees.forest(
        [trees.chain(30), trees.star(50), trees.binary(5), trees.caterpillar(8, 3), [-1]]
    ),
    "forest-random-relabelled": lambda: trees.random_forest(25, 200, _rng(7)),
    "forest-deep-relabelled": lambda: _relabelled(
        trees.forest([trees.deep_attachment(m, _rng(m)) for m in (400, 300, 200, 5)]), 8
    ),
}


@pytest.fixture(scope="module", params=sorted(NAMED))
def named_tree(request) -> Tree:
    return Tree(NAMED[request.param]())


@pytest.mark.parametrize("k", THREADS)
def test_named_trees_valid_and_optimal(named_tree, k):
    result = schedule(named_tree, k)
    assert_valid_schedule(named_tree, result, k)
    assert result.n_steps == lower_bound(named_tree, k) == result.lower_bound


@pytest.mark.parametrize("k", THREADS)
def test_named_trees_highest_level_first(named_tree, k):
    assert_highest_level_first(named_tree, schedule(named_tree, k), k)


@pytest.mark.parametrize("k", THREADS)
def test_lower_bound_matches_brute_counting(named_tree, k):
    assert lower_bound(named_tree, k) == naive_lower_bound(named_tree.parent, k)


@pytest.mark.parametrize(
    ("parent", "k", "steps"),
    [
        # hand-computed optima
        (trees.chain(100), 1, 100),
        (trees.chain(100), 64, 100),  # a chain cannot be parallelised
        (trees.star(65), 1, 65),
        (trees.star(65), 16, 5),  # 64 leaves in 4 steps, then the root
        (trees.star(65), 64, 2),
        (trees.binary(6), 1, 63),
        (trees.binary(6), 64, 6),  # one level per step
        (trees.binary(6), 4, 17),  # h = 1: 1 + ceil(62 / 4); levels 1 and 0 cannot mix
        (trees.caterpillar(10, 2), 2, 16),
        (trees.forest([[-1]] * 40), 7, 6),
    ],
)
def test_known_optima(parent, k, steps):
    tree = Tree(parent)
    assert schedule(tree, k).n_steps == steps
    assert lower_bound(tree, k) == steps


@pytest.mark.parametrize("k", [1, 2, 5, 10**6])
def test_more_threads_than_nodes(k):
    tree = Tree(trees.forest([trees.binary(3), trees.chain(4)]))
    result = check_optimal(tree.parent, k)
    if k >= tree.n:
        assert result.n_steps == tree.height + 1


# ----------------------------------------------------------------------------- morphologies
def _morphology_params():
    files = sorted(MORPHOLOGY_DIR.glob("*.swc"))
    if not files:
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(reason=f"no .swc files in {MORPHOLOGY_DIR} to test"),
                id="no-morphologies",
            )
        ]
    return [pytest.param(path, id=path.name) for path in files]


@pytest.fixture(scope="module", params=_morphology_params())
def morphology(request) -> Tree:
    return Tree.from_swc(request.param)


@pytest.mark.parametrize("k", THREADS)
def test_morphologies_valid_and_optimal(morphology, k):
    result = schedule(morphology, k)
    assert_valid_schedule(morphology, result, k)
    assert result.n_steps == lower_bound(morphology, k)
    assert_highest_level_first(morphology, result, k)
    assert result.n_steps == naive_lower_bound(morphology.parent, k)
    assert breadth_first_level_steps(morphology, k) >= result.n_steps


# ----------------------------------------------------------------------------- brute force
# All unlabelled rooted trees with 1..11 nodes (3047 trees: OEIS A000081 summed) and,
# by deleting the root of each 11-node tree, all 1842 rooted forests with 10 nodes
# (forests of m nodes correspond one-to-one to rooted trees of m + 1 nodes).
# 4889 shapes x 4 values of k = 19556 exhaustive searches, a few seconds in all.
BRUTE_MAX_NODES = 11
BRUTE_THREADS = (1, 2, 3, 4)


def test_rooted_tree_enumeration_is_complete():
    for m in range(1, BRUTE_MAX_NODES + 1):
        shapes = trees.rooted_trees(m)
        assert len(shapes) == trees.ROOTED_TREE_COUNTS[m - 1], m
        for parent in shapes:
            assert parent.size == m
            assert Tree(parent).n_components == 1


def test_brute_force_sanity():
    """The search itself gives hand-known answers (and can exceed the trivial bounds)."""
    assert brute_force_steps(trees.chain(6), 3) == 6
    assert brute_force_steps(trees.star(9), 4) == 3
    assert brute_force_steps(trees.star(9), 1) == 9
    assert brute_force_steps(trees.binary(3), 2) == 4  # 2 + 1 + 1: leaves, level 1, root
    assert brute_force_steps(trees.forest([[-1]] * 7), 3) == 3
    # Taking ready nodes badly costs steps: chain of 4 plus 3 leaves, k = 2. Greedy by
    # id would take the 3 leaves first (2 steps) while the chain waits.
    assert brute_force_steps(trees.forest([trees.chain(4), [-1], [-1], [-1]]), 2) == 4


@pytest.mark.parametrize("m", range(1, BRUTE_MAX_NODES + 1))
def test_brute_force_all_rooted_trees(m):
    rng = np.random.default_rng(m)
    for parent in trees.rooted_trees(m):
        for k in BRUTE_THREADS:
            best = brute_force_steps(parent, k)
            result = check_optimal(parent, k)
            assert result.n_steps == best, (parent.tolist(), k)
            assert naive_lower_bound(parent, k) == best
            # the same shape under another numbering
            shuffled = trees.relabelled(parent, rng)
            assert check_optimal(shuffled, k).n_steps == best, (shuffled.tolist(), k)


def test_brute_force_all_forests():
    m = BRUTE_MAX_NODES  # forests with m - 1 nodes
    count = 0
    for tree_parent in trees.rooted_trees(m):
        # node 0 is the root in BFS numbering; drop it and shift the rest down by one
        parent = tree_parent[1:] - 1
        parent[parent < 0] = -1
        for k in BRUTE_THREADS:
            best = brute_force_steps(parent, k)
            assert check_optimal(parent, k).n_steps == best, (parent.tolist(), k)
        count += 1
    assert count == trees.ROOTED_TREE_COUNTS[m - 1]


# ----------------------------------------------------------------------------- BFL baseline
def reference_level_steps(tree: Tree, k: int) -> int:
    return sum(math.ceil(level.size / k) for level in tree.depth_levels())


@pytest.mark.parametrize("k", THREADS)
def test_breadth_first_level_steps(named_tree, k):
    steps = breadth_first_level_steps(named_tree, k)
    assert steps == reference_level_steps(named_tree, k)
    assert steps >= schedule(named_tree, k).n_steps


def test_breadth_first_level_steps_is_worse_on_a_caterpillar():
    # caterpillar(10, 2): levels of size 1, 3 x 9, 2. With k = 2 levels cost
    # 1 + 9 * 2 + 1 = 20 steps, while mixing levels needs only 1 + ceil(29 / 2) = 16.
    tree = Tree(trees.caterpillar(10, 2))
    assert breadth_first_level_steps(tree, 2) == 20
    assert schedule(tree, 2).n_steps == 16


def test_breadth_first_level_steps_equal_on_full_binary():
    # each level of a full binary tree is a power of two, so nothing is lost for k = 2**j
    tree = Tree(trees.binary(8))
    for k in (1, 2, 4, 8, 16, 32, 64, 128):
        assert breadth_first_level_steps(tree, k) == schedule(tree, k).n_steps


# ----------------------------------------------------------------------------- property
@st.composite
def parent_arrays(draw) -> np.ndarray:
    """Forests of random recursive trees under a random renumbering."""
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=4))
    parts = []
    for size in sizes:
        parent = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, size)]
        parts.append(np.array(parent, np.int64))
    parent = trees.forest(parts)
    perm = draw(st.permutations(range(parent.size)))
    return trees.relabel(parent, np.array(perm, np.int64))


@settings(max_examples=300, deadline=None)
@given(parent=parent_arrays(), k=st.integers(1, 40))
def test_property_valid_and_optimal(parent, k):
    tree = Tree(parent)
    result = check_optimal(parent, k)
    assert_highest_level_first(tree, result, k)
    assert result.n_steps == naive_lower_bound(parent, k)
    assert breadth_first_level_steps(tree, k) >= result.n_steps


# ----------------------------------------------------------------------------- documented ties
def test_initial_leaves_in_increasing_id_order():
    result = schedule(Tree(trees.star(7)), 2)
    assert [step.tolist() for step in result.steps] == [[1, 2], [3, 4], [5, 6], [0]]


def test_ties_go_to_most_recently_ready():
    # 0 has children 1 and 2 (depth 1); 3 hangs under 1, 4 under 2 (depth 2). With k = 1:
    # 3 (lower id), 4 (only depth-2 node), then 2, freed after 1, goes first (LIFO).
    result = schedule(Tree([-1, 0, 0, 1, 2]), 1)
    assert result.order.tolist() == [3, 4, 2, 1, 0]


# ----------------------------------------------------------------------------- misc
def test_deterministic(rng):
    parent = trees.random_forest(10, 300, rng)
    for k in (1, 3, 32):
        first = schedule(Tree(parent), k)
        second = schedule(Tree(parent.copy()), k)
        assert np.array_equal(first.order, second.order)
        assert np.array_equal(first.step_ptr, second.step_ptr)
        again = schedule(Tree(parent), k)
        assert np.array_equal(first.order, again.order)


def test_default_threads_is_32():
    tree = Tree(trees.star(100))
    assert schedule(tree).threads == 32
    assert schedule(tree).n_steps == lower_bound(tree, 32) == 5


def test_numpy_integer_threads():
    tree = Tree(trees.binary(5))
    assert schedule(tree, np.int64(4)).n_steps == schedule(tree, 4).n_steps
    assert isinstance(schedule(tree, np.int32(4)).threads, int)


def test_schedule_arrays_are_read_only():
    result = schedule(Tree(trees.binary(4)), 3)
    for array in (result.order, result.step_ptr):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0


@pytest.mark.parametrize("threads", [0, -1, 2.5, True, False, "4", None, np.float64(4.0)])
@pytest.mark.parametrize("function", [schedule, lower_bound, breadth_first_level_steps])
def test_bad_threads(function, threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        function(Tree(trees.chain(3)), threads)

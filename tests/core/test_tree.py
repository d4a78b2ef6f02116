"""Tests of dhs.tree.Tree against independent (naive loop / NetworkX) computations."""

from __future__ import annotations

import re
from itertools import pairwise

import networkx as nx
import numpy as np
import pytest

import trees
from dhs import Tree
from dhs.swc import read_swc

# ----------------------------------------------------------------------------- cases
CASES = trees.CASES  # shared with the solver tests (tests/support/trees.py)


@pytest.fixture(params=sorted(CASES))
def parent(request, rng) -> np.ndarray:
    return CASES[request.param](rng)


@pytest.fixture
def tree(parent) -> Tree:
    return Tree(parent)


def naive_root(parent: np.ndarray, i: int) -> int:
    while parent[i] != -1:
        i = int(parent[i])
    return i


def reference_digraph(parent: np.ndarray) -> nx.DiGraph:
    """Parent -> child DiGraph built here, independently of Tree.to_networkx."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(parent.size))
    graph.add_edges_from((int(p), i) for i, p in enumerate(parent) if p >= 0)
    return graph


# ----------------------------------------------------------------------------- topology
def test_generators_make_valid_parent_arrays(parent):
    assert parent.dtype == np.int64
    assert parent.ndim == 1
    assert np.all((parent >= -1) & (parent < parent.size))
    trees.naive_depth(parent)  # asserts there is no cycle


def test_basic_attributes(tree, parent):
    n = parent.size
    assert tree.n == n
    assert np.array_equal(tree.parent, parent)
    assert tree.parent.dtype == np.int64
    assert np.array_equal(tree.roots, [i for i in range(n) if parent[i] == -1])
    assert tree.n_components == int(np.sum(parent == -1))


def test_depth_matches_naive_walk(tree, parent):
    assert np.array_equal(tree.depth, trees.naive_depth(parent))


def test_depth_matches_networkx_shortest_paths(tree, parent):
    graph = reference_digraph(parent)
    expected = np.full(parent.size, -1)
    for r in np.flatnonzero(parent == -1):
        for node, length in nx.single_source_shortest_path_length(graph, int(r)).items():
            assert expected[node] == -1, "node reached from two roots"
            expected[node] = length
    assert np.all(expected >= 0)
    assert np.array_equal(tree.depth, expected)


def test_height(tree, parent):
    assert tree.height == int(trees.naive_depth(parent).max())


def test_component(tree, parent):
    for i in range(parent.size):
        assert tree.roots[tree.component[i]] == naive_root(parent, i)
    # roots[c] heads component c
    assert np.array_equal(tree.component[tree.roots], np.arange(tree.n_components))


def test_children_and_csr(tree, parent):
    n = parent.size
    assert tree.child_ptr.size == n + 1
    assert tree.child_ptr[0] == 0
    assert tree.child_ptr[-1] == tree.child_index.size == n - tree.n_components
    assert np.all(np.diff(tree.child_ptr) >= 0)
    for i in range(n):
        expected = [j for j in range(n) if parent[j] == i]
        assert tree.children(i).tolist() == expected
        assert tree.child_index[tree.child_ptr[i] : tree.child_ptr[i + 1]].tolist() == expected
        assert tree.n_children[i] == len(expected)


def test_children_out_of_range(tree):
    with pytest.raises(IndexError):
        tree.children(tree.n)
    with pytest.raises(IndexError):
        tree.children(-1)


def test_leaves(tree, parent):
    has_child = set(parent[parent >= 0].tolist())
    assert tree.leaves.tolist() == [i for i in range(parent.size) if i not in has_child]


def test_order_is_breadth_first(tree, parent):
    order = tree.order
    assert np.array_equal(np.sort(order), np.arange(parent.size))
    position = np.empty(parent.size, np.int64)
    position[order] = np.arange(parent.size)
    child = np.flatnonzero(parent >= 0)
    assert np.all(position[parent[child]] < position[child]), "a child precedes its parent"
    assert np.all(np.diff(tree.depth[order]) >= 0), "order is not breadth-first"


def test_depth_levels_agree_with_depth(tree):
    levels = tree.depth_levels()
    assert len(levels) == tree.height + 1
    for h, level in enumerate(levels):
        assert level.tolist() == np.flatnonzero(tree.depth == h).tolist()


def test_to_networkx(tree, parent):
    graph = tree.to_networkx()
    n = parent.size
    assert isinstance(graph, nx.DiGraph)
    assert graph.number_of_nodes() == n
    assert set(graph.nodes) == set(range(n))
    assert graph.number_of_edges() == n - int(np.sum(parent == -1))
    assert nx.is_forest(graph.to_undirected())
    assert set(graph.edges) == {(int(p), i) for i, p in enumerate(parent) if p >= 0}
    for i in range(n):
        assert graph.in_degree(i) == (0 if parent[i] == -1 else 1)
        assert graph.nodes[i]["depth"] == tree.depth[i]


def test_parent_before_child_matches_naive(tree, parent):
    expected = all(parent[i] < i for i in range(parent.size))
    assert tree.parent_before_child is expected


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        ([-1], True),
        ([-1, 0, 0, 1], True),
        ([-1, -1, 1, 0], True),
        ([1, -1], False),
        ([-1, 0, 3, 0], False),
        ([-1, 2, 0], False),
    ],
)
def test_parent_before_child_examples(parent, expected):
    assert Tree(parent).parent_before_child is expected


def test_generated_trees_are_parent_before_child(rng):
    for parent in (
        trees.chain(10),
        trees.star(10),
        trees.caterpillar(5, 2),
        trees.binary(4),
        trees.random_recursive(100, rng),
        trees.forest([trees.chain(3), trees.binary(3)]),
    ):
        assert Tree(parent).parent_before_child


def test_component_nodes(tree):
    groups = tree.component_nodes()
    assert len(groups) == tree.n_components
    for c, nodes in enumerate(groups):
        assert sorted(nodes.tolist()) == np.flatnonzero(tree.component == c).tolist()
        position = {int(v): i for i, v in enumerate(nodes)}
        for v in nodes.tolist():
            if tree.parent[v] >= 0:
                assert position[int(tree.parent[v])] < position[v]


def test_subtree_of_each_component(tree, parent):
    for c, nodes in enumerate(tree.component_nodes()):
        sub = tree.subtree(nodes)
        assert sub.n == nodes.size
        assert sub.n_components == 1
        assert sub.roots.tolist() == [0]  # breadth-first order puts the root first
        index = {int(v): i for i, v in enumerate(nodes)}
        expected = [-1 if parent[v] == -1 else index[int(parent[v])] for v in nodes.tolist()]
        assert sub.parent.tolist() == expected
        assert np.array_equal(sub.depth, tree.depth[nodes])
        assert int(parent[tree.roots[c]]) == -1


def test_subtree_in_given_order(rng):
    parent = trees.relabelled(trees.random_recursive(50, rng), rng)
    tree = Tree(parent)
    nodes = rng.permutation(50)  # all nodes, any order: closed under parents
    sub = tree.subtree(nodes)
    for j, v in enumerate(nodes.tolist()):
        p = parent[v]
        assert sub.parent[j] == (-1 if p == -1 else int(np.flatnonzero(nodes == p)[0]))


def test_subtree_not_closed_under_parents():
    tree = Tree(trees.chain(5))
    with pytest.raises(ValueError, match=r"node 3's parent is not among"):
        tree.subtree([0, 1, 3])


def test_repr():
    assert repr(Tree(trees.forest([trees.chain(4), trees.star(3)]))) == (
        "Tree(n=7, components=2, height=3)"
    )


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("parent", "match"),
    [
        pytest.param(np.zeros((2, 2), np.int64), r"1-D.*\(2, 2\)", id="2d"),
        pytest.param(np.int64(-1), r"1-D", id="0d"),
        pytest.param([], r"empty", id="empty-list"),
        pytest.param(np.empty(0, np.int64), r"empty", id="empty-int"),
        pytest.param(np.array([-1.0, 0.0]), r"integer.*float64", id="float"),
        pytest.param(np.array([True, False]), r"integer.*bool", id="bool"),
        pytest.param(np.array(["-1", "0"]), r"integer", id="string"),
        pytest.param([-1, 0, 5], r"parent\[2\] = 5 is out of range", id="too-large"),
        pytest.param([-1, 0, 1, 4], r"parent\[3\] = 4 is out of range", id="equal-to-n"),
        pytest.param([-1, -2, 0], r"parent\[1\] = -2 is out of range", id="below-minus-one"),
        pytest.param([-1, 0, 2], r"node 2 is its own parent", id="self-parent"),
        pytest.param([0], r"node 0 is its own parent", id="self-parent-single"),
        pytest.param([1, 0], r"no root", id="no-root-2-cycle"),
        pytest.param([1, 2, 0, 2], r"no root", id="no-root"),
    ],
)
def test_bad_input(parent, match):
    with pytest.raises(ValueError, match=match):
        Tree(parent)


def test_bad_input_uint64_wraparound():
    with pytest.raises(ValueError, match=r"out of range"):
        Tree(np.array([2**64 - 1, 0], np.uint64))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64])
def test_unsigned_input_without_root(dtype):
    # unsigned arrays cannot hold -1; an in-range unsigned array has no root
    with pytest.raises(ValueError, match=r"no root"):
        Tree(np.array([1, 0], dtype))


def cycle_in_message(message: str) -> list[int]:
    """The node list of the 'a -> b -> ... -> a' path named in a cycle error."""
    found = re.search(r"cycle: (\d+(?: -> \d+)+)", message)
    assert found, f"no cycle path in {message!r}"
    path = [int(v) for v in found.group(1).split(" -> ")]
    assert path[0] == path[-1], f"path {path} is not closed"
    return path


@pytest.mark.parametrize(
    ("parent", "cycle", "unreached"),
    [
        pytest.param([-1, 0, 3, 4, 2], {2, 3, 4}, 3, id="separate-3-cycle"),
        pytest.param([-1, 2, 1], {1, 2}, 2, id="2-cycle"),
        pytest.param([-1, 0, 6, 2, 3, 4, 5], {2, 3, 4, 5, 6}, 5, id="5-cycle"),
        # nodes 5, 6, 7 hang below the cycle 2 -> 3 -> 4 -> 2, not part of it
        pytest.param([-1, 0, 3, 4, 2, 2, 5, 5], {2, 3, 4}, 6, id="tree-hanging-on-cycle"),
        # low-numbered nodes 0, 1 lead into the cycle; the root is last
        pytest.param([2, 0, 3, 4, 2, -1], {2, 3, 4}, 5, id="tail-before-cycle"),
        pytest.param(
            trees.forest([trees.binary(3), [1, 2, 0], trees.chain(3)]), {7, 8, 9}, 3, id="forest"
        ),
    ],
)
def test_cycle_is_named(parent, cycle, unreached):
    with pytest.raises(ValueError, match=r"cycle") as info:
        Tree(parent)
    message = str(info.value)
    path = cycle_in_message(message)
    assert set(path) == cycle
    assert len(path) == len(cycle) + 1
    for a, b in pairwise(path):
        assert parent[a] == b, f"{a} -> {b} is not a parent link"
    assert f"{unreached} node(s) cannot reach a root" in message


# ----------------------------------------------------------------------------- read-only
def test_arrays_are_read_only(tree):
    for name in ("parent", "depth", "roots", "component", "order", "child_ptr", "child_index"):
        array = getattr(tree, name)
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    for array in (tree.n_children, tree.leaves):
        if array.size:
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 1


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.intp, np.int16])
def test_does_not_keep_callers_array(dtype):
    given = np.array([-1, 0, 0, 1], dtype)
    tree = Tree(given)
    given[3] = 2
    given[1] = -1
    assert tree.parent.tolist() == [-1, 0, 0, 1]
    assert tree.depth.tolist() == [0, 1, 1, 2]
    assert given.flags.writeable, "the caller's array was made read-only"


def test_does_not_keep_callers_list():
    given = [-1, 0, 1]
    tree = Tree(given)
    given[2] = 0
    assert tree.parent.tolist() == [-1, 0, 1]


# ----------------------------------------------------------------------------- SWC
SWC_TEXT = """\
# A small test morphology
# id type x y z radius parent
  # indented comment line

30 3 3.0 0.5 -1.0 0.25 20   # child listed before its parent
10 1 0.0 0.0 0.0 5.0 -1
20 3 1.5 0.0 0.0 0.5 10
7  4 -2.0 1.0 0.0 0.75 10
\t99\t2\t10\t20\t30\t1.0\t-1\t\t
50 2 11.0 20.0 30.0 0.5 99 extra fields are ignored
40 3 4.0 1.0 -1.0 0.2 30
"""


def write(tmp_path, text: str, name: str = "cell.swc"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path


def test_from_swc(tmp_path):
    tree = Tree.from_swc(write(tmp_path, SWC_TEXT))
    # file order: ids 30, 10, 20, 7, 99, 50, 40
    assert tree.parent.tolist() == [2, -1, 1, 1, -1, 4, 0]
    assert tree.roots.tolist() == [1, 4]
    assert tree.depth.tolist() == [2, 0, 1, 1, 0, 1, 3]
    swc = tree.swc
    assert swc.sample_id.tolist() == [30, 10, 20, 7, 99, 50, 40]
    assert swc.kind.tolist() == [3, 1, 3, 4, 2, 2, 3]
    assert swc.kind.dtype == np.int64
    assert swc.xyz.shape == (7, 3)
    np.testing.assert_array_equal(
        swc.xyz,
        [
            [3.0, 0.5, -1.0],
            [0.0, 0.0, 0.0],
            [1.5, 0.0, 0.0],
            [-2.0, 1.0, 0.0],
            [10.0, 20.0, 30.0],
            [11.0, 20.0, 30.0],
            [4.0, 1.0, -1.0],
        ],
    )
    np.testing.assert_array_equal(swc.radius, [0.25, 5.0, 0.5, 0.75, 1.0, 0.5, 0.2])


def test_from_swc_any_negative_parent_is_root(tmp_path):
    text = "1 1 0 0 0 1 -1\n2 3 1 0 0 1 1\n5 1 9 9 9 1 -7\n6 3 1 0 0 1 5\n"
    tree = Tree.from_swc(write(tmp_path, text))
    assert tree.parent.tolist() == [-1, 0, -1, 2]


def test_from_swc_matches_relabelled_generator(tmp_path, rng):
    """A random tree written with shuffled sample ids and shuffled line order reads back."""
    parent = trees.random_recursive(200, rng)
    ids = rng.choice(10**6, size=200, replace=False) + 1
    lines = [f"{ids[i]} 3 {i} 0 0 1 {ids[parent[i]] if parent[i] >= 0 else -1}" for i in range(200)]
    line_order = rng.permutation(200)
    tree = Tree.from_swc(write(tmp_path, "\n".join(lines[i] for i in line_order) + "\n"))
    # node j of the tree is line line_order[j], i.e. generator node line_order[j]
    assert np.array_equal(tree.swc.sample_id, ids[line_order])
    assert np.array_equal(tree.parent, trees.relabel(parent, np.argsort(line_order)))
    assert np.array_equal(tree.swc.xyz[:, 0], line_order)


ROOT_LINE = "1 1 0 0 0 1 -1\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1 1\n2 3 1 1 1 1 1\n",
            r"cell\.swc:3: sample id 2 appears more than once \(first at line 2\)",
            id="duplicate-id",
        ),
        pytest.param(
            ROOT_LINE + "3 3 0 0 0 1 99\n",
            r"cell\.swc:2: sample 3 names parent 99, which is not a sample",
            id="missing-parent",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1 1000000\n",
            r"cell\.swc:2: sample 2 names parent 1000000",
            id="missing-parent-beyond-largest-id",
        ),
        pytest.param(
            "# header\n" + ROOT_LINE + "2 3 0 0 1\n",
            r"cell\.swc:3: an SWC sample needs 7 fields .* got 5: '2 3 0 0 1'",
            id="short-line",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1\n",
            r"cell\.swc:2: an SWC sample needs 7 fields .* got 6",
            id="six-fields",
        ),
        pytest.param(
            ROOT_LINE + "\n2 3 0 zero 0 1 1\n",
            r"cell\.swc:3: sample 2: the y field 'zero' is not a number",
            id="non-numeric-coordinate",
        ),
        pytest.param(
            ROOT_LINE + "2 dend 0 0 0 1 1\n",
            r"cell\.swc:2: sample 2: the type field 'dend' is not a number",
            id="text-type",
        ),
        pytest.param(
            ROOT_LINE + "two 3 0 0 0 1 1\n",
            r"cell\.swc:2: the sample id field 'two' is not a number",
            id="text-id",
        ),
        pytest.param(
            ROOT_LINE + "2.5 3 0 0 0 1 1\n",
            r"cell\.swc:2: sample 2\.5: the sample id 2\.5 is not an integer",
            id="fractional-id",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1 1.5\n",
            r"cell\.swc:2: sample 2: the parent id 1\.5 is not an integer",
            id="fractional-parent",
        ),
        pytest.param(
            ROOT_LINE + "-2 3 0 0 0 1 1\n",
            r"cell\.swc:2: sample -2: sample ids must be non-negative",
            id="negative-id",
        ),
        pytest.param(
            ROOT_LINE + "2 -3 0 0 0 1 1\n",
            r"cell\.swc:2: sample 2: the type -3 is negative",
            id="negative-type",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 nan 0 1 1\n",
            r"cell\.swc:2: sample 2: the y coordinate nan is not finite",
            id="nan-coordinate",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 0 1\n",
            r"cell\.swc:2: sample 2: the radius 0\.0 must be a positive number",
            id="zero-radius",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 -1 1\n",
            r"cell\.swc:2: sample 2: the radius -1\.0 must be a positive number",
            id="negative-radius",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 inf 1\n",
            r"cell\.swc:2: sample 2: the radius inf must be a positive number",
            id="infinite-radius",
        ),
        pytest.param("# only comments\n\n", r"cell\.swc: no SWC samples", id="empty"),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1 \udcff\n",
            r"cell\.swc:2: sample 2: the parent id field '\ufffd' is not a number",
            id="undecodable-byte",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1 2\n",
            r"cell\.swc:2: sample 2 is its own parent",
            id="self-parent",
        ),
        pytest.param(
            ROOT_LINE + "2 3 0 0 0 1 3\n3 3 0 0 0 1 2\n4 3 0 0 0 1 3\n",
            r"cell\.swc:2: sample 2 is on a cycle of parent links: 2 -> 3 -> 2 "
            r"\(lines 2, 3\); 3 sample\(s\) cannot reach a root",
            id="cycle",
        ),
        pytest.param(
            "1 1 0 0 0 1 3\n2 3 0 0 0 1 1\n3 3 0 0 0 1 2\n",
            r"cell\.swc: no root \(no sample has parent -1\); sample 1 is on a cycle of parent "
            r"links: 1 -> 3 -> 2 -> 1 \(lines 1, 3, 2\)",
            id="no-root",
        ),
    ],
)
def test_from_swc_errors(tmp_path, text, match):
    """Each fault names the file, the line and the sample (dhs.swc.read_swc)."""
    with pytest.raises(ValueError, match=match):
        Tree.from_swc(write(tmp_path, text))


def test_write_parent_first_renumbers_and_keeps_every_sample(tmp_path):
    original = read_swc(write(tmp_path, SWC_TEXT))
    assert not original.parent_before_child  # sample 30's parent is 20
    copy = read_swc(original.write_parent_first(tmp_path / "renumbered.swc"))
    assert copy.parent_before_child
    assert copy.samples.sample_id.tolist() == list(range(1, 8))
    # parents first, smallest original id next: 10, 7, 20, 30, 40, 99, 50
    order = original.parent_first_order()
    assert original.samples.sample_id[order].tolist() == [10, 7, 20, 30, 40, 99, 50]
    np.testing.assert_array_equal(copy.samples.xyz, original.samples.xyz[order])
    np.testing.assert_array_equal(copy.samples.radius, original.samples.radius[order])
    np.testing.assert_array_equal(copy.samples.kind, original.samples.kind[order])
    # the same tree: parent of each renumbered sample is the renumbered original parent
    position = np.argsort(order)
    expected = [-1 if p < 0 else position[p] for p in original.parent[order]]
    assert copy.parent.tolist() == expected


def test_read_swc_keeps_line_numbers_and_parent_ids(tmp_path):
    morphology = read_swc(write(tmp_path, SWC_TEXT))
    assert morphology.samples.line.tolist() == [5, 6, 7, 8, 9, 10, 11]
    assert morphology.samples.parent_id.tolist() == [20, -1, 10, 10, -1, 99, 30]
    assert not morphology.samples.xyz.flags.writeable

"""Bad input to the serial and cpu solvers: a ValueError that names the culprit."""

from __future__ import annotations

import re

import numpy as np
import pytest

import dhs
import trees
from dhs import Solver, Tree
from dhs.backends import cuda_simulator_enabled
from systems import cable_system, load_morphology

N = 30
BATCH = 4
ROW = 2  # the batch row that holds a bad value
NAMES = ("a", "b", "d", "rhs")


@pytest.fixture
def tree(rng, random_tree) -> Tree:
    """A relabelled random tree of N nodes (one root, somewhere)."""
    return random_tree(N, rng)


@pytest.fixture
def node(tree) -> int:
    """A non-root node."""
    return 17 if tree.parent[17] >= 0 else 18


def _arrays(tree: Tree, rng, layout: str) -> dict[str, np.ndarray]:
    """Writable a, b, d, rhs: "single" (n,), "shared" (a, b (n,)), "per_instance"."""
    batch = None if layout == "single" else BATCH
    system = cable_system(tree.parent, rng, batch, per_instance=layout == "per_instance")
    return dict(zip(NAMES, (array.copy() for array in system.arrays), strict=True))


def _raises(message: str):
    return pytest.raises(ValueError, match=re.escape(message))


# ----------------------------------------------------------------------------- shapes
def _shape_cases(n: int, batch: int):
    """(id, {name: shape}, words the message must contain); unnamed arrays stay valid."""
    return [
        ("d_rhs_mismatch", {"d": (batch, n), "rhs": (batch - 1, n)}, ["d has shape", "rhs"]),
        ("d_rhs_single_vs_batch", {"d": (n,), "rhs": (1, n)}, ["d has shape", "rhs"]),
        ("wrong_n", {"d": (n + 1,), "rhs": (n + 1,), "a": (n,)}, ["d and rhs", f"{n}-node"]),
        ("wrong_n_batch", {"d": (batch, n - 1), "rhs": (batch, n - 1)}, ["d and rhs"]),
        ("a_wrong_n", {"a": (n + 1,)}, ["a has shape", f"({n + 1},)"]),
        ("b_wrong_n", {"b": (n - 1,)}, ["b has shape", f"({n - 1},)"]),
        ("a_shared_b_per_instance", {"a": (n,), "b": (batch, n)}, ["a has shape", "b has"]),
        ("a_per_instance_b_shared", {"a": (batch, n), "b": (n,)}, ["a has shape", "b has"]),
        ("a_batch_mismatch", {"a": (batch + 1, n), "b": (batch + 1, n)}, ["a has shape"]),
        ("b_batch_mismatch", {"b": (batch - 1, n)}, ["b has shape"]),
        ("a_batched_d_single", {"d": (n,), "rhs": (n,), "a": (1, n)}, ["a has shape"]),
        ("d_3d", {"d": (1, batch, n), "rhs": (1, batch, n)}, ["d and rhs", "(1, 4, 30)"]),
        ("a_3d", {"a": (1, batch, n)}, ["a has shape"]),
        ("b_3d", {"a": (batch, n), "b": (1, batch, n)}, ["b has shape"]),
        ("d_scalar", {"d": (), "rhs": ()}, ["d and rhs"]),
        ("empty_batch", {"d": (0, n), "rhs": (0, n)}, ["empty batch"]),
        ("a_empty", {"a": (0,)}, ["a has shape"]),
    ]


@pytest.mark.parametrize(
    ("shapes", "words"),
    [pytest.param(shapes, words, id=id_) for id_, shapes, words in _shape_cases(N, BATCH)],
)
def test_wrong_shape(tree, backend, shapes, words):
    arrays = {
        "a": np.ones(N),
        "b": np.ones(N),
        "d": np.ones((BATCH, N)),
        "rhs": np.ones((BATCH, N)),
    }
    arrays.update({name: np.ones(shape) for name, shape in shapes.items()})
    with pytest.raises(ValueError) as error:
        Solver(tree, backend=backend).solve(**arrays)
    for word in words:
        assert word in str(error.value)


# ----------------------------------------------------------------------------- dtypes
BAD_DTYPES = {
    "int64": np.int64,
    "int32": np.int32,
    "uint8": np.uint8,
    "bool": np.bool_,
    "complex128": np.complex128,
    "complex64": np.complex64,
    "object": object,
    "str": np.str_,
}


@pytest.mark.parametrize("dtype", BAD_DTYPES.values(), ids=BAD_DTYPES.keys())
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["single", "per_instance"])
def test_wrong_dtype_names_the_array(tree, rng, backend, layout, name, dtype):
    arrays = _arrays(tree, rng, layout)
    arrays[name] = np.ones(arrays[name].shape, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^{name} (must be|has integer dtype)") as error:
        Solver(tree, backend=backend).solve(**arrays)
    assert f"dtype {arrays[name].dtype}" in str(error.value)


# ----------------------------------------------------------------------------- values


def _where(name: str, layout: str, node: int) -> str:
    """How the message must index the culprit: by the caller's own array shape."""
    if layout == "single" or (layout == "shared" and name in ("a", "b")):
        return f"{name}[{node}]"
    return f"{name}[{ROW}, {node}]"


def _value_cases():
    for layout in ("single", "shared", "per_instance"):
        for name in NAMES:
            yield pytest.param(layout, name, id=f"{layout}-{name}")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("layout", "name"), list(_value_cases()))
def test_non_finite_value_is_named(tree, rng, node, backend, layout, name, value):
    arrays = _arrays(tree, rng, layout)
    index = node if arrays[name].ndim == 1 else (ROW, node)
    arrays[name][index] = value
    with _raises(f"{_where(name, layout, node)} is {value}"):
        Solver(tree, backend=backend).solve(**arrays)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", ["a", "b"])
@pytest.mark.parametrize("layout", ["single", "per_instance"])
def test_non_finite_coupling_of_a_root_is_rejected(tree, rng, backend, layout, name, value):
    """A root's a and b are never read by a solve, but garbage there is still an error."""
    root = int(tree.roots[0])
    arrays = _arrays(tree, rng, layout)
    index = root if arrays[name].ndim == 1 else (ROW, root)
    arrays[name][index] = value
    with _raises(f"{_where(name, layout, root)} is {value}"):
        Solver(tree, backend=backend).solve(**arrays)


def test_non_finite_in_a_forest_root(rng, backend):
    parent = trees.random_forest(4, 10, rng)
    tree = Tree(parent)
    system = cable_system(parent, rng)
    b = system.b.copy()
    last_root = int(tree.roots[-1])
    b[last_root] = np.nan
    with _raises(f"b[{last_root}] is nan"):
        Solver(tree, backend=backend).solve(system.a, b, system.d, system.rhs)


@pytest.mark.parametrize("name", ["d", "rhs", "a"])
def test_nan_in_the_middle_of_a_large_batch(backend, name):
    """A NaN deep inside a large batch is found and named; nothing crashes."""
    data = load_morphology("pyramid_nodes_ca1size")
    tree = Tree(data["parent"])
    batch = 1000
    row, node = 517, 700
    d = np.tile(data["d"], (batch, 1))
    rhs = np.random.default_rng(0).standard_normal((batch, tree.n))
    arrays = {"a": data["a"].copy(), "b": data["b"].copy(), "d": d, "rhs": rhs}
    arrays[name][(row, node) if arrays[name].ndim == 2 else node] = np.nan
    where = f"{name}[{node}]" if arrays[name].ndim == 1 else f"{name}[{row}, {node}]"
    with _raises(f"{where} is nan"):
        Solver(tree, backend=backend).solve(**arrays)


CPU_OPTIONS = [
    pytest.param(workers, tile, id=f"workers{workers}-tile{tile}")
    for workers in (1, 2)
    for tile in (1, 3, 8)
]


@pytest.mark.parametrize(("workers", "tile"), CPU_OPTIONS)
@pytest.mark.parametrize("batch", [1, 2, 3, 5, 7, 8, 9, 17])
def test_cpu_finds_a_nan_in_every_row(rng, batch, workers, tile):
    """Every row of every work item is checked, whatever the batch, workers and tile."""
    parent = trees.random_forest(3, 20, rng)
    tree = Tree(parent)
    system = cable_system(parent, rng, batch)
    solver = Solver(tree, backend="cpu", workers=workers, tile=tile)
    node = int(np.flatnonzero(tree.parent >= 0)[-1])
    for row in range(batch):
        rhs = system.rhs.copy()
        rhs[row, node] = np.nan
        with _raises(f"rhs[{row}, {node}] is nan"):
            solver.solve(system.a, system.b, system.d, rhs)


# ----------------------------------------------------------------------------- zero pivots


@pytest.fixture(
    params=["serial", "cpu"],
    ids=["serial", "cpu"],
)
def pivot_backend(request):
    return request.param


def _zero_pivot_case(kind: str, rng):
    """(parent, a, b, d, rhs, node whose pivot is exactly 0) of one system."""
    if kind == "single_node":
        return np.array([-1]), [0.0], [0.0], [0.0], [1.0], 0
    if kind == "leaf":  # a leaf's pivot is its d
        parent = trees.chain(6)
        system = cable_system(parent, rng)
        d = system.d.copy()
        d[5] = 0.0
        return parent, system.a, system.b, d, system.rhs, 5
    if kind == "root":  # 1 - (-1 / 2) * (-2) = 0, exactly
        return trees.chain(2), [0.0, -1.0], [0.0, -2.0], [1.0, 2.0], [1.0, 1.0], 0
    if kind in ("internal", "internal_relabelled"):
        # Node 1 has leaf children 2 and 3, each subtracting (-1 / 2) * (-2) = 1 from its
        # pivot, so d[1] = 2 makes it exactly 0; node 0 stays non-singular.
        parent = np.array([-1, 0, 1, 1, 0])
        a = np.array([0.0, -1.0, -1.0, -1.0, -1.0])
        b = np.array([0.0, -1.0, -2.0, -2.0, -1.0])
        d = np.array([5.0, 2.0, 2.0, 2.0, 3.0])
        node = 1
        if kind == "internal_relabelled":
            perm = np.array([3, 0, 4, 1, 2])
            parent = trees.relabel(parent, perm)
            inverse = np.argsort(perm)
            a, b, d = a[inverse], b[inverse], d[inverse]
            node = int(perm[1])
        return parent, a, b, d, np.ones(5), node
    raise AssertionError(kind)


ZERO_PIVOT_KINDS = ["single_node", "leaf", "root", "internal", "internal_relabelled"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ZERO_PIVOT_KINDS)
def test_zero_pivot(rng, pivot_backend, kind, dtype):
    parent, a, b, d, rhs, node = _zero_pivot_case(kind, rng)
    with _raises(f"zero pivot at node {node}") as error:
        Solver(Tree(parent), backend=pivot_backend, dtype=dtype).solve(a, b, d, rhs)
    assert "in system" not in str(error.value)


@pytest.mark.parametrize("per_instance", [False, True], ids=["shared", "per_instance"])
@pytest.mark.parametrize("kind", ZERO_PIVOT_KINDS)
def test_zero_pivot_in_one_system_of_a_batch(rng, pivot_backend, kind, per_instance):
    parent, a, b, d, rhs, node = _zero_pivot_case(kind, rng)
    n = len(parent)
    healthy = np.asarray(d) + 10.0  # diagonally dominant
    d_batch = np.tile(healthy, (BATCH, 1))
    d_batch[ROW] = d
    coupling = (np.tile(a, (BATCH, 1)), np.tile(b, (BATCH, 1))) if per_instance else (a, b)
    with _raises(f"zero pivot at node {node} in system {ROW}"):
        Solver(Tree(parent), backend=pivot_backend).solve(
            *coupling, d_batch, np.ones((BATCH, n)) * np.asarray(rhs)
        )


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("name", ["gpu", "CPU", "", "numba", None])
def test_bad_backend(tree, name):
    with pytest.raises(ValueError, match="backend must be one of"):
        Solver(tree, backend=name)


@pytest.mark.parametrize("dtype", [np.float16, int, np.int32, np.complex128, object])
def test_bad_dtype(tree, backend, dtype):
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        Solver(tree, backend=backend, dtype=dtype)


@pytest.mark.parametrize("threads", [0, -1, 2.5, True, "4", None])
def test_bad_threads(tree, backend, threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Solver(tree, backend=backend, threads=threads)


@pytest.mark.parametrize("value", [np.array([-1, 0, 1]), [-1, 0], None, "tree"])
def test_tree_must_be_a_tree(backend, value):
    with pytest.raises(ValueError, match=r"tree must be a dhs\.Tree"):
        Solver(value, backend=backend)
    with pytest.raises(ValueError, match=r"tree must be a dhs\.Tree"):
        dhs.solve(value, [0.0], [0.0], [1.0], [1.0], backend=backend)


@pytest.mark.parametrize("option", ["workers", "tile"])
@pytest.mark.parametrize(
    "value",
    [
        -1,
        0,
    ],
)
def test_bad_workers_or_tile(tree, option, value):
    with pytest.raises(ValueError, match=f"{option} must be a positive integer"):
        Solver(tree, backend="cpu", **{option: value})


# ----------------------------------------------------------------------------- out, inplace
def _bad_outs(shape):
    wide = np.empty((*shape[:-1], 2 * shape[-1]))
    read_only = np.empty(shape)
    read_only.setflags(write=False)
    return {
        "wrong_shape": (np.empty((*shape[:-1], shape[-1] + 1)), "out must be"),
        "transposed_shape": (
            np.empty(shape[::-1]) if len(shape) == 2 else np.empty((1, *shape)),
            "out must be",
        ),
        "float32": (np.empty(shape, np.float32), "out must be"),
        "int": (np.empty(shape, np.int64), "out must be"),
        "non_contiguous": (wide[..., ::2], "not C-contiguous"),
        "fortran": (
            np.asfortranarray(np.empty((shape[0], 3, shape[-1]))[:, 0, :])
            if len(shape) == 2
            else wide[..., ::2],
            "not C-contiguous",
        ),
        "read_only": (read_only, "out is read-only"),
        "list": (np.zeros(shape).tolist(), "out must be a numpy array"),
    }


@pytest.mark.parametrize("bad", sorted(_bad_outs((BATCH, N))))
@pytest.mark.parametrize("layout", ["single", "per_instance"])
def test_bad_out(tree, rng, backend, layout, bad):
    arrays = _arrays(tree, rng, layout)
    out, message = _bad_outs(arrays["rhs"].shape)[bad]
    with _raises(message):
        Solver(tree, backend=backend).solve(**arrays, out=out)


def test_out_and_inplace_together(tree, rng, backend):
    arrays = _arrays(tree, rng, "per_instance")
    with _raises("give either out= or inplace=True, not both"):
        Solver(tree, backend=backend).solve(
            **arrays, out=np.empty_like(arrays["rhs"]), inplace=True
        )


@pytest.mark.parametrize(
    ("make_rhs", "message"),
    [
        (lambda rhs: rhs.astype(np.float32), "rhs (inplace=True) must be a C-contiguous"),
        (lambda rhs: np.asfortranarray(np.stack([rhs, rhs]))[0], "not C-contiguous"),
        (lambda rhs: rhs.tolist(), "rhs (inplace=True) must be a numpy array"),
    ],
    ids=["float32", "non_contiguous", "list"],
)
def test_bad_inplace_rhs(tree, rng, backend, make_rhs, message):
    arrays = _arrays(tree, rng, "per_instance")
    arrays["rhs"] = make_rhs(arrays["rhs"])
    with _raises(message):
        Solver(tree, backend=backend).solve(**arrays, inplace=True)


def test_inplace_read_only_rhs(tree, rng, backend):
    arrays = _arrays(tree, rng, "per_instance")
    arrays["rhs"].setflags(write=False)
    with _raises("rhs (inplace=True) is read-only"):
        Solver(tree, backend=backend).solve(**arrays, inplace=True)


# ----------------------------------------------------------------------------- backends
@pytest.mark.skipif(dhs.gpu_available(), reason="a CUDA GPU is present: backend='cuda' works")
@pytest.mark.skipif(
    cuda_simulator_enabled(), reason="NUMBA_ENABLE_CUDASIM=1: backend='cuda' runs the simulator"
)
def test_cuda_without_gpu(tree):
    with pytest.raises(ValueError, match="GPU"):
        Solver(tree, backend="cuda")
    with pytest.raises(ValueError, match="GPU"):
        dhs.solve(tree, np.zeros(N), np.zeros(N), np.ones(N), np.ones(N), backend="cuda")


@pytest.mark.skipif(dhs.gpu_available(), reason="a CUDA GPU is present: 'auto' picks 'cuda'")
def test_auto_is_cpu_without_gpu(tree):
    assert Solver(tree).backend == "cpu"
    assert Solver(tree, backend="auto").backend == "cpu"
    assert dhs.resolve_backend("auto") == "cpu"

"""Tests of the serial and cpu solvers against a reference independent of dhs's solvers.

The reference (:func:`systems.reference_solve`) is a dense or sparse LU solve of the
matrix in NEURON's convention; NEURON's own solution of a real cell is checked too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pytest

import dhs
import systems
import trees
from dhs import Solver, Tree
from systems import HinesSystem, cable_system, load_morphology, reference_solve, relative_error

FLOAT64_TOLERANCE = 1e-10
NEURON_TOLERANCE = 1e-12
THREADS = (1, 4, 32)
# Bound on the float32 solution's error (max |x32 - x64_ref| / max |x64_ref|), inputs
# rounded to float32 included. Measured on the cases below (both backends, every kind):
# at most 1.8e-6 on the random cable systems (star; condition numbers ~1e2-1e3) and,
# against NEURON's solution of its own matrices, 2.8e-6 (pyramid_nodes_ca1size, condition
# number 1.3e4) and 1.4e-5 (pyramid_nodes_1um).
FLOAT32_BOUND = 1e-5
FLOAT32_NEURON_BOUND = 1e-4
MORPHOLOGIES = ("pyramid_nodes_ca1size", "pyramid_nodes_1um")


def _morphology_parent(name: str):
    return lambda rng: load_morphology(name)["parent"]


# Each builder takes a seeded Generator and returns a parent array.
TREE_CASES = {
    **trees.CASES,
    "dend3_swc": lambda rng: Tree.from_swc(systems.MORPHOLOGY_DIR / "dend3.swc").parent,
    **{name: _morphology_parent(name) for name in MORPHOLOGIES},
}
# kind -> (batch, per_instance); "single" is one (n,) system.
KINDS = {"single": (None, False), "shared": (5, False), "per_instance": (20, True)}


@dataclass(frozen=True)
class Case:
    name: str
    parent: np.ndarray
    tree: Tree
    systems: dict[str, tuple[HinesSystem, np.ndarray]]  # kind -> (system, reference x)


@pytest.fixture(scope="module", params=sorted(TREE_CASES))
def case(request, seeded_rng) -> Case:
    """A tree with one system of every kind and its reference solution (computed once)."""
    name = request.param
    rng = seeded_rng("tree", name)
    parent = TREE_CASES[name](rng)
    tree = Tree(parent)
    cases = {}
    for kind, (batch, per_instance) in KINDS.items():
        system = cable_system(parent, rng, batch, per_instance=per_instance)
        cases[kind] = (system, reference_solve(parent, system))
    return Case(name, tree.parent, tree, cases)


@pytest.fixture(params=sorted(KINDS))
def kind(request) -> str:
    return request.param


# ----------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("name", ["binary", "star_relabelled", "forest_relabelled", "chain"])
def test_to_dense_matches_independent_sparse_construction(name, seeded_rng):
    rng = seeded_rng("dense", name)
    parent = TREE_CASES[name](rng)
    system = cable_system(parent, rng)
    dense = dhs.to_dense(Tree(parent), system.a, system.b, system.d)
    assert np.array_equal(dense, systems.sparse_matrix(parent, *system.arrays[:3]).toarray())


def test_reference_solves_the_system(case, kind):
    """The oracle's x satisfies the equations, row by row, and the rows are dominant."""
    system, reference = case.systems[kind]
    n = case.tree.n
    a, b = (
        np.broadcast_to(array, np.shape(system.d)).reshape(-1, n) for array in system.arrays[:2]
    )
    d, rhs, x = (np.reshape(array, (-1, n)) for array in (system.d, system.rhs, reference))
    for row in range(d.shape[0]):
        matrix = systems.sparse_matrix(case.parent, a[row], b[row], d[row])
        assert np.max(np.abs(matrix @ x[row] - rhs[row])) < 1e-12 * np.max(np.abs(rhs[row]))
        off_diagonal = abs(matrix).sum(axis=1).A1 - np.abs(d[row])
        assert np.all(np.abs(d[row]) > off_diagonal)


@pytest.mark.parametrize("name", MORPHOLOGIES)
def test_reference_reproduces_neuron(name):
    data = load_morphology(name)
    system = HinesSystem(data["a"], data["b"], data["d"], data["rhs"])
    assert relative_error(reference_solve(data["parent"], system), data["solution"]) < 1e-12


# ----------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("threads", THREADS)
def test_matches_reference(case, kind, threads, backend):
    system, reference = case.systems[kind]
    x = Solver(case.tree, threads=threads, backend=backend).solve(*system.arrays)
    assert isinstance(x, np.ndarray)
    assert x.shape == reference.shape
    assert x.dtype == np.float64
    assert relative_error(x, reference) < FLOAT64_TOLERANCE


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name", MORPHOLOGIES)
def test_reproduces_neuron_solution(name, threads, backend):
    data = load_morphology(name)
    solver = Solver(Tree(data["parent"]), threads=threads, backend=backend)
    x = solver.solve(data["a"], data["b"], data["d"], data["rhs"])
    assert relative_error(x, data["solution"]) < NEURON_TOLERANCE


@pytest.mark.parametrize("name", MORPHOLOGIES)
def test_reproduces_neuron_solution_in_float32(name, backend):
    data = load_morphology(name)
    solver = Solver(Tree(data["parent"]), backend=backend, dtype=np.float32)
    x = solver.solve(data["a"], data["b"], data["d"], data["rhs"])
    assert x.dtype == np.float32
    assert relative_error(x, data["solution"]) < FLOAT32_NEURON_BOUND


def test_float32_error_is_bounded(case, kind, backend):
    system, reference = case.systems[kind]
    solver = Solver(case.tree, threads=4, backend=backend, dtype=np.float32)
    x = solver.solve(*system.astype(np.float32).arrays)
    assert x.dtype == np.float32
    assert x.shape == reference.shape
    assert relative_error(x, reference) < FLOAT32_BOUND


def test_float32_solver_converts_float64_inputs(backend, seeded_rng):
    rng = seeded_rng("convert")
    parent = trees.random_recursive(50, rng)
    system = cable_system(parent, rng, 3)
    solver = Solver(Tree(parent), backend=backend, dtype=np.float32)
    x = solver.solve(*system.arrays)
    assert x.dtype == np.float32
    assert np.array_equal(x, solver.solve(*system.astype(np.float32).arrays))


def test_non_contiguous_and_other_dtype_inputs(backend, seeded_rng):
    """Strided views and float32 inputs to a float64 solver are read like their copies."""
    rng = seeded_rng("strided")
    parent = trees.random_recursive(60, rng)
    system = cable_system(parent, rng, 4, per_instance=True)
    solver = Solver(Tree(parent), backend=backend)
    expected = solver.solve(*system.arrays)
    strided = []
    for array in system.arrays:
        wide = np.zeros((array.shape[0], 2 * array.shape[1]))
        wide[:, ::2] = array
        strided.append(wide[:, ::2])
    assert not strided[0].flags.c_contiguous
    assert np.array_equal(solver.solve(*strided), expected)
    fortran = [np.asfortranarray(array) for array in system.arrays]
    assert np.array_equal(solver.solve(*fortran), expected)
    low = system.astype(np.float32)
    assert np.array_equal(solver.solve(*low.arrays), solver.solve(*low.astype(np.float64).arrays))


# ----------------------------------------------------------------------------- cpu paths
CPU_PATH_TREES = ("forest_relabelled", "pyramid_nodes_ca1size")
CPU_PATH_BATCHES = (1, 2, 3, 7, 8, 9, 33)


@pytest.fixture(scope="module")
def cpu_path_systems(seeded_rng):
    """(tree name, batch, per_instance) -> (Tree, system, reference), built on demand."""
    cache = {}

    def get(name: str, batch: int, per_instance: bool):
        key = (name, batch, per_instance)
        if key not in cache:
            rng = seeded_rng("cpu-path", *key)
            parent = TREE_CASES[name](rng)
            system = cable_system(parent, rng, batch, per_instance=per_instance)
            cache[key] = (Tree(parent), system, reference_solve(parent, system))
        return cache[key]

    return get


def _spy_on_cpu_kernels(monkeypatch) -> tuple[list[tuple[str, np.ndarray]], set[str]]:
    """Wrap every Numba kernel of dhs.solvers.cpu; returns (calls, kernel names).

    Each call is recorded as (kernel name, its first argument: the node order).
    """
    calls = []
    names = set()
    for name, kernel in vars(dhs.solvers.cpu).items():
        if isinstance(kernel, numba.core.registry.CPUDispatcher):

            def spy(order, *args, _kernel=kernel, _name=name):
                calls.append((_name, order))
                return _kernel(order, *args)

            monkeypatch.setattr(dhs.solvers.cpu, name, spy)
            names.add(name)
    return calls, names


def _is_memory_order(tree: Tree, order: np.ndarray) -> bool:
    """Whether ``order`` is the whole tree in the serial solve's node order."""
    serial_order = np.arange(tree.n) if tree.parent_before_child else tree.order
    return np.array_equal(order, serial_order)


def _follows_serial_order_per_cell(tree: Tree, order: np.ndarray) -> bool:
    """Whether ``order`` visits every cell's nodes in the serial solve's relative order.

    Then each system's operations are the serial solve's, in the same order (cells do
    not interact), so the results must be bitwise equal.
    """
    serial_order = np.arange(tree.n) if tree.parent_before_child else tree.order
    rank = np.empty(tree.n, np.int64)
    rank[serial_order] = np.arange(tree.n)
    by_cell = np.argsort(tree.component[order], kind="stable")
    cells, ranks = tree.component[order][by_cell], rank[order][by_cell]
    return bool(np.all((np.diff(ranks) > 0) | (np.diff(cells) != 0)))


CPU_PATH_PARAMETERS = [
    pytest.param(batch, workers, tile, id=f"batch{batch}-workers{workers}-tile{tile}")
    for batch in CPU_PATH_BATCHES
    for workers in (1, 2)
    for tile in (1, 3, 8)
]


@pytest.mark.parametrize("per_instance", [False, True], ids=["shared", "per_instance"])
@pytest.mark.parametrize(("batch", "workers", "tile"), CPU_PATH_PARAMETERS)
@pytest.mark.parametrize("name", CPU_PATH_TREES)
def test_cpu_node_orders_and_tiles(
    cpu_path_systems, monkeypatch, name, batch, workers, tile, per_instance
):
    """Every batch size, worker count and tile agrees with the reference.

    _CpuEngine.run picks a kernel and a node order (the whole tree in memory order, or
    cell by cell) from the batch size and the workers. When the order visits each cell
    in the serial solve's order, the cpu backend performs the serial solve's operations
    in the same order, so it must be bitwise equal to the serial backend (it is).
    """
    tree, system, reference = cpu_path_systems(name, batch, per_instance)
    solver = Solver(tree, backend="cpu", workers=workers, tile=tile)
    calls, _ = _spy_on_cpu_kernels(monkeypatch)
    x = solver.solve(*system.arrays)
    assert relative_error(x, reference) < FLOAT64_TOLERANCE
    assert len(calls) == 1
    if _follows_serial_order_per_cell(tree, calls[0][1]):
        serial = Solver(tree, backend="serial").solve(*system.arrays)
        assert np.array_equal(x, serial)


def test_cpu_parameters_cover_both_node_orders_and_every_kernel(cpu_path_systems, monkeypatch):
    """test_cpu_node_orders_and_tiles reaches the memory order, another order, and every
    Numba kernel of dhs.solvers.cpu."""
    calls, kernels = _spy_on_cpu_kernels(monkeypatch)
    memory_order = set()
    for name in CPU_PATH_TREES:
        for batch, workers, tile in (param.values for param in CPU_PATH_PARAMETERS):
            tree, system, _ = cpu_path_systems(name, batch, False)
            Solver(tree, backend="cpu", workers=workers, tile=tile).solve(*system.arrays)
            memory_order.add(_is_memory_order(tree, calls[-1][1]))
    assert memory_order == {True, False}
    assert {kernel for kernel, _ in calls} == kernels


# ----------------------------------------------------------------------------- out, inplace
@pytest.fixture
def small_case(kind, seeded_rng):
    """A relabelled forest with a system of the given kind (cheap, for API tests)."""
    rng = seeded_rng("small", kind)
    parent = trees.random_forest(3, 40, rng)
    batch, per_instance = KINDS[kind]
    return Tree(parent), cable_system(parent, rng, batch, per_instance=per_instance)


def test_out_gives_the_plain_result(small_case, backend):
    tree, system = small_case
    originals = system.copy()
    solver = Solver(tree, backend=backend)
    plain = solver.solve(*system.arrays)
    out = np.full_like(plain, np.nan)
    result = solver.solve(*system.arrays, out=out)
    assert np.array_equal(out, plain)
    assert np.array_equal(result, plain)
    assert result.shape == out.shape
    assert np.shares_memory(result, out)
    for before, after in zip(originals.arrays, system.arrays, strict=True):
        assert np.array_equal(before, after)


def test_out_is_returned_itself(small_case, backend):
    tree, system = small_case
    solver = Solver(tree, backend=backend)
    out = np.empty(np.shape(system.rhs))
    assert solver.solve(*system.arrays, out=out) is out


def test_inplace_overwrites_only_rhs(small_case, backend):
    tree, system = small_case
    solver = Solver(tree, backend=backend)
    plain = solver.solve(*system.arrays)
    a, b, d = (array.copy() for array in system.arrays[:3])
    rhs = system.rhs.copy()
    result = solver.solve(a, b, d, rhs, inplace=True)
    assert np.array_equal(result, plain)
    assert np.array_equal(rhs, plain)
    assert np.shares_memory(result, rhs)
    for before, after in zip(system.arrays[:3], (a, b, d), strict=True):
        assert np.array_equal(before, after)


def test_plain_call_modifies_no_input(small_case, backend):
    tree, system = small_case
    originals = system.copy()
    for dtype in (np.float64, np.float32):
        Solver(tree, backend=backend, dtype=dtype).solve(*system.arrays)
        for before, after in zip(originals.arrays, system.arrays, strict=True):
            assert np.array_equal(before, after)


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("batch", [None, 5, 40])
def test_deterministic(backend, batch, seeded_rng):
    rng = seeded_rng("determinism", batch)
    parent = trees.random_forest(4, 80, rng)
    system = cable_system(parent, rng, batch, per_instance=batch == 40)
    tree = Tree(parent)
    solver = Solver(tree, backend=backend)
    first = solver.solve(*system.arrays)
    assert np.array_equal(first, solver.solve(*system.arrays))
    assert np.array_equal(first, Solver(tree, backend=backend).solve(*system.arrays))


def test_numba_kernels_do_not_share_a_disk_cache_entry():
    """Behaviour must not depend on which kernel happened to fill Numba's cache first."""
    cached = [
        (name, kernel)
        for module in (dhs.solvers.serial, dhs.solvers.cpu)
        for name, kernel in vars(module).items()
        if isinstance(kernel, numba.core.registry.CPUDispatcher)
        and not isinstance(kernel._cache, numba.core.caching.NullCache)
    ]
    functions = [id(kernel.py_func) for _, kernel in cached]
    shared = [name for name, kernel in cached if functions.count(id(kernel.py_func)) > 1]
    assert not shared


# ----------------------------------------------------------------------------- dhs.solve
@pytest.mark.parametrize("threads", THREADS)
def test_solve_convenience(small_case, backend, threads):
    tree, system = small_case
    expected = Solver(tree, threads=threads, backend=backend).solve(*system.arrays)
    x = dhs.solve(tree, *system.arrays, backend=backend, threads=threads)
    assert np.array_equal(x, expected)
    out = np.empty_like(expected)
    dhs.solve(tree, *system.arrays, backend=backend, threads=threads, out=out)
    assert np.array_equal(out, expected)
    rhs = system.rhs.copy()
    dhs.solve(tree, *system.arrays[:3], rhs, backend=backend, threads=threads, inplace=True)
    assert np.array_equal(rhs, expected)
    x32 = dhs.solve(tree, *system.arrays, backend=backend, threads=threads, dtype=np.float32)
    assert x32.dtype == np.float32


def test_solve_convenience_passes_cpu_options(small_case):
    tree, system = small_case
    expected = Solver(tree, backend="cpu", workers=1, tile=3).solve(*system.arrays)
    x = dhs.solve(tree, *system.arrays, backend="cpu", workers=1, tile=3)
    assert np.array_equal(x, expected)

"""Checks of the CUDA backend, shared by the simulator run and the real-GPU tests.

Under the CUDA simulator (which must be enabled before Numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python tests/support/cudasim_check.py

runs :data:`SMALL_CASES` and :func:`error_checks`, prints a one-line JSON summary and
exits with 0 when every check passed (1 otherwise). ``tests/test_cuda.py`` runs it in a
subprocess, and runs :data:`LARGE_CASES` in-process on a real GPU.

Every case is compared with the serial backend in float64 (or with NEURON's solution).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
for path in (TESTS_DIR, TESTS_DIR.parent.parent):  # trees/systems, and dhs when run as a script
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402

import dhs  # noqa: E402
import trees  # noqa: E402
from systems import (  # noqa: E402
    MORPHOLOGY_DIR,
    HinesSystem,
    cable_system,
    load_morphology,
    relative_error,
)

FLOAT64_TOLERANCE = 1e-10
FLOAT32_BOUND = 1e-5  # as tests/test_solver.py: measured at most 1.8e-6 on the CPU
NEURON_TOLERANCE = 1e-12


@dataclass
class CudaCase:
    """One comparison.

    mode: "solver" (``Solver(backend="cuda")`` on host arrays), "global" (a
    ``CudaEngine`` whose shared memory is too small, so the global-memory path runs) or
    "device" (inputs and outputs as CUDA device arrays, also with out= and inplace=).
    """

    parent: np.ndarray
    system: HinesSystem
    threads: int
    dtype: type = np.float64
    mode: str = "solver"
    reference: np.ndarray | None = None  # default: the serial backend in float64
    tolerance: float | None = None
    shared_memory: bool | None = None  # assert which memory path the engine takes
    repeat: bool = False  # solve twice and require bitwise identical results


def _seeded(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _case(name, parent_of, batch, *, per_instance=False, **options) -> Callable[[], CudaCase]:
    def build() -> CudaCase:
        rng = _seeded(name)
        parent = parent_of(rng)
        system = cable_system(parent, rng, batch, per_instance=per_instance)
        return CudaCase(parent, system, **options)

    return build


def _neuron_case(morphology: str, **options) -> Callable[[], CudaCase]:
    def build() -> CudaCase:
        data = load_morphology(morphology)
        system = HinesSystem(data["a"], data["b"], data["d"], data["rhs"])
        return CudaCase(
            data["parent"],
            system,
            reference=data["solution"],
            tolerance=NEURON_TOLERANCE,
            **options,
        )

    return build


def _random60(rng):
    return trees.relabel(trees.random_recursive(60, rng), trees.random_permutation(60, rng))


def _small_forest(rng):
    return trees.random_forest(3, 25, rng)


def _ca1(rng):
    return load_morphology("pyramid_nodes_ca1size")["parent"]


def _um1(rng):
    return load_morphology("pyramid_nodes_1um")["parent"]


def _cell_forest(rng):
    """Different cells together: two real morphologies and random and regular trees."""
    dend3 = dhs.Tree.from_swc(MORPHOLOGY_DIR / "dend3.swc").parent
    return trees.forest(
        [
            _ca1(rng),
            dend3,
            trees.deep_attachment(500, rng),
            trees.chain(300),
            trees.star(100),
            trees.relabel(trees.random_recursive(700, rng), trees.random_permutation(700, rng)),
        ]
    )


def _small_cases() -> dict[str, Callable[[], CudaCase]]:
    cases = {}
    for k in (4, 32):
        cases |= {
            f"random60_batch3_shared_k{k}": _case(
                f"r60s{k}", _random60, 3, threads=k, repeat=k == 4
            ),
            f"random60_batch2_per_instance_k{k}": _case(
                f"r60p{k}", _random60, 2, per_instance=True, threads=k
            ),
            f"forest3_batch2_k{k}": _case(f"f3{k}", _small_forest, 2, threads=k),
            f"single_system_k{k}": _case(f"single{k}", _random60, None, threads=k),
            f"chain100_k{k}": _case(f"chain{k}", lambda rng: trees.chain(100), 1, threads=k),
            f"star40_batch2_k{k}": _case(f"star{k}", lambda rng: trees.star(40), 2, threads=k),
            f"global_memory_k{k}": _case(
                f"global{k}", _small_forest, 2, per_instance=True, threads=k, mode="global"
            ),
            f"float32_batch2_k{k}": _case(
                f"f32{k}", _random60, 2, threads=k, dtype=np.float32, tolerance=FLOAT32_BOUND
            ),
            f"device_arrays_k{k}": _case(
                f"device{k}", _small_forest, 3, per_instance=k == 4, threads=k, mode="device"
            ),
        }
    # More systems than fit in one block: the last block has idle groups (k=64: two
    # systems per block) or each system has its own block (k=128).
    for k in (64, 128):
        cases[f"random60_batch3_k{k}_several_blocks"] = _case(
            f"blocks{k}", _random60, 3, per_instance=True, threads=k
        )
    cases["dend3_batch2_k32"] = _case(
        "dend3", lambda rng: dhs.Tree.from_swc(MORPHOLOGY_DIR / "dend3.swc").parent, 2, threads=32
    )
    return cases


def _large_cases() -> dict[str, Callable[[], CudaCase]]:
    cases = {}
    for dtype, tolerance in ((np.float64, None), (np.float32, FLOAT32_BOUND)):
        suffix = np.dtype(dtype).name
        for per_instance in (False, True):
            kind = "per_instance" if per_instance else "shared"
            name = f"ca1size_batch3000_{kind}_{suffix}"
            cases[name] = _case(
                name,
                _ca1,
                3000,
                per_instance=per_instance,
                threads=32,
                dtype=dtype,
                tolerance=tolerance,
                shared_memory=True,
                repeat=True,
            )
        cases[f"cell_forest_batch300_{suffix}"] = _case(
            f"forest{suffix}",
            _cell_forest,
            300,
            per_instance=True,
            threads=32,
            dtype=dtype,
            tolerance=tolerance,
            repeat=True,
        )
    cases |= {
        "ca1size_batch3000_k4": _case("ca1k4", _ca1, 3000, threads=4),
        "ca1size_batch3000_k128": _case("ca1k128", _ca1, 3000, threads=128),
        # 5551 nodes: d and rhs need 88 KiB > 48 KiB of shared memory in float64.
        "1um_global_memory_batch500_float64": _case(
            "1um", _um1, 500, per_instance=True, threads=32, shared_memory=False, repeat=True
        ),
        "1um_single_system": _case("1um1", _um1, None, threads=32, shared_memory=False),
        # ... but in float32 they need 43 KiB, so the shared-memory path takes a large cell.
        "1um_float32_shared_memory_batch500": _case(
            "1um32",
            _um1,
            500,
            threads=32,
            dtype=np.float32,
            tolerance=FLOAT32_BOUND,
            shared_memory=True,
        ),
        "ca1size_forced_global_memory_batch1000": _case(
            "ca1global", _ca1, 1000, threads=32, mode="global"
        ),
        "ca1size_device_arrays_batch3000": _case(
            "ca1device", _ca1, 3000, per_instance=True, threads=32, mode="device"
        ),
        "ca1size_device_arrays_float32": _case(
            "ca1device32",
            _ca1,
            3000,
            threads=32,
            mode="device",
            dtype=np.float32,
            tolerance=FLOAT32_BOUND,
        ),
        "neuron_ca1size": _neuron_case("pyramid_nodes_ca1size", threads=32),
        "neuron_1um": _neuron_case("pyramid_nodes_1um", threads=32),
    }
    return cases


SMALL_CASES = _small_cases()
LARGE_CASES = _large_cases()


# ----------------------------------------------------------------------------- checks
def _serial_reference(tree: dhs.Tree, system: HinesSystem) -> np.ndarray:
    return dhs.Solver(tree, backend="serial").solve(*system.astype(np.float64).arrays)


def _solve(case: CudaCase, tree: dhs.Tree) -> tuple[np.ndarray, dict]:
    """The CUDA solution of the case as a host array, and facts to report."""
    from numba import cuda

    from dhs.layout import dhs_layout
    from dhs.matrix import check_system
    from dhs.solvers.cuda_engine import CudaEngine

    arrays = case.system.astype(case.dtype).arrays
    facts = {}
    if case.mode == "global":
        engine = CudaEngine(dhs_layout(tree, case.threads), case.dtype, shared_memory_bytes=64)
        facts["shared_memory"] = bool(engine.uses_shared_memory)
        system = check_system(tree, *arrays, dtype=case.dtype)
        x = np.full(system.rhs.shape, np.nan, case.dtype)
        failed = engine.run(system, x)
        facts["failed_rows"] = len(failed)
        return x.reshape(case.system.rhs.shape), facts

    solver = dhs.Solver(tree, threads=case.threads, backend="cuda", dtype=case.dtype)
    facts["backend"] = solver.backend
    facts["shared_memory"] = bool(solver._engine.uses_shared_memory)
    if case.mode == "solver":
        x = solver.solve(*arrays)
        facts["host_result"] = isinstance(x, np.ndarray) and x.dtype == case.dtype
        if case.repeat:
            facts["bitwise_repeat"] = bool(np.array_equal(x, solver.solve(*arrays)))
        return x, facts

    assert case.mode == "device", case.mode
    host = solver.solve(*arrays)
    device = [cuda.to_device(array) for array in arrays]
    x_device = solver.solve(*device)
    facts["device_result"] = not isinstance(x_device, np.ndarray)
    x = x_device.copy_to_host()
    out = cuda.device_array(arrays[3].shape, case.dtype)
    returned = solver.solve(*device, out=out)
    facts["out_returned"] = returned is out
    facts["out_equals_host"] = bool(np.array_equal(out.copy_to_host(), host))
    facts["inputs_unchanged"] = all(
        np.array_equal(array.copy_to_host(), original)
        for array, original in zip(device, arrays, strict=True)
    )
    rhs = cuda.to_device(arrays[3])
    solver.solve(*device[:3], rhs, inplace=True)
    facts["inplace_equals_host"] = bool(np.array_equal(rhs.copy_to_host(), host))
    facts["device_equals_host"] = bool(np.array_equal(x, host))
    return x, facts


def _simulated() -> bool:
    from dhs.backends import cuda_simulator_enabled

    return cuda_simulator_enabled()


def check_case(name: str, case: CudaCase) -> dict:
    """Solve one case; the summary's ``ok`` says whether every expectation held."""
    start = time.perf_counter()
    result = {"name": name, "ok": False}
    try:
        tree = dhs.Tree(case.parent)
        reference = (
            case.reference if case.reference is not None else _serial_reference(tree, case.system)
        )
        x, facts = _solve(case, tree)
        tolerance = case.tolerance or FLOAT64_TOLERANCE
        error = relative_error(x, reference)
        result |= facts
        result |= {"error": error, "tolerance": tolerance, "dtype": np.dtype(case.dtype).name}
        problems = []
        if not error < tolerance:
            problems.append(f"error {error:.3g} >= {tolerance:.3g}")
        bitwise = (
            case.reference is None
            and np.dtype(case.dtype) == np.float64
            and tree.parent_before_child
            and _simulated()
        )
        if bitwise and not np.array_equal(x, reference):
            # children are pulled in serial Hines's order and the simulator's arithmetic
            # is Python's: the same operations in the same order, so the same bits
            problems.append(f"not bitwise equal to the serial solve: {error:.3g}")
        if x.shape != np.shape(case.system.rhs) or x.dtype != case.dtype:
            problems.append(f"result {x.dtype} {x.shape}")
        expected_shared = case.shared_memory if case.mode != "global" else False
        if expected_shared is not None and facts["shared_memory"] != expected_shared:
            problems.append(f"shared memory path {facts['shared_memory']}")
        problems += [
            f"{fact} is {value}"
            for fact, value in facts.items()
            if value is False and fact != "shared_memory"
        ]
        if facts.get("backend", "cuda") != "cuda" or facts.get("failed_rows", 0):
            problems.append(f"backend {facts.get('backend')}, failed {facts.get('failed_rows')}")
        result["problems"] = problems
        result["ok"] = not problems
    except Exception:
        result["problems"] = [traceback.format_exc()]
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _expect_value_error(solve: Callable[[], object], *words: str) -> dict:
    try:
        solve()
    except ValueError as error:
        message = str(error)
        return {"ok": all(word in message for word in words), "message": message}
    except Exception as error:
        return {"ok": False, "message": f"{type(error).__name__}: {error}"}
    return {"ok": False, "message": "no error raised"}


def error_checks() -> dict[str, dict]:
    """Bad values on the CUDA backend raise a ValueError naming the culprit."""
    from numba import cuda

    rng = _seeded("errors")
    parent = _random60(rng)
    tree = dhs.Tree(parent)
    node = int(np.flatnonzero(tree.parent >= 0)[0])
    root = int(tree.roots[0])
    system = cable_system(parent, rng, 3, per_instance=True)
    solver = dhs.Solver(tree, threads=4, backend="cuda")

    def with_value(name, index, value=np.nan):
        arrays = dict(zip("a b d rhs".split(), (x.copy() for x in system.arrays), strict=True))
        arrays[name][index] = value
        return arrays

    checks = {}
    for name in ("a", "b", "d", "rhs"):
        arrays = with_value(name, (1, node))
        checks[f"nan_in_{name}"] = _expect_value_error(
            lambda arrays=arrays: solver.solve(**arrays), f"{name}[1, {node}]"
        )
    arrays = with_value("rhs", (2, node), np.inf)
    checks["inf_in_rhs"] = _expect_value_error(lambda: solver.solve(**arrays), f"rhs[2, {node}]")
    arrays = with_value("a", (1, root))
    checks["nan_in_root_a"] = _expect_value_error(lambda: solver.solve(**arrays), f"a[1, {root}]")
    arrays = with_value("d", (2, node))
    device = {key: cuda.to_device(value) for key, value in arrays.items()}
    checks["nan_in_device_d"] = _expect_value_error(lambda: solver.solve(**device), f"d[2, {node}]")
    # Node 1's two leaf children each subtract (-1 / 2) * (-2) = 1 from d[1] = 2.
    pivot_tree = dhs.Tree([-1, 0, 1, 1, 0])
    a = np.array([0.0, -1.0, -1.0, -1.0, -1.0])
    b = np.array([0.0, -1.0, -2.0, -2.0, -1.0])
    d = np.array([5.0, 2.0, 2.0, 2.0, 3.0])
    with warnings.catch_warnings():  # the simulator divides numpy scalars by 0
        warnings.simplefilter("ignore", RuntimeWarning)
        checks["zero_pivot"] = _expect_value_error(
            lambda: dhs.Solver(pivot_tree, threads=4, backend="cuda").solve(a, b, d, np.ones(5)),
            "zero pivot at node 1",
        )
    return checks


def main() -> int:
    from numba import config

    start = time.perf_counter()
    sys.setswitchinterval(5e-4)  # the simulator's threads meet at many barriers
    summary = {"simulator": bool(config.ENABLE_CUDASIM)}
    tree = dhs.Tree(trees.chain(5))
    summary["auto_backend"] = dhs.Solver(tree).backend
    summary["cuda_backend"] = dhs.Solver(tree, backend="cuda").backend
    summary["gpu_available"] = dhs.gpu_available()
    summary["cases"] = [check_case(name, build()) for name, build in SMALL_CASES.items()]
    summary["errors"] = error_checks()
    summary["seconds"] = round(time.perf_counter() - start, 3)
    summary["ok"] = (
        summary["simulator"]
        and summary["auto_backend"] == "cpu"
        and summary["cuda_backend"] == "cuda"
        and not summary["gpu_available"]
        and all(case["ok"] for case in summary["cases"])
        and all(check["ok"] for check in summary["errors"].values())
    )
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

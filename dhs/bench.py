"""Solve benchmark: serial Hines, the cpu backend, scipy's spsolve and (on a GPU) cuda.

Everything is measured side by side in one run on batches of a CA1-sized cell, and
reported as ns per node and as ratios, with the machine's copy bandwidth measured in
the same run for the bandwidth bound (48 B/node: read a, b, d, rhs; write d, rhs;
REFERENCE.md §3). Results go to a JSON file with machine and device information.

Reproduce with ``dhs bench`` (or ``python3 tasks.py bench``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .backends import gpu_available
from .solver import Solver
from .tree import Tree

DATA = Path(__file__).resolve().parent.parent / "data"
CELL_FILE = DATA / "morphologies" / "pyramid_nodes_ca1size.npz"
BYTES_PER_NODE = 48  # fp64: read a, b, d, rhs (32 B) and write d, rhs (16 B)


def load_cell(path: Path = CELL_FILE) -> tuple[Tree, dict[str, np.ndarray]]:
    """A NEURON-derived cell and NEURON's own matrix for it (see data/README.md)."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return Tree(arrays["parent"]), arrays


def make_batch(cell: dict[str, np.ndarray], batch: int, seed: int = 0):
    """``batch`` instances of the cell's system: shared a, b; per-instance d and rhs."""
    rng = np.random.default_rng(seed)
    d = cell["d"] * rng.uniform(1.0, 1.1, (batch, cell["d"].size))
    rhs = rng.standard_normal((batch, cell["d"].size))
    return cell["a"].copy(), cell["b"].copy(), d, rhs


def time_call(function: Callable[[], object], repeats: int, budget_s: float = 20.0) -> dict:
    """Best and median wall time of ``function`` over up to ``repeats`` calls."""
    function()  # warm-up: compilation, caches, page faults
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return {"best_s": min(times), "median_s": statistics.median(times), "runs": len(times)}


def copy_bandwidth(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Best-of copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    source = np.ones(n_bytes // 8)
    target = np.empty_like(source)
    timing = time_call(lambda: np.copyto(target, source), repeats)
    return 2 * n_bytes / timing["best_s"]


def machine_info() -> dict:
    import numba

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "gpu": None,
    }
    if gpu_available():
        from numba import cuda

        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        info["gpu"] = {"name": name, "compute_capability": list(device.compute_capability)}
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _spsolve_per_cell(tree: Tree, a, b, d, rhs, cells: int) -> Callable[[], None]:
    """What a user would otherwise pick: scipy.sparse.linalg.spsolve, cell by cell."""
    import scipy.sparse as sparse
    from scipy.sparse.linalg import spsolve

    child = np.flatnonzero(tree.parent >= 0)
    rows = np.concatenate([np.arange(tree.n), child, tree.parent[child]])
    cols = np.concatenate([np.arange(tree.n), tree.parent[child], child])

    def run():
        for cell in range(cells):
            values = np.concatenate([d[cell], b[child], a[child]])
            matrix = sparse.csc_matrix((values, (rows, cols)), shape=(tree.n, tree.n))
            spsolve(matrix, rhs[cell])

    return run


def run_benchmark(
    batches: tuple[int, ...] = (715, 3000, 7150),
    repeats: int = 7,
    spsolve_cells: int = 20,
    output: Path | None = None,
    include_cuda: bool | None = None,
) -> dict:
    """Measure every method on each batch size and write the JSON report.

    Parameters
    ----------
    batches : tuple of int
        Numbers of cells; with the 1,399-node cell, 715 is about 10⁶ nodes and 7150
        about 10⁷; 3000 matches DeepDendrite's largest CA1 run.
    repeats : int
        Timed calls per method (best and median are reported).
    spsolve_cells : int
        Cells solved with spsolve per timing (it is far slower; ns/node is per node).
    output : Path, optional
        JSON path; default ``data/benchmarks/solve_<device>.json``.
    include_cuda : bool, optional
        Default: when a real GPU is present.
    """
    tree, cell = load_cell()
    include_cuda = gpu_available() if include_cuda is None else include_cuda
    bandwidth = copy_bandwidth()
    bound_ns = BYTES_PER_NODE / bandwidth * 1e9
    report = {
        "benchmark": "dhs solve, fp64, batches of one CA1-sized cell (shared a, b)",
        "cell": {
            "file": str(CELL_FILE.relative_to(DATA.parent)),
            "nodes": tree.n,
            "height": tree.height,
        },
        "machine": machine_info(),
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "bandwidth_bound_ns_per_node": bound_ns,
        "reproduce": "dhs bench  (python3 tasks.py bench)",
        "results": [],
    }
    solvers = {"serial": Solver(tree, backend="serial"), "cpu": Solver(tree, backend="cpu")}
    if include_cuda:
        solvers["cuda"] = Solver(tree, backend="cuda", threads=32)
    for batch in batches:
        a, b, d, rhs = make_batch(cell, batch)
        nodes = batch * tree.n
        x = np.empty_like(rhs)
        entry = {"cells": batch, "nodes": nodes, "methods": {}}
        reference = solvers["serial"].solve(a, b, d, rhs)
        for name, solver in solvers.items():
            timing = time_call(_solve_call(solver, a, b, d, rhs, x), repeats)
            entry["methods"][name] = _summarise(timing, nodes, x, reference)
        if include_cuda:
            entry["methods"]["cuda_device_resident"] = _time_cuda_resident(
                solvers["cuda"], a, b, d, rhs, nodes, reference, repeats
            )
        cells = min(spsolve_cells, batch)
        timing = time_call(_spsolve_per_cell(tree, a, b, d, rhs, cells), 3)
        entry["methods"]["scipy_spsolve"] = _summarise(timing, cells * tree.n)
        entry["methods"]["scipy_spsolve"]["note"] = f"{cells} cells, one spsolve each"
        serial_ns = entry["methods"]["serial"]["ns_per_node"]
        entry["ratios"] = {
            f"{name}_speedup_over_serial": serial_ns / method["ns_per_node"]
            for name, method in entry["methods"].items()
            if name != "serial"
        }
        entry["ratios"]["cpu_over_bandwidth_bound"] = (
            entry["methods"]["cpu"]["ns_per_node"] / bound_ns
        )
        report["results"].append(entry)
        _print_entry(entry, bound_ns)
    if output is None:
        output = DATA / "benchmarks" / f"solve_{_device_tag(report['machine'])}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s -> bound {bound_ns:.2f} ns/node; wrote {output}"
    )
    return report


def _solve_call(solver: Solver, a, b, d, rhs, x) -> Callable[[], object]:
    return lambda: solver.solve(a, b, d, rhs, out=x)


def _summarise(timing: dict, nodes: int, x=None, reference=None) -> dict:
    summary = {
        "ns_per_node": timing["best_s"] / nodes * 1e9,
        "median_ns_per_node": timing["median_s"] / nodes * 1e9,
        "runs": timing["runs"],
    }
    if x is not None:
        summary["max_relative_difference_to_serial"] = float(
            np.max(np.abs(x - reference)) / np.max(np.abs(reference))
        )
    return summary


def _time_cuda_resident(solver: Solver, a, b, d, rhs, nodes, reference, repeats) -> dict:
    """Kernel time with the data already on the GPU (synchronised, status checked)."""
    from numba import cuda

    device = [cuda.to_device(array) for array in (a, b, d, rhs)]
    out = cuda.device_array_like(device[3])

    def run():
        solver.solve(*device, out=out)
        cuda.synchronize()

    summary = _summarise(time_call(run, max(repeats, 20)), nodes, out.copy_to_host(), reference)
    summary["note"] = "inputs and output on the device; excludes host transfers"
    return summary


def _device_tag(machine: dict) -> str:
    if machine["gpu"]:
        return "gpu-" + machine["gpu"]["name"].replace(" ", "-")
    return f"cpu-{machine['cpu_count']}core"


def _print_entry(entry: dict, bound_ns: float) -> None:
    print(f"\n{entry['cells']} cells, {entry['nodes']:,} nodes")
    print(f"  {'method':24s} {'ns/node':>9s} {'median':>9s} {'vs serial':>10s}")
    serial = entry["methods"]["serial"]["ns_per_node"]
    for name, method in entry["methods"].items():
        print(
            f"  {name:24s} {method['ns_per_node']:9.3f} {method['median_ns_per_node']:9.3f} "
            f"{serial / method['ns_per_node']:9.1f}x"
        )
    print(
        f"  cpu / bandwidth bound ({bound_ns:.2f} ns/node): "
        f"{entry['ratios']['cpu_over_bandwidth_bound']:.2f}"
    )

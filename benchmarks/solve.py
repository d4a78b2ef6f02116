"""Solve benchmark: serial Hines, the cpu backend, scipy's spsolve and (on a GPU) cuda.

Everything is measured side by side in one run on batches of a CA1-sized cell, and
reported as ns per node and as ratios, with the machine's copy bandwidth measured in
the same run for the bandwidth bound (48 B/node in float64: a, b, d and rhs read, d and
rhs written, 8 B each). Results go to a JSON file with machine and device information.

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

from dhs.backends import gpu_available
from dhs.solver import Solver
from dhs.tree import Tree

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


def time_round_robin(
    functions: dict[str, Callable[[], object]],
    rounds: int,
    calls_per_turn: int = 2,
    budget_s: float = 90.0,
) -> dict[str, dict]:
    """Time several functions side by side, in steady state.

    Each round gives every function a turn: one untimed call, then ``calls_per_turn``
    timed calls. Interleaving the turns makes slow drifts of a shared machine hit every
    method alike; the untimed call lets the method reach the steady state a simulation
    loop sees (measured here: a parallel solve right after other work ran 2-3x slower
    than back to back, as idle cores clock down and worker threads sleep).
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    start = time.perf_counter()
    for _ in range(rounds):
        for name, function in functions.items():
            function()
            for _ in range(calls_per_turn):
                t0 = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return {
        name: {"best_s": min(values), "median_s": statistics.median(values), "runs": len(values)}
        for name, values in times.items()
    }


def _copy_call(n_bytes: int = 1 << 30) -> Callable[[], None]:
    """One copy of n_bytes (the bandwidth probe)."""
    source = np.ones(n_bytes // 8)
    target = np.empty_like(source)
    return lambda: np.copyto(target, source)


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
    output_path: Path | None = None,
    include_cuda: bool | None = None,
    copy_bytes: int = 1 << 30,
) -> dict:
    """Measure every method on each batch size and write the JSON report.

    Parameters
    ----------
    batches : tuple of int
        Numbers of cells; with the 1,399-node cell, 715 is about 10⁶ nodes and 7150
        about 10⁷; 3000 matches DeepDendrite's largest CA1 run.
    repeats : int
        Rounds of timed calls (best and median over rounds are reported).
    spsolve_cells : int
        Cells solved with spsolve per timing (it is far slower; ns/node is per node).
    output_path : Path, optional
        JSON path; default ``data/benchmarks/solve_<device>.json``.
    include_cuda : bool, optional
        Default: when a real GPU is present.
    copy_bytes : int
        Size of the copy that probes memory bandwidth (1 GiB by default, far beyond the
        caches).
    """
    tree, cell = load_cell()
    include_cuda = gpu_available() if include_cuda is None else include_cuda
    report = {
        "benchmark": "dhs solve, fp64, batches of one CA1-sized cell (shared a, b)",
        "cell": {
            "file": str(CELL_FILE.relative_to(DATA.parent)),
            "nodes": tree.n,
            "height": tree.height,
        },
        "machine": machine_info(),
        "method": "round-robin: in each round every method gets a turn of one untimed "
        "and two timed calls; best and median over all timed calls. Copy bandwidth "
        f"= 2 x {copy_bytes / 2**30:g} GiB / best copy time, measured in the same rounds; "
        "bound = 48 B/node / copy bandwidth.",
        "reproduce": "dhs bench  (python3 tasks.py bench)",
        "results": [],
    }
    solvers = {"serial": Solver(tree, backend="serial"), "cpu": Solver(tree, backend="cpu")}
    if include_cuda:
        solvers["cuda"] = Solver(tree, backend="cuda", threads=32)
    for batch in batches:
        a, b, d, rhs = make_batch(cell, batch)
        nodes = batch * tree.n
        outputs = {name: np.empty_like(rhs) for name in solvers}
        calls = {
            name: _solve_call(solver, a, b, d, rhs, outputs[name])
            for name, solver in solvers.items()
        }
        if include_cuda:
            calls["cuda_device_resident"], outputs["cuda_device_resident"] = _cuda_resident_call(
                solvers["cuda"], a, b, d, rhs
            )
        cells = min(spsolve_cells, batch)
        calls["scipy_spsolve"] = _spsolve_per_cell(tree, a, b, d, rhs, cells)
        calls["copy_bandwidth_probe"] = _copy_call(copy_bytes)
        timings = time_round_robin(calls, repeats)

        reference = solvers["serial"].solve(a, b, d, rhs)
        bandwidth = 2 * copy_bytes / timings.pop("copy_bandwidth_probe")["best_s"]
        bound_ns = BYTES_PER_NODE / bandwidth * 1e9
        entry = {
            "cells": batch,
            "nodes": nodes,
            "copy_bandwidth_GBps": bandwidth / 1e9,
            "bandwidth_bound_ns_per_node": bound_ns,
            "methods": {},
        }
        for name, timing in timings.items():
            solved = cells * tree.n if name == "scipy_spsolve" else nodes
            output = outputs.get(name)
            if output is not None and not isinstance(output, np.ndarray):
                output = output.copy_to_host()
            entry["methods"][name] = _summarise(timing, solved, output, reference)
        entry["methods"]["scipy_spsolve"]["note"] = f"{cells} cells, one spsolve each"
        if include_cuda:
            entry["methods"]["cuda"]["note"] = "host arrays in and out (includes transfers)"
            entry["methods"]["cuda_device_resident"]["note"] = (
                "inputs and output on the device; synchronised; excludes host transfers"
            )
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
    if output_path is None:
        output_path = DATA / "benchmarks" / f"solve_{device_tag(report['machine'])}.json"
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output_path}")
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


def _cuda_resident_call(solver: Solver, a, b, d, rhs):
    """A solve with inputs and output already on the GPU, synchronised."""
    from numba import cuda

    device = [cuda.to_device(array) for array in (a, b, d, rhs)]
    out = cuda.device_array_like(device[3])

    def run():
        solver.solve(*device, out=out)
        cuda.synchronize()

    return run, out


def device_tag(machine: dict) -> str:
    """A file-name tag for the machine: its GPU's name, or its CPU core count."""
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

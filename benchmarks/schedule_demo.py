"""Schedule-and-solve demo on the pyramidal cell that ships with NEURON.

Shows what the optimal schedule buys, and that every backend reproduces the solution
NEURON itself computed for the same matrix (stored in ``data/morphologies``).
"""

from __future__ import annotations

import time

import numpy as np

from dhs.backends import gpu_available
from dhs.cli import schedule_table
from dhs.solver import Solver

from .solve import DATA, load_cell, make_batch


def main() -> int:
    tree, cell = load_cell(DATA / "morphologies" / "pyramid_nodes_1um.npz")
    print(
        f"Pyramidal cell from NEURON's demo, 1 µm segments: {tree.n:,} nodes, depth {tree.height}\n"
    )
    print(f"{'threads':>8s} {'serial':>8s} {'DHS':>6s} {'bound':>6s} {'breadth-first':>14s}")
    for threads in (4, 16, 32, 64):
        row = schedule_table(tree, threads)
        print(
            f"{threads:8d} {row['serial_steps']:8,} {row['dhs_steps']:6,} "
            f"{row['lower_bound']:6,} {row['breadth_first_level_steps']:14,}"
        )

    backends = ["serial", "cpu"] + (["cuda"] if gpu_available() else [])
    print("\nSolving NEURON's own matrix for this cell (one time step):")
    scale = np.max(np.abs(cell["solution"]))
    for backend in backends:
        x = Solver(tree, backend=backend).solve(cell["a"], cell["b"], cell["d"], cell["rhs"])
        error = np.max(np.abs(x - cell["solution"]))
        print(f"  {backend:7s} max |x - NEURON| = {error:.2e} mV (|x| up to {scale:.2e} mV)")

    cells = 1000
    a, b, d, rhs = make_batch(cell, cells)
    print(f"\n{cells} instances ({cells * tree.n:,} nodes), best of 5, side by side:")
    times = {}
    for backend in backends:
        solver = Solver(tree, backend=backend)
        out = np.empty_like(rhs)
        solver.solve(a, b, d, rhs, out=out)
        best = min(_timed(lambda s=solver, o=out: s.solve(a, b, d, rhs, out=o)) for _ in range(5))
        times[backend] = best
        print(
            f"  {backend:7s} {best / (cells * tree.n) * 1e9:6.2f} ns/node "
            f"({times['serial'] / best:4.1f}x serial)"
        )
    print("\nFull benchmark with JSON output: dhs bench")
    return 0


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start

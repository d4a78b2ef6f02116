"""Per-step cost of NEURON's own solve against the swapped-in DHS solve.

For the demo pyramidal cell discretised to about 10³, 10⁴ and 10⁵ nodes, measured side
by side in one run (turns alternate, as in :mod:`benchmarks.solve`):

* a whole fixed step (``h.fadvance()``), native and with :func:`use_dhs` per backend;
* the tree solve alone on the same assembled matrix: NEURON's ``nrn_solve`` (timed as
  ``fcurrent`` + ``nrn_solve`` minus ``fcurrent``, since it destroys its input) against
  ``dhs.Solver.solve`` (what the swap replaces), so that the callback's share shows.

Writes ``data/benchmarks/bridge_<device>.json``. Reproduce: ``python -m neuron_bridge
bench``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from neuron import h

import dhs
from neuron_bridge import _nrn
from neuron_bridge.extract import extract
from neuron_bridge.swap import installed, use_dhs

from .models import pyramid_model
from .solve import DATA, device_tag, machine_info, time_round_robin

# Segment lengths (µm) giving about 10³, 10⁴ and 10⁵ nodes for the pyramidal cell.
SEGMENT_LENGTHS = (5.5, 0.55, 0.055)


def _with_swap(swap, steps: int):
    """``steps`` fixed steps with ``swap`` installed (None: NEURON's own solve)."""

    def run():
        current = installed()
        if current is not swap:
            if current is not None:
                current.uninstall()
            if swap is not None:
                swap.install()
        for _ in range(steps):
            h.fadvance()

    return run


def _setup_seconds(backend: str) -> float:
    """One-time cost of installing a swap: reading the topology and a, b, building."""
    start = time.perf_counter()
    with use_dhs(backend=backend):
        h.fadvance()
    return time.perf_counter() - start


def _measure_model(segment_length: float, steps: int, backends: list[str]) -> dict:
    model = pyramid_model(segment_length=segment_length)
    h.dt = 0.025
    h.finitialize(-65.0)
    h.continuerun(15.0)  # past the onset of the clamp: an active, spiking cell
    system = extract()
    nodes = system.tree.n

    # A swap stays installed for its whole turn (the turn's untimed first call pays the
    # one-time read of the topology and a, b); the native turn uninstalls it.
    calls = {"native step": _with_swap(None, steps)}
    for backend in backends:
        calls[f"dhs {backend} step"] = _with_swap(use_dhs(backend=backend), steps)
    # The solve alone: NEURON's is (assemble + solve) - assemble; ours reads saved arrays.
    calls["assemble + native solve"] = _assemble_and_native_solve
    calls["assemble"] = h.fcurrent
    for backend in backends:
        solver = dhs.Solver(system.tree, backend=backend)
        calls[f"dhs {backend} solve"] = _dhs_solve_call(solver, system)
    timings = time_round_robin(calls, rounds=3, calls_per_turn=2, budget_s=120.0)
    if installed() is not None:
        installed().uninstall()
    setup = {backend: _setup_seconds(backend) for backend in backends}
    model.delete()

    result = {
        "nodes": nodes,
        "segment_length_um": segment_length,
        "steps_per_call": steps,
        "per_step_ms": {},
        "ratios": {},
    }
    for name, timing in timings.items():
        per = steps if name.endswith("step") else 1
        result["per_step_ms"][name] = timing["best_s"] / per * 1e3
    result["per_step_ms"]["native solve"] = (
        result["per_step_ms"].pop("assemble + native solve") - result["per_step_ms"]["assemble"]
    )
    native_step = result["per_step_ms"]["native step"]
    native_solve = result["per_step_ms"]["native solve"]
    for backend in backends:
        result["ratios"][f"dhs {backend} step / native step"] = (
            result["per_step_ms"][f"dhs {backend} step"] / native_step
        )
        result["ratios"][f"dhs {backend} solve / native solve"] = (
            result["per_step_ms"][f"dhs {backend} solve"] / native_solve
        )
    result["native solve share of a step"] = native_solve / native_step
    result["one_time_install_seconds"] = setup
    return result


def _assemble_and_native_solve() -> None:
    h.fcurrent()  # nrn_solve destroys d and rhs, so every solve needs a fresh matrix
    _nrn.native_solve()


def _dhs_solve_call(solver, system):
    out = np.empty_like(system.rhs)
    return lambda: solver.solve(system.a, system.b, system.d, system.rhs, out=out)


def run_benchmark(
    steps: int = 400,
    output_path: str | Path | None = None,
    segment_lengths: tuple[float, ...] = SEGMENT_LENGTHS,
) -> dict:
    backends = ["serial", "cpu"] + (["cuda"] if dhs.gpu_available() else [])
    report = {
        "benchmark": "NEURON fixed step, native vs dhs swapped in (neuron_bridge.use_dhs)",
        "model": "demo pyramidal cell, hh soma, pas dendrites, IClamp + 8 ExpSyn",
        "machine": machine_info(),
        "reproduce": "python -m neuron_bridge bench",
        "results": [],
    }
    for segment_length in segment_lengths:
        result = _measure_model(segment_length, steps, backends)
        report["results"].append(result)
        print(f"\n{result['nodes']:,} nodes (segments <= {segment_length} µm)")
        for name, value in result["per_step_ms"].items():
            print(f"  {name:22s} {value:9.4f} ms")
        for name, value in result["ratios"].items():
            print(f"  {name:34s} {value:6.2f}")
    path = (
        Path(output_path)
        if output_path
        else (DATA / "benchmarks" / f"bridge_{device_tag(report['machine'])}.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    return report

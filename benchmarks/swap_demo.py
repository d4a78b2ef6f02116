"""One cell: NEURON's pyramidal cell run natively and with the DHS solve swapped in.

``dhs-bench swap-demo`` prints a table and saves a figure of the traces and their
differences. On a CPU the swap does not make one cell faster (NEURON's own solve is
already serial Hines); the main job, ``benchmarks/demo.py``, shows the batched engine.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from neuron import h

import dhs
from neuron_bridge.extract import node_map
from neuron_bridge.swap import use_dhs

from .models import pyramid_model

OUTPUT = Path("output")


def _run(model, tstop: float):
    far = model.far_dendrite()
    soma_v = h.Vector().record(model.soma(0.5)._ref_v)
    far_v = h.Vector().record(far(0.9)._ref_v)
    times = h.Vector().record(h._ref_t)
    spikes = h.Vector()
    detector = h.NetCon(model.soma(0.5)._ref_v, None, sec=model.soma)
    detector.threshold = -10.0
    detector.record(spikes)
    h.dt = 0.025
    h.finitialize(-65.0)
    start = time.perf_counter()
    h.continuerun(tstop)
    elapsed = time.perf_counter() - start
    steps = round(tstop / h.dt)
    return {
        "t": np.array(times), "soma": np.array(soma_v), "far": np.array(far_v),
        "spikes": np.array(spikes), "seconds_per_step": elapsed / steps,
    }  # fmt: skip


def main(tstop: float = 100.0, threads: int = 32) -> int:
    model = pyramid_model(segment_length=1.0)
    tree = dhs.Tree(node_map().parent)
    dhs_steps = dhs.schedule(tree, threads).n_steps
    print(
        f"NEURON's demo pyramidal cell, 1 µm segments: {tree.n:,} nodes, depth "
        f"{tree.height}; hh soma, pas dendrites, IClamp + 8 ExpSyn; {tstop:g} ms at "
        f"dt {0.025} ms\n"
    )
    runs = {"NEURON": _run(model, tstop)}
    backends = ["serial", "cpu"] + (["cuda"] if dhs.gpu_available() else [])
    for backend in backends:
        with use_dhs(backend=backend, threads=threads):
            runs[f"dhs {backend}"] = _run(model, tstop)
    with use_dhs(backend=backends[-1], threads=threads, dtype=np.float32):
        runs[f"dhs {backends[-1]} fp32"] = _run(model, tstop)
    native = runs["NEURON"]
    header = (
        f"{'solver':12s} {'nodes':>7s} {'serial steps':>12s} {'DHS steps':>9s} "
        f"{'max |ΔV| (mV)':>14s} {'spikes':>6s} {'ms/step':>8s}"
    )
    print(header)
    print("-" * len(header))
    for name, run in runs.items():
        difference = max(np.max(np.abs(run[key] - native[key])) for key in ("soma", "far"))
        steps = dhs_steps if name != "NEURON" else tree.n
        print(
            f"{name:12s} {tree.n:7,} {tree.n:12,} {steps if name != 'NEURON' else '-':>9} "
            f"{difference:14.2e} {run['spikes'].size:6d} {run['seconds_per_step'] * 1e3:8.3f}"
        )
    exact = [run for name, run in runs.items() if not name.endswith("fp32")]
    same_spikes = all(np.array_equal(run["spikes"], native["spikes"]) for run in exact)
    print(f"\nspike times identical in every fp64 run: {same_spikes}")
    print(
        f"DHS steps with k={threads}: {dhs_steps} (lower bound "
        f"{dhs.lower_bound(tree, threads)}; breadth-first levels "
        f"{dhs.breadth_first_level_steps(tree, threads)})"
    )
    figure = _plot(runs, OUTPUT / "pyramid_dhs.png")
    print(f"figure: {figure}")
    model.delete()
    return 0 if same_spikes else 1


def _plot(runs: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    native = runs["NEURON"]
    figure, (traces, differences) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    traces.plot(native["t"], native["soma"], color="black", lw=2, label="soma, NEURON")
    traces.plot(native["t"], native["far"], color="grey", lw=2, label="far dendrite, NEURON")
    for name, run in runs.items():
        if name == "NEURON":
            continue
        traces.plot(run["t"], run["soma"], lw=0.8, ls="--", label=f"soma, {name}")
        for key, style in (("soma", "-"), ("far", ":")):
            gap = np.abs(run[key] - native[key])
            note = " (bit-identical)" if not gap.any() else f" (max {gap.max():.1e})"
            differences.semilogy(
                run["t"], np.maximum(gap, 1e-18), style, lw=0.8, label=f"{key}, {name}{note}"
            )
    traces.set_ylabel("V (mV)")
    traces.legend(fontsize=7, ncol=2)
    differences.set_ylabel("|V - V_NEURON| (mV)")
    differences.set_xlabel("t (ms)")
    differences.set_ylim(1e-18, 1e2)
    differences.legend(fontsize=7, ncol=2)
    differences.set_title("a difference of exactly 0 is drawn at 1e-18", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path

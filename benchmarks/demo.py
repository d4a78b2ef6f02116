"""The main demo: N different instances of NEURON's pyramidal cell, NEURON against the engine.

``dhs-bench demo`` (``python3 tasks.py demo``) runs NEURON's demo pyramidal cell
(:func:`benchmarks.models.pyramid_model` at 4.35 µm segments: 1,399 nodes, hh in the soma,
pas in the dendrites, an IClamp and 8 ExpSyn driven by a NetStim) as N instances, each
with its own inputs (IClamp amplitude, NetStim start and interval, NetCon delays:
:func:`benchmarks.engine.make_inputs`):

* **NEURON** as an experienced user would: N separate cells in one session, run by
  ``h.ParallelContext().nthread(cores)``, each cell wired to instance q's inputs; one
  short untimed warm-up run, then a timed ``h.finitialize`` + ``h.continuerun``;
* **the engine** (:class:`dhs.engine.Engine`, ``backend="auto"``: CUDA on a real GPU,
  else the CPU engine), the same inputs, one ``Engine.run`` timed after a short untimed
  call that compiles the kernel (or loads it from the cache).

It prints both wall times, the throughput ratio, the largest |ΔV| over all instances at
the soma and a far dendrite (every step) and at every node (at tstop), and the spikes,
and saves ``<output>/demo_engine.png``. A short last part swaps the DHS solve into
NEURON for one cell (``use_dhs(backend="serial", shadow=True)``) and prints the shadow
difference.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from neuron import h

from neuron_bridge.swap import use_dhs

from .engine import (
    DT,
    SEGMENT_LENGTH,
    THRESHOLD,
    V_INIT,
    PyramidBench,
    _cores,
    make_inputs,
)
from .models import pyramid_model
from .pyramid_copies import CellCopy, build_copy, delete_copies, final_v, template_of
from .swap_demo import _run as run_single_cell

N_DEFAULT = 200  # instances
TSTOP_DEFAULT = 100.0  # ms
WARM_UP_MS = 5.0  # NEURON's untimed warm-up run under threads
SWAP_TSTOP_MS = 20.0  # the single-cell swap check


def _mv(value: float) -> str:
    """A voltage difference: an exact 0 prints as ``0.0 mV``."""
    return f"{value:.3g} mV" if value else "0.0 mV"


# --------------------------------------------------------------------------- the demo
def main(
    n: int = N_DEFAULT,
    tstop: float = TSTOP_DEFAULT,
    output: str | Path = "output",
    *,
    seed: int = 0,
    neuron_threads: int | None = None,
    swap_tstop: float = SWAP_TSTOP_MS,
    shown: int = 3,
) -> int:
    """Run the demo; 0 when the engine reproduced NEURON exactly (and the swap too)."""
    started = time.perf_counter()
    threads = neuron_threads or _cores()
    n_steps = round(tstop / DT)
    pc = h.ParallelContext()
    cells: list[CellCopy] = []
    bench = PyramidBench(SEGMENT_LENGTH)
    try:
        n_synapses = len(bench.netcons)
        far_name = bench.far.name()
        inputs = make_inputs(n, n_synapses, seed)
        model = bench.cell
        print(
            f"NEURON's demo pyramidal cell at {SEGMENT_LENGTH:g} µm segments: {model.n:,} "
            f"nodes; hh soma, pas dendrites, IClamp + {n_synapses} ExpSyn driven by a NetStim"
        )
        print(
            f"N = {n} instances, each with its own inputs (IClamp amplitude, NetStim start "
            f"and interval, NetCon delays); tstop {tstop:g} ms at dt {DT:g} ms "
            f"({n_steps:,} steps)\n"
        )

        # ---- the engine: compile (or load the cache) on a short call of the same N (the
        # kernel's build depends on the chunk width, so on N and the workers), then the
        # timed run
        start = time.perf_counter()
        first = bench.engine(inputs, backend="auto")
        bench.engine_run(first, 1.0, {})()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        engine = bench.engine(inputs, backend="auto")
        configure_s = time.perf_counter() - start
        holder: dict = {}
        start = time.perf_counter()
        bench.engine_run(engine, tstop, holder)()
        engine_s = time.perf_counter() - start
        result = holder["result"]
        backend = engine.backend

        # ---- NEURON: N cells in one session, on `threads` threads
        start = time.perf_counter()
        template = template_of(bench)
        bench.close()  # the copies are the cells NEURON runs
        cells = [build_copy(template, inputs, q, threshold=THRESHOLD) for q in range(n)]
        build_s = time.perf_counter() - start
        pc.nthread(threads)
        h.dt = DT
        h.steps_per_ms = 1.0 / DT
        h.finitialize(V_INIT)  # warm-up, untimed
        h.continuerun(min(WARM_UP_MS, tstop))
        for cell in cells:
            cell.spikes.resize(0)
        start = time.perf_counter()
        h.finitialize(V_INIT)
        h.continuerun(tstop)
        neuron_s = time.perf_counter() - start

        # ---- compare every instance
        soma = np.array([cell.traces[0].as_numpy() for cell in cells])
        far = np.array([cell.traces[1].as_numpy() for cell in cells])
        neuron_spikes = [cell.spikes.as_numpy().copy() for cell in cells]
        v_final = np.array([final_v(cell, template, model.n) for cell in cells])
        same_length = soma.shape[1] == result.v.shape[2]
        if same_length:
            dv_soma = float(np.abs(result.v[:, 0] - soma).max())
            dv_far = float(np.abs(result.v[:, 1] - far).max())
        else:
            dv_soma = dv_far = float("inf")
        dv_nodes = float(np.abs(result.v_final - v_final).max())
        identical = [
            np.array_equal(ours, theirs)
            for ours, theirs in zip(result.spikes, neuron_spikes, strict=True)
        ]
        neuron_total = sum(s.size for s in neuron_spikes)
        engine_total = sum(s.size for s in result.spikes)
        t = result.t
        shown_q = sorted({round(i * (n - 1) / max(shown - 1, 1)) for i in range(shown)})
        traces = {q: (soma[q].copy(), result.v[q, 0].copy()) for q in shown_q}
    finally:
        delete_copies(cells)
        pc.nthread(1)
        bench.close()

    rate = {"NEURON": n * n_steps / neuron_s, "engine": n * n_steps / engine_s}
    ratio = rate["engine"] / rate["NEURON"]
    if backend == "cuda":
        what = "the CUDA engine, on the GPU"
    else:
        what = f"the CPU engine (numba, {_cores()} worker threads; no CUDA GPU here)"
    print(f"NEURON : {n} cells in one session, ParallelContext().nthread({threads}): "
          f"{neuron_s:.2f} s")  # fmt: skip
    print(f"engine : backend {backend}: {what}: {engine_s:.2f} s")
    print(
        f"throughput ratio engine/NEURON: {ratio:.1f}x  (instance-steps per second: "
        f"NEURON {rate['NEURON']:,.0f}, engine {rate['engine']:,.0f})"
    )
    print(
        f"  not timed: building the {n} NEURON cells {build_s:.1f} s; NEURON's "
        f"{min(WARM_UP_MS, tstop):g} ms warm-up; the engine's first call "
        f"(compile or cache load) {compile_s:.1f} s and its set-up (set, set_events) "
        f"{configure_s:.2f} s"
    )
    print(
        f"max |ΔV| over all {n} instances: soma {_mv(dv_soma)}, far dendrite "
        f"({far_name}(0.5)) {_mv(dv_far)} (every step); every node at tstop {_mv(dv_nodes)}"
    )
    print(
        f"spikes: NEURON {neuron_total}, engine {engine_total}; every instance's spike "
        f"times identical: {all(identical)}"
    )
    figure = _plot(
        t, traces, neuron_spikes, result.spikes, rate, threads, backend,
        Path(output) / "demo_engine.png",
    )  # fmt: skip
    print(f"figure: {figure}")

    swap_ok = swap_check(swap_tstop)
    exact = same_length and dv_soma == 0.0 and dv_far == 0.0 and dv_nodes == 0.0
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s")
    return 0 if exact and all(identical) and swap_ok else 1


def swap_check(tstop: float = SWAP_TSTOP_MS) -> bool:
    """One cell, NEURON's own solve against ``use_dhs(backend="serial", shadow=True)``."""
    model = pyramid_model(segment_length=SEGMENT_LENGTH)
    try:
        native = run_single_cell(model, tstop)
        with use_dhs(backend="serial", shadow=True) as swap:
            swapped = run_single_cell(model, tstop)
    finally:
        model.delete()
    stats = swap.stats
    dv = max(float(np.abs(swapped[key] - native[key]).max()) for key in ("soma", "far"))
    same = np.array_equal(swapped["spikes"], native["spikes"])
    print(
        f'\nsingle-cell swap check (one cell, {tstop:g} ms): use_dhs(backend="serial", '
        f"shadow=True) solved {stats.solves} steps inside NEURON; shadow max difference "
        f"{_mv(stats.shadow_max_difference_mV)} over {stats.shadow_solves} solves; "
        f"traces against native NEURON max |ΔV| {_mv(dv)}; spikes identical: {same}"
    )
    return stats.shadow_max_difference_mV == 0.0 and dv == 0.0 and same


def _plot(t, traces, neuron_spikes, engine_spikes, rate, threads, backend, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(11, 7.5))
    grid = figure.add_gridspec(2, 3)
    top = figure.add_subplot(grid[0, :])
    raster = figure.add_subplot(grid[1, :2])
    bars = figure.add_subplot(grid[1, 2])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (q, (native, ours)) in enumerate(traces.items()):
        color = colors[i % len(colors)]
        top.plot(t, native, color=color, lw=3, alpha=0.35, label=f"instance {q}, NEURON")
        top.plot(t, ours, color=color, lw=0.9, ls="--", label=f"instance {q}, engine ({backend})")
    gap = max(float(np.abs(a - b).max()) for a, b in traces.values())
    top.set_title(f"soma, NEURON (thick) vs engine (dashed): max |ΔV| here {_mv(gap)}")
    top.set_xlabel("t (ms)")
    top.set_ylabel("V (mV)")
    low, high = top.get_ylim()
    top.set_ylim(low, high + 0.3 * (high - low))  # room for the legend
    top.legend(fontsize=7, ncol=len(traces), loc="upper right")

    n = len(neuron_spikes)
    for q, (native, ours) in enumerate(zip(neuron_spikes, engine_spikes, strict=True)):
        raster.plot(native, np.full(native.size, q), "o", ms=4, mfc="none", mec="0.55",
                    label="NEURON" if q == 0 else None)  # fmt: skip
        raster.plot(ours, np.full(ours.size, q), "|", ms=4, color="C3",
                    label=f"engine ({backend})" if q == 0 else None)  # fmt: skip
    same = sum(np.array_equal(a, b) for a, b in zip(neuron_spikes, engine_spikes, strict=True))
    raster.set_title(f"soma spikes of all {n} instances: {same}/{n} instances identical")
    raster.set_xlabel("t (ms)")
    raster.set_ylabel("instance")
    raster.set_xlim(t[0], t[-1])
    raster.set_ylim(-0.5 - 0.02 * n, n - 0.5 + 0.15 * n + 1)  # room for the legend
    raster.legend(fontsize=7, ncol=2, loc="upper right")

    labels = [f"NEURON\n{threads} threads", f"engine\n{backend}"]
    values = [rate["NEURON"], rate["engine"]]
    bars.bar(labels, values, color=["0.6", "C3"])
    for x, value in enumerate(values):
        bars.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=8)
    bars.set_ylabel("instance-steps per second")
    bars.set_title(f"throughput: engine {rate['engine'] / rate['NEURON']:.1f}x NEURON")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

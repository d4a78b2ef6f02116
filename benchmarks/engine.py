"""Throughput of :class:`dhs.engine.Engine` against NEURON on many different instances.

One run compares, on NEURON's demo pyramidal cell at a CA1-like discretisation
(:func:`benchmarks.models.pyramid_model` with 4.35 µm segments: 1,399 nodes, hh in
the soma, pas in the dendrites, an IClamp and 8 ExpSyn driven by a NetStim):

* **NEURON**, one instance after another: each instance is a full ``h.finitialize`` +
  ``h.continuerun(tstop)`` after its inputs were written into the NEURON objects.
  NEURON's cost is linear in the number of instances, so ``M`` instances are timed and
  the throughput (instances × steps per second) holds for any N;
* **the engine on the CPU** (``backend="cpu"``), N instances in one ``Engine.run``;
* **the engine on CUDA**, when a GPU is present and the engine accepts
  ``backend="cuda"`` (otherwise recorded as not available).

"Different inputs": instance q has its own IClamp amplitude, its own NetStim start and
interval and its own NetCon delay per synapse (seeded), i.e. its own synaptic event
times. NEURON gets them by changing the objects between runs; the engine through
``Engine.set("IClamp.amp", ...)`` and ``Engine.set_events("ExpSyn", s, ...)``.

The numbers are those of a correct simulation: the first few instances of every engine
run are compared with NEURON's runs of the same inputs (soma and a far dendrite at every
step, every node at the end, the soma's spike times); the maximum |ΔV| is recorded
(it is 0.0: the engine reproduces NEURON bit for bit).

Timing uses :func:`benchmarks.solve.time_round_robin` (one untimed call, then timed calls, per
turn). Reproduce with ``python -m neuron_bridge bench-engine``; the report goes to
``data/benchmarks/engine_<device>.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from neuron import h

import dhs
from dhs.engine import Engine, MechanismTable
from dhs.engine.model import SynapticEvents
from neuron_bridge.export import export_model, netstim_spike_times

from .models import pyramid_model
from .solve import DATA, device_tag, machine_info, time_round_robin

SEGMENT_LENGTH = 4.35  # µm: 1,399 nodes, the size of DeepDendrite's CA1 cell
DT = 0.025  # ms
V_INIT = -65.0  # mV
THRESHOLD = -20.0  # mV, spike detection at the soma
# (backend, smallest N the target applies to, required speed-up over NEURON)
TARGETS = {"cpu": (100, 5.0), "cuda": (1000, 200.0)}


@dataclass
class Inputs:
    """Per-instance inputs: IClamp amplitude, NetStim start/interval, NetCon delays."""

    amp: np.ndarray  # (n,) nA
    start: np.ndarray  # (n,) ms
    interval: np.ndarray  # (n,) ms
    delay: np.ndarray  # (n, n_synapses) ms

    @property
    def n(self) -> int:
        return self.amp.size


def make_inputs(n: int, n_synapses: int, seed: int = 0) -> Inputs:
    """Seeded inputs around the demo's (0.4 nA; events from 21 ms, every 15 ms)."""
    rng = np.random.default_rng(seed)
    return Inputs(
        amp=rng.uniform(0.2, 0.6, n),
        start=20.0 + rng.uniform(-5.0, 5.0, n),
        interval=15.0 + rng.uniform(-3.0, 3.0, n),
        delay=1.0 + rng.uniform(0.0, 3.0, (n, n_synapses)),
    )


class PyramidBench:
    """The NEURON model, its input objects, and its export for the engine."""

    def __init__(self, segment_length: float = SEGMENT_LENGTH):
        h.load_file("stdrun.hoc")
        self.model = pyramid_model(segment_length=segment_length)
        keep = self.model.keep
        self.clamp = next(o for o in keep if o.hname().startswith("IClamp"))
        self.stim = next(o for o in keep if o.hname().startswith("NetStim"))
        self.netcons = [o for o in keep if o.hname().startswith("NetCon")]
        # The engine's synapse index of each NetCon's target (export_model's order).
        order = [o.hname() for o in _objects("ExpSyn") if o.has_loc()]
        self.synapse_index = [order.index(nc.syn().hname()) for nc in self.netcons]
        self.weights = [float(nc.weight[0]) for nc in self.netcons]
        self.far = self.model.far_dendrite()
        h.dt = DT
        h.steps_per_ms = 1.0 / DT
        self.cell = export_model(V_INIT)
        self.probes = [self.model.soma(0.5), self.far(0.5)]
        self.probe_nodes = [int(seg.node_index()) for seg in self.probes]

    def close(self) -> None:
        """Delete the NEURON model (sections and objects)."""
        self.netcons.clear()
        self.clamp = self.stim = self.far = None
        self.probes = []
        self.model.delete()

    # ----------------------------------------------------------------- NEURON
    def apply(self, inputs: Inputs, q: int) -> None:
        """Write instance q's inputs into the NEURON objects."""
        self.clamp.amp = float(inputs.amp[q])
        self.stim.start = float(inputs.start[q])
        self.stim.interval = float(inputs.interval[q])
        for k, netcon in enumerate(self.netcons):
            netcon.delay = float(inputs.delay[q, k])

    def neuron_runs(self, inputs: Inputs, count: int, tstop: float):
        """A function running instances ``0..count-1`` one after another in NEURON."""

        def run():
            for q in range(count):
                self.apply(inputs, q)
                h.finitialize(V_INIT)
                h.continuerun(tstop)

        return run

    def neuron_reference(self, inputs: Inputs, q: int, tstop: float) -> dict:
        """Instance q in NEURON, recorded: probe traces, spikes, every node at the end."""
        vectors = [h.Vector().record(seg._ref_v) for seg in self.probes]
        detector = h.NetCon(self.model.soma(0.5)._ref_v, None, sec=self.model.soma)
        detector.threshold = THRESHOLD
        spikes = h.Vector()
        detector.record(spikes)
        self.apply(inputs, q)
        h.finitialize(V_INIT)
        h.continuerun(tstop)
        v_final = np.empty(self.cell.n)
        for section in h.allsec():
            for segment in section.allseg():
                v_final[segment.node_index()] = segment.v
        result = {
            "traces": np.array([v.as_numpy().copy() for v in vectors]),
            "spikes": spikes.as_numpy().copy(),
            "v_final": v_final,
        }
        del detector
        return result

    # ----------------------------------------------------------------- engine
    def engine(self, inputs: Inputs, backend: str = "cpu", **options) -> Engine:
        """An engine with ``inputs.n`` instances, each given its own inputs."""
        engine = Engine(self.cell, inputs.n, backend=backend, **options)
        engine.set("IClamp.amp", inputs.amp, target=0)
        spikes = [
            netstim_spike_times(inputs.start[q], inputs.interval[q], self.stim.number)
            for q in range(inputs.n)
        ]
        for k, (synapse, weight) in enumerate(zip(self.synapse_index, self.weights, strict=True)):
            for q in range(inputs.n):
                times = spikes[q] + inputs.delay[q, k]  # as NEURON: spike time + delay
                engine.set_events("ExpSyn", synapse, times, weight, instances=q)
        return engine

    def engine_run(self, engine: Engine, tstop: float, holder: dict):
        """A function running the engine (recording the probes, detecting spikes)."""

        def run():
            holder["result"] = engine.run(
                tstop,
                dt=DT,
                record_nodes=self.probe_nodes,
                spike_node=self.probe_nodes[0],
                spike_threshold=THRESHOLD,
            )

        return run


def _objects(type_name: str) -> list:
    objects = h.List(type_name)
    return [objects.o(i) for i in range(int(objects.count()))]


def compare(result, references: dict[int, dict]) -> dict:
    """Max differences between engine instances and NEURON's runs of the same inputs."""
    dv_trace = dv_final = dt_spike = 0.0
    counts_match = True
    for q, reference in references.items():
        dv_trace = max(dv_trace, float(np.abs(result.v[q] - reference["traces"]).max()))
        dv_final = max(dv_final, float(np.abs(result.v_final[q] - reference["v_final"]).max()))
        spikes = result.spikes[q]
        if spikes.size != reference["spikes"].size:
            counts_match = False
        elif spikes.size:
            dt_spike = max(dt_spike, float(np.abs(spikes - reference["spikes"]).max()))
    return {
        "instances_checked": sorted(references),
        "max_abs_dv_probe_traces_mV": dv_trace,
        "max_abs_dv_all_nodes_at_tstop_mV": dv_final,
        "max_abs_dv_mV": max(dv_trace, dv_final),
        "spike_counts_match": counts_match,
        "max_abs_spike_time_difference_ms": dt_spike,
        "spikes_per_instance": [int(references[q]["spikes"].size) for q in sorted(references)],
    }


def _cuda_status(cell, n: int) -> str | None:
    """None when the engine can run on CUDA here, otherwise why not."""
    if not dhs.gpu_available():
        return "not available: no CUDA GPU on this machine"
    try:
        Engine(cell, n, backend="cuda")
    except ValueError as error:
        return f"not available: the engine does not accept backend='cuda' ({error})"
    return None


def run_benchmark(
    sizes: tuple[int, ...] = (100, 400, 1000),
    cuda_sizes: tuple[int, ...] = (1000, 10000),
    tstop: float = 25.0,
    neuron_instances: int = 6,
    check_instances: int = 3,
    rounds: int = 3,
    seed: int = 0,
    profile: bool | None = None,
    output_path: str | Path | None = None,
    write: bool = True,
    verbose: bool = True,
) -> dict:
    """Measure NEURON, the engine on the CPU and (when possible) on CUDA; write the JSON.

    Parameters
    ----------
    sizes : tuple of int
        Numbers of instances N for the CPU engine.
    cuda_sizes : tuple of int
        Numbers of instances for the CUDA engine (when it is available).
    tstop : float
        Simulated time per instance in ms (``round(tstop / dt)`` steps of 0.025 ms).
    neuron_instances : int
        M, the instances NEURON runs one after another per timed call.
    check_instances : int
        Instances of every engine run compared with NEURON (at most M).
    rounds : int
        Rounds of :func:`benchmarks.solve.time_round_robin` (each: one untimed + one timed call).
    profile : bool, optional
        Time the engine with parts of the model removed, several chunk widths, one and
        two workers and other N (where the time goes). Default: when the CPU engine
        misses its target.
    """
    bench = PyramidBench()
    try:
        cell = bench.cell
        n_steps = round(tstop / DT)
        n_synapses = len(bench.netcons)
        largest = max((*sizes, *cuda_sizes, neuron_instances))
        inputs = make_inputs(largest, n_synapses, seed)
        check = min(check_instances, neuron_instances, *sizes, *cuda_sizes)

        compile_start = time.perf_counter()
        bench.engine_run(bench.engine(_subset(inputs, 2)), 1.0, {})()  # JIT (or cache load)
        compile_s = time.perf_counter() - compile_start

        calls = {"neuron": bench.neuron_runs(inputs, neuron_instances, tstop)}
        holders: dict[str, dict] = {}
        configure_s: dict[str, float] = {}
        instances = {"neuron": neuron_instances}
        for n in sizes:
            name = f"engine cpu N={n}"
            start = time.perf_counter()
            engine = bench.engine(_subset(inputs, n), "cpu")
            configure_s[name] = time.perf_counter() - start
            holders[name] = {}
            calls[name] = bench.engine_run(engine, tstop, holders[name])
            instances[name] = n
        cuda_status = _cuda_status(cell, 2)
        if cuda_status is None:
            for n in cuda_sizes:
                name = f"engine cuda N={n}"
                start = time.perf_counter()
                engine = bench.engine(_subset(inputs, n), "cuda")
                configure_s[name] = time.perf_counter() - start
                holders[name] = {}
                calls[name] = bench.engine_run(engine, tstop, holders[name])
                instances[name] = n
        timings = time_round_robin(calls, rounds=rounds, calls_per_turn=1, budget_s=1e9)

        references = {q: bench.neuron_reference(inputs, q, tstop) for q in range(check)}
        neuron_rate = neuron_instances * n_steps / timings["neuron"]["best_s"]
        methods = {
            "neuron": {
                "instances_timed": neuron_instances,
                "best_s": timings["neuron"]["best_s"],
                "median_s": timings["neuron"]["median_s"],
                "runs": timings["neuron"]["runs"],
                "instance_steps_per_s": neuron_rate,
                "note": f"measured on M={neuron_instances} instances run one after another "
                "(h.finitialize + h.continuerun each, inputs changed in between); NEURON's "
                "cost is linear in N, so this rate, scaled, is NEURON's for every N",
            }
        }
        accuracy = {}
        for name, timing in timings.items():
            if name == "neuron":
                continue
            rate = instances[name] * n_steps / timing["best_s"]
            methods[name] = {
                "instances": instances[name],
                "best_s": timing["best_s"],
                "median_s": timing["median_s"],
                "runs": timing["runs"],
                "configure_s": configure_s[name],
                "instance_steps_per_s": rate,
                "speedup_over_neuron": rate / neuron_rate,
                "neuron_s_for_same_n_scaled": instances[name] * n_steps / neuron_rate,
            }
            accuracy[name] = compare(holders[name]["result"], references)
        targets = _targets(methods, cuda_status)
        report = {
            "benchmark": "dhs.engine throughput vs NEURON: N instances of one cell, "
            "each with its own inputs",
            "model": {
                "description": "NEURON's demo pyramidal cell (benchmarks.models.pyramid_model): "
                "hh soma, pas dendrites, IClamp at the soma, 8 ExpSyn on the dendrites "
                "driven by one NetStim through NetCons",
                "segment_length_um": SEGMENT_LENGTH,
                "nodes": cell.n,
                "mechanism_instances": {k: t.count for k, t in cell.mechanisms.items()},
                "hh_usetable": cell.mechanisms["hh"].globals.get("usetable"),
                "celsius": cell.celsius,
                "inputs_per_instance": "IClamp.amp ~ U(0.2, 0.6) nA; NetStim start ~ 20 + "
                "U(-5, 5) ms, interval ~ 15 + U(-3, 3) ms (6 spikes); NetCon delay per "
                f"synapse ~ 1 + U(0, 3) ms; seed {seed}",
            },
            "tstop_ms": tstop,
            "dt_ms": DT,
            "steps_per_instance": n_steps,
            "machine": machine_info(),
            "method": "benchmarks.solve.time_round_robin: per round, every method gets one untimed "
            "and one timed call; best over timed calls. Throughput = instances x steps / s. "
            "Engine calls include Engine.run's set-up (event sorting, allocation) and "
            "recording two nodes + spike detection; set_events/set are timed separately "
            "(configure_s). NEURON calls: h.finitialize + h.continuerun, nothing recorded.",
            "engine_jit_or_cache_load_s": compile_s,
            "methods": methods,
            "cuda": cuda_status or "available",
            "targets": targets,
            "accuracy_vs_neuron": accuracy,
            "reproduce": "python -m neuron_bridge bench-engine",
        }
        below = [t for t in targets.values() if t["met"] is False]
        if profile is None:
            profile = bool(below)
        if profile and sizes:
            found = profile_engine(bench, inputs, n=min(sizes), tstop=min(tstop, 10.0))
            found["neuron_ns_per_node_step"] = 1e9 / neuron_rate / cell.n
            report["profile"] = found
    finally:
        bench.close()
    if verbose:
        print_report(report)
    if write:
        path = (
            Path(output_path)
            if output_path
            else DATA / "benchmarks" / f"engine_{device_tag(report['machine'])}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        if verbose:
            print(f"\nwrote {path}")
    return report


def _subset(inputs: Inputs, n: int) -> Inputs:
    return Inputs(inputs.amp[:n], inputs.start[:n], inputs.interval[:n], inputs.delay[:n])


def _targets(methods: dict, cuda_status: str | None) -> dict:
    targets = {}
    for backend, (n_min, factor) in TARGETS.items():
        entries = {
            name: m
            for name, m in methods.items()
            if name.startswith(f"engine {backend} ") and m["instances"] >= n_min
        }
        target = {"applies_to": f"N >= {n_min}", "required_speedup": factor}
        if not entries:
            target["met"] = None
            target["verdict"] = cuda_status if backend == "cuda" and cuda_status else "not measured"
        else:
            worst = min(m["speedup_over_neuron"] for m in entries.values())
            target["worst_speedup"] = worst
            target["met"] = worst >= factor
            target["verdict"] = (
                f"met: at least {worst:.1f}x NEURON for every N >= {n_min}"
                if target["met"]
                else f"NOT MET: {worst:.1f}x NEURON for some N >= {n_min}, "
                f"below the {factor:g}x target"
            )
        targets[backend] = target
    return targets


# --------------------------------------------------------------------------- profile
def profile_engine(
    bench: PyramidBench, inputs: Inputs, n: int, tstop: float, rounds: int = 2
) -> dict:
    """Where the engine's time goes: parts of the model removed, options and N varied.

    Every variant runs ``n`` instances (the N sweep: other N) for ``tstop`` ms; all are
    timed together by :func:`benchmarks.solve.time_round_robin` (best of ``rounds`` timed
    calls). Results are µs per instance-step (advancing one instance by one step); the
    phase costs are differences between variants.
    """
    cell = bench.cell
    sub = _subset(inputs, n)
    n_steps = round(tstop / DT)

    def reduced(model):
        engine = Engine(model, n, workers=1)
        engine.set("IClamp.amp", sub.amp, target=0)
        return engine

    empty_events = {"ExpSyn": SynapticEvents.empty(), "Exp2Syn": SynapticEvents.empty()}
    no_synapses = dataclasses.replace(
        cell,
        mechanisms={k: t for k, t in cell.mechanisms.items() if k != "ExpSyn"},
        events=empty_events,
    )
    no_hh = dataclasses.replace(
        no_synapses, mechanisms={**no_synapses.mechanisms, "hh": MechanismTable.empty("hh")}
    )
    matrix_only = dataclasses.replace(
        no_hh, mechanisms={**no_hh.mechanisms, "pas": MechanismTable.empty("pas")}
    )
    # Phases on one thread (workers=1): no interference between the workers.
    matrix_label = "without ExpSyn, hh, pas (capacitance + axial + solve + v update + IClamp)"
    engines = {
        "full model, workers=1": bench.engine(sub, workers=1),
        "without ExpSyn (and events)": reduced(no_synapses),
        "without ExpSyn, hh": reduced(no_hh),
        matrix_label: reduced(matrix_only),
        "default (chunk=16, all workers)": bench.engine(sub),
    }
    for c in (4, 8, 32, 64):
        if c <= n:
            engines[f"chunk={c}"] = bench.engine(sub, chunk=c)
    sizes = [size for size in (128, 400, 401) if size <= inputs.n]
    for size in sizes:  # per-instance cost should not depend on N (chunk-major storage)
        engines[f"N={size}"] = bench.engine(_subset(inputs, size))
    calls = {name: bench.engine_run(engine, tstop, {}) for name, engine in engines.items()}
    timings = time_round_robin(calls, rounds=rounds, calls_per_turn=1, budget_s=1e9)
    us = {
        name: timings[name]["best_s"] / (engines[name].n_instances * n_steps) * 1e6
        for name in engines
    }
    keys = list(engines)
    return {
        "instances": n,
        "tstop_ms": tstop,
        "unit": "µs per instance-step (one instance advanced one step)",
        "variants_workers_1": {key: us[key] for key in keys[:4]},
        "phase_estimates": {
            "ExpSyn (8 synapses) + events": us[keys[0]] - us[keys[1]],
            "hh (9 nodes)": us[keys[1]] - us[keys[2]],
            "pas (1310 nodes)": us[keys[2]] - us[keys[3]],
            "matrix: capacitance, axial terms, Hines solve, v update, IClamp": us[keys[3]],
        },
        "chunk_sweep": {"chunk=16": us[keys[4]]}
        | {key: us[key] for key in keys if key.startswith("chunk=")},
        "workers_sweep": {"all workers": us[keys[4]], "workers=1": us[keys[0]]},
        "instances_sweep": {f"N={n}": us[keys[4]]} | {f"N={s}": us[f"N={s}"] for s in sizes},
        "ns_per_node_step_full_model": us[keys[4]] * 1e3 / cell.n,
        "neuron_ns_per_node_step": None,
        "hines_kernel": _hines_probe(cell),
    }


def _hines_probe(cell, widths: tuple[int, ...] = (8, 16)) -> dict:
    """The engine's fused Hines elimination alone, on one contiguous chunk, one thread.

    Also counts packed (``vdivpd``) and scalar (``vdivsd``) divisions in its machine
    code (a fresh, uncached compilation of the same Python function, with its error
    model): packed ones mean the loop over instances was vectorised.
    """
    import re

    import numba

    from dhs.engine import integrate

    try:
        kernel = integrate._hines
        rng = np.random.default_rng(0)
        result = {"unit": "ns per node per instance (serial elimination + back-substitution)"}
        for width in widths:
            shape = (1, cell.n, width)  # one chunk, chunk-major
            d0 = (cell.cm * 40.0 + 10.0)[None, :, None] * rng.uniform(1.0, 1.1, shape)
            r0 = rng.standard_normal(shape)
            d, rhs, v = d0.copy(), r0.copy(), np.zeros(shape)
            arguments = (0, 0, width, cell.parent, cell.a, cell.b)
            kernel(*arguments, d, rhs, v)
            best = np.inf
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(100):
                    d[:] = d0
                    rhs[:] = r0
                    kernel(*arguments, d, rhs, v)
                best = min(best, time.perf_counter() - start)
            copies = time.perf_counter()
            for _ in range(100):
                d[:] = d0
                rhs[:] = r0
            copies = time.perf_counter() - copies
            result[f"chunk={width}"] = (best - copies) / (100 * cell.n * width) * 1e9
        error_model = kernel.targetoptions.get("error_model", "python")
        fresh = numba.njit(error_model=error_model)(kernel.py_func)
        fresh(0, 0, 8, cell.parent, cell.a, cell.b, d0[..., :8].copy(), r0[..., :8].copy(),
              v[..., :8].copy())  # fmt: skip
        assembly = "".join(fresh.inspect_asm().values())
        result["packed_divisions_vdivpd"] = len(re.findall(r"\bvdivpd\b", assembly))
        result["scalar_divisions_vdivsd"] = len(re.findall(r"\bvdivsd\b", assembly))
        return result
    except Exception as error:  # the engine's internals change; the probe is optional
        return {"error": f"{type(error).__name__}: {error}"}


def print_report(report: dict) -> None:
    model = report["model"]
    print(
        f"\n{model['nodes']:,}-node pyramid, tstop {report['tstop_ms']:g} ms, "
        f"dt {report['dt_ms']:g} ms ({report['steps_per_instance']:,} steps per instance)"
    )
    print(f"  {'method':22s} {'N':>6s} {'best s':>9s} {'inst*steps/s':>14s} {'vs NEURON':>10s}")
    neuron = report["methods"]["neuron"]
    print(
        f"  {'neuron (M, scaled)':22s} {neuron['instances_timed']:6d} {neuron['best_s']:9.3f} "
        f"{neuron['instance_steps_per_s']:14,.0f} {1.0:9.1f}x"
    )
    for name, method in report["methods"].items():
        if name == "neuron":
            continue
        print(
            f"  {name:22s} {method['instances']:6d} {method['best_s']:9.3f} "
            f"{method['instance_steps_per_s']:14,.0f} {method['speedup_over_neuron']:9.1f}x"
        )
    for name, check in report["accuracy_vs_neuron"].items():
        print(
            f"  accuracy {name}: max |dV| = {check['max_abs_dv_mV']:.3g} mV over instances "
            f"{check['instances_checked']}, spikes match: {check['spike_counts_match']}"
        )
    print(f"  cuda: {report['cuda']}")
    for backend, target in report["targets"].items():
        print(f"  target {backend} ({target['applies_to']}, >= {target['required_speedup']:g}x): "
              f"{target['verdict']}")  # fmt: skip
    if "profile" in report:
        profile = report["profile"]
        print(f"\n  profile ({profile['unit']}, N={profile['instances']}):")
        sections = ("variants_workers_1", "phase_estimates", "chunk_sweep", "workers_sweep",
                    "instances_sweep")  # fmt: skip
        for section in sections:
            for name, value in profile[section].items():
                print(f"    {name:76s} {value:8.2f}")
        engine_ns = profile["ns_per_node_step_full_model"]
        neuron_ns = profile["neuron_ns_per_node_step"]
        print(f"    ns per node-step: engine {engine_ns:.2f}, NEURON {neuron_ns:.2f}")
        print(f"    Hines kernel alone: {profile['hines_kernel']}")

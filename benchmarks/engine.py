"""Throughput of :class:`dhs.engine.Engine` against NEURON, CoreNEURON and Arbor on N instances.

The cell: NEURON's demo pyramid at a CA1-like discretisation
(:func:`benchmarks.models.pyramid_model` with 4.35 µm segments: 1,399 nodes, hh in the soma,
pas in the dendrites, an IClamp and 8 ExpSyn driven by a NetStim). "N instances": N copies
of it, each with its own inputs (:func:`make_inputs`): its own IClamp amplitude, NetStim
start and interval and NetCon delay per synapse, i.e. its own synaptic event times.

For every N, one :func:`benchmarks.solve.time_round_robin` times side by side (one untimed
and one timed call per method and round, so slow drifts of a shared machine hit every
method alike):

``neuron_sequential``
    One NEURON cell, instances one after another on ONE core: instance q's inputs are
    written into the objects, then ``h.finitialize`` + ``h.continuerun(tstop)``. Its cost
    is linear in N, so ``M`` (``neuron_instances``) instances are timed and the rate holds
    for every N. This is how the engine was first compared, and the baseline of the CUDA
    target; it is not a fair CPU baseline, since the engine uses every core.
``neuron_nthread2``
    What an experienced NEURON user does with N cells on this machine: N separate copies
    of the cell in ONE NEURON session (:mod:`benchmarks.pyramid_copies`: same 3-D points,
    nseg, Ra, cm, mechanisms; each with its own IClamp, NetStim, NetCons and instance q's
    inputs), every cell's soma and far dendrite recorded (``Vector.record``) and its
    spikes detected (a gid per cell, ``pc.spike_record``),
    ``pc = h.ParallelContext(); pc.nthread(2)``; the timed call is ``h.finitialize`` +
    ``h.continuerun(tstop)``. NEURON's first run with many cells under threads is very
    slow (minutes at N = 1,000), so one untimed warm-up run precedes the rounds. About
    1.8x ``neuron_sequential`` on two cores.
``coreneuron``
    The same N cells run by CoreNEURON from the ``neuron`` wheel on 2 threads
    (``coreneuron.enable = True``, ``coreneuron.gpu = False``,
    ``h.cvode.cache_efficient(1)``, ``pc.nthread(2)``); the timed call is
    ``h.finitialize`` + ``pc.psolve(tstop)``, which includes CoreNEURON's in-memory copy
    of the model (made on every ``psolve``) and the copy of the results back to NEURON.
    A further 1.1-1.2x on this machine. When it fails, its error is recorded.
``arbor`` (optional: ``pip install dhs[bench]``)
    The same cell in Arbor 0.12: morphology from NEURON's 3-D points (one tag per
    section), NEURON's segment boundaries as the CV boundaries, hh in the soma and pas in
    the dendrites with NEURON's parameters, the IClamp, ExpSyn with the same event times
    (one event generator per synapse and instance), N cells in one recipe, 2 threads
    (``arbor.context(threads=2)``); the timed call is ``simulation.reset()`` +
    ``simulation.run(tstop, dt)``. Arbor computes hh's rates exactly where NEURON
    interpolates its tables, so it differs from NEURON by a few mV at the first spike and
    its spike times drift further apart spike after spike (16 mV, 0.28 ms by the third
    spike of a 60 ms run): its |ΔV| is reported, not required to be zero. (Against NEURON
    with ``usetable_hh = 0``: ~0.1 mV without the synapses, ~2 mV with them.) Without
    Arbor the report says ``"not installed (pip install dhs[bench])"``.

NEURON with threads, CoreNEURON and Arbor run in child processes (one per baseline and N),
driven through a pipe, so that each has its own NEURON session beside the one-cell session
of ``neuron_sequential`` and a crash costs only itself; what they print goes to a log whose
end is recorded with any error.

Against them: **the engine on the CPU** (``backend="cpu"``, its default workers: every
core), N instances in one ``Engine.run`` (recording the same two nodes of every instance and
detecting spikes), and **the engine on CUDA** for the CUDA sizes when a real GPU is present.

**Which ratio is fair.** The engine uses both cores, so the fair CPU baseline is the faster
of ``neuron_nthread2`` and ``coreneuron`` at the same N on the same cores: the report names
it ``fastest_neuron_same_cores`` and its ratio ``speedup_vs_fastest_neuron_same_cores``
(the headline). Every other ratio is there too (``speedup_vs``). The CPU target (engine
>= 5x, N >= 100) is against that fastest baseline; the CUDA target (>= 200x, N >= 1,000)
is against ``neuron_sequential``, as the issue states it.

The numbers are those of a correct simulation: the first few instances are compared with
NEURON's one-cell runs of the same inputs (soma and far dendrite at every step, every node
at the end, the soma's spike times), and the engine with every NEURON baseline: the engine
and ``neuron_nthread2`` give 0.0 mV, CoreNEURON ~1e-11 mV.

Reproduce with ``dhs-bench engine`` (``--baselines``, ``--sizes``, ``--cuda-sizes``,
``--no-cuda``); the report goes to ``data/benchmarks/engine_<device>.json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from neuron import h

import dhs
from dhs.backends import cuda_simulator_enabled
from dhs.engine import CellModel, Engine
from neuron_bridge.export import export_model, netstim_spike_times

from .models import pyramid_model
from .pyramid_copies import CellTemplate, build_copy, final_v, template_of
from .solve import DATA, device_tag, machine_info, time_round_robin

#: The engine's CUDA schemes, each timed on its own beside the cost model's pick.
SCHEMES = ("thread", "lanes")
SEGMENT_LENGTH = 4.35  # µm: 1,399 nodes, the size of DeepDendrite's CA1 cell
DT = 0.025  # ms
V_INIT = -65.0  # mV
THRESHOLD = -20.0  # mV, spike detection at the soma
THREADS = 2  # NEURON's, CoreNEURON's and Arbor's threads: this machine's two cores
WARM_UP_MS = 5.0  # the untimed warm-up run of the many-cell baselines
#: Every baseline, in the order they are timed.
BASELINES = ("neuron_sequential", "neuron_nthread2", "coreneuron", "arbor")
#: The baselines an experienced NEURON user would run on the engine's cores.
FAIR_BASELINES = ("neuron_nthread2", "coreneuron")
#: The baselines run in child processes (N cells each).
MANY_CELL_BASELINES = ("neuron_nthread2", "coreneuron", "arbor")
ARBOR_MISSING = "not installed (pip install dhs[bench])"
#: backend -> (smallest N the target applies to, required speed-up, against what)
TARGETS = {
    "cpu": (100, 5.0, "fastest_neuron_same_cores"),
    "cuda": (1000, 200.0, "neuron_sequential"),
}
HEADLINE = "speedup_vs_fastest_neuron_same_cores"


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

    def setup(self) -> CellSetup:
        """What the child processes need to build copies of the cell (picklable)."""
        template = template_of(self)
        points = [tuple(np.array(v) for v in section) for section in template.points]
        soma = self.model.soma(0.5)
        return CellSetup(
            template=dataclasses.replace(template, points=points),
            n_nodes=self.cell.n,
            celsius=float(h.celsius),
            ena=float(soma.ena),
            ek=float(soma.ek),
        )

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


@dataclass
class CellSetup:
    """The cell as the child processes build it: its template with NumPy 3-D points."""

    template: CellTemplate  # points as NumPy arrays (picklable)
    n_nodes: int
    celsius: float
    ena: float  # mV, the soma's (NEURON's default ion values)
    ek: float


# --------------------------------------------------------------------------- child processes
class BaselineError(RuntimeError):
    """A many-cell baseline failed; the message is its error text (and its log's end)."""


def _worker_main(
    connection, kind: str, setup, inputs, tstop: float, log_path: str, factory=None
) -> None:
    """A child process running one baseline on command ("run", "results", "close").

    ``factory(kind, setup, inputs, tstop)`` builds its runner (an object with ``info``,
    ``run(tstop)`` and ``results(count)``); default: this module's pyramid copies.
    """
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)  # CoreNEURON and NEURON print; keep it out of the parent's output
    os.dup2(log, 2)
    try:
        if factory is not None:
            runner = factory(kind, setup, inputs, tstop)
        elif kind == "arbor":
            runner = _ArborCells(setup, inputs, tstop)
        else:
            runner = _NeuronCells(kind, setup, inputs, tstop)
    except BaseException:
        connection.send(("error", traceback.format_exc()))
        return
    connection.send(("ready", runner.info))
    while True:
        command, argument = connection.recv()
        try:
            if command == "run":
                wall, cpu = time.perf_counter(), time.process_time()
                runner.run(tstop)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                connection.send(("done", cpu / wall))
            elif command == "results":
                connection.send(("results", runner.results(argument)))
            else:
                connection.send(("closed", None))
                return
        except BaseException:
            connection.send(("error", traceback.format_exc()))
            return


class _NeuronCells:
    """N copies of the cell in one NEURON session, on ``THREADS`` threads (or CoreNEURON)."""

    def __init__(self, kind: str, setup: CellSetup, inputs: Inputs, tstop: float):
        import neuron

        start = time.perf_counter()
        h.load_file("stdrun.hoc")
        h.celsius = setup.celsius
        h.dt = DT
        h.steps_per_ms = 1.0 / DT
        h.cvode.active(0)
        template = dataclasses.replace(
            setup.template,
            points=[tuple(h.Vector(a) for a in section) for section in setup.template.points],
        )
        self.template, self.n_nodes = template, setup.n_nodes
        self.cells = [build_copy(template, inputs, q, threshold=THRESHOLD) for q in range(inputs.n)]
        self.context = context = h.ParallelContext()
        for q, cell in enumerate(self.cells):  # spikes by gid: CoreNEURON needs it
            context.set_gid2node(q, context.id())
            context.cell(q, cell.objects[-1])  # the soma's threshold detector
        self.spike_t, self.spike_gid = h.Vector(), h.Vector()
        context.spike_record(-1, self.spike_t, self.spike_gid)
        self.coreneuron = kind == "coreneuron"
        self.info = {"neuron_version": neuron.__version__, "threads": THREADS}
        if self.coreneuron:
            from neuron import coreneuron

            h.cvode.cache_efficient(1)
            coreneuron.enable = True
            coreneuron.gpu = False
            coreneuron.verbose = 1  # errors only
            self.info.update(
                coreneuron_enable=bool(coreneuron.enable),
                coreneuron_gpu=bool(coreneuron.gpu),
                cache_efficient=int(h.cvode.cache_efficient()),
            )
        context.nthread(THREADS)
        self.info["threads_running"] = int(context.nthread())
        self.info["build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        self.run(min(WARM_UP_MS, tstop))  # NEURON's first many-cell run is slow: untimed
        self.info["warm_up_s"] = time.perf_counter() - start
        self.info["warm_up_ms"] = min(WARM_UP_MS, tstop)

    def run(self, tstop: float) -> None:
        h.finitialize(V_INIT)
        if self.coreneuron:
            self.context.psolve(tstop)
        else:
            h.continuerun(tstop)

    def results(self, count: int) -> dict:
        gids = self.spike_gid.as_numpy()
        times = self.spike_t.as_numpy()
        return {
            q: {
                "traces": np.array([v.as_numpy().copy() for v in self.cells[q].traces]),
                "spikes": np.sort(times[gids == q]),
                "v_final": final_v(self.cells[q], self.template, self.n_nodes),
            }
            for q in range(count)
        }


class _ArborCells:
    """N copies of the cell in one Arbor recipe, on ``THREADS`` threads."""

    def __init__(self, setup: CellSetup, inputs: Inputs, tstop: float):
        import arbor
        from arbor import units

        start = time.perf_counter()
        self.arbor, self.units = arbor, units
        recipe = _arbor_recipe(setup, inputs)
        context = arbor.context(threads=THREADS)
        self.simulation = simulation = arbor.simulation(
            recipe, context, arbor.partition_load_balance(recipe, context)
        )
        # "all" records nothing without connections in Arbor 0.12.2; one process: "local"
        simulation.record(arbor.spike_recording.local)
        schedule = arbor.regular_schedule(DT * units.ms)
        self.handles = [
            [simulation.sample((q, f"probe{i}"), schedule) for i in range(2)]
            for q in range(inputs.n)
        ]
        self.info = {
            "arbor_version": arbor.__version__,
            "threads": THREADS,
            "control_volumes_per_cell": int(recipe.control_volumes),
            "build_s": time.perf_counter() - start,
        }
        start = time.perf_counter()
        self.run(min(WARM_UP_MS, tstop))
        self.info["warm_up_s"] = time.perf_counter() - start
        self.info["warm_up_ms"] = min(WARM_UP_MS, tstop)

    def run(self, tstop: float) -> None:
        self.simulation.reset()
        self.simulation.run(tstop * self.units.ms, DT * self.units.ms)

    def results(self, count: int) -> dict:
        spikes = self.simulation.spikes()
        gids, times = spikes["source"]["gid"], spikes["time"]
        found = {}
        for q in range(count):
            traces = []
            for handle in self.handles[q]:
                samples = self.simulation.samples(handle)[0][0]  # (times, [t, v])
                steps = np.rint(samples[:, 0] / DT).astype(int)
                if not np.array_equal(steps, np.arange(steps.size)):
                    raise RuntimeError("Arbor's samples are not at every step from t = 0")
                traces.append(samples[:, 1])
            found[q] = {
                "traces": np.array(traces),  # t = 0 .. tstop - dt: one sample fewer than NEURON
                "spikes": np.sort(times[gids == q]),
                "v_final": None,
            }
        return found


def _arbor_recipe(setup: CellSetup, inputs: Inputs):
    """The Arbor recipe of N copies of the cell (morphology from NEURON's 3-D points)."""
    import arbor
    from arbor import units

    template = setup.template
    n_sections = len(template.points)
    children: dict[int, list[int]] = {}
    for j, parent in enumerate(template.parents):
        if parent is not None:
            if parent[2] != 0.0:
                raise ValueError("only children connected by their 0 end are supported")
            children.setdefault(parent[0], []).append(j)
    order = [j for j, parent in enumerate(template.parents) if parent is None]
    for j in order:  # parents before children
        order += children.get(j, [])

    def tag(j: int) -> int:  # one tag per section
        return j + 1

    def where(j: int, x: float) -> str:
        return f"(on-components {float(x)!r} (tag {tag(j)}))"

    tree = arbor.segment_tree()
    end_of: dict[tuple[int, float], int] = {}  # (section, x) -> the segment ending there
    for j in order:
        points = np.column_stack(template.points[j])  # x, y, z, diam
        inner = sorted({template.parents[c][1] for c in children.get(j, [])} - {0.0, 1.0})
        points, at = _split_points(points, inner)
        parent = arbor.mnpos if template.parents[j] is None else end_of[template.parents[j][:2]]
        segment, ends = parent, [parent]
        for a, b in itertools.pairwise(points):
            if np.any(a[:3] != b[:3]):  # zero-length steps only change the diameter
                segment = tree.append(
                    segment,
                    arbor.mpoint(*a[:3], a[3] / 2),
                    arbor.mpoint(*b[:3], b[3] / 2),
                    tag=tag(j),
                )
            ends.append(segment)
        end_of[(j, 1.0)] = segment
        for x, k in at.items():
            end_of[(j, x)] = ends[k]
    morphology = arbor.morphology(tree)
    labels = arbor.label_dict({})
    catalogue = arbor.default_catalogue()
    boundaries = " ".join(
        where(j, i / nseg) for j, nseg in enumerate(template.nseg) for i in range(nseg + 1)
    )
    policy = arbor.cv_policy(f"(explicit (sum {boundaries}))")

    def decor(amp: float):
        d = arbor.decor()
        d.set_property(Vm=V_INIT * units.mV, tempK=(273.15 + setup.celsius) * units.Kelvin)
        d.set_ion("na", rev_pot=setup.ena * units.mV)
        d.set_ion("k", rev_pot=setup.ek * units.mV)
        for j in range(n_sections):
            region = f"(tag {tag(j)})"
            d.paint(
                region,
                rL=template.ra[j] * units.Ohm * units.cm,
                cm=float(np.mean(template.cm[j])) * 0.01 * units.F / units.m2,
            )
            for name, parameters in template.mechanisms[j].items():
                values = {p.removesuffix(f"_{name}"): float(v[0]) for p, v in parameters.items()}
                info = catalogue[name]
                shared = ",".join(f"{p}={v!r}" for p, v in values.items() if p in info.globals)
                ranged = {p: v for p, v in values.items() if p in info.parameters}
                unknown = set(values) - set(info.globals) - set(info.parameters)
                if unknown:
                    raise ValueError(f"Arbor's {name} has no parameters {sorted(unknown)}")
                d.paint(region, arbor.density(f"{name}/{shared}" if shared else name, ranged))
        s, x, delay, duration = template.clamp
        d.place(where(s, x), arbor.i_clamp(delay * units.ms, duration * units.ms, amp * units.nA))
        for k, (s, x, tau, e, _weight) in enumerate(template.synapses):
            d.place(where(s, x), arbor.synapse("expsyn", tau=tau, e=e), f"syn{k}")
        d.place(
            where(*template.probes[0]), arbor.threshold_detector(THRESHOLD * units.mV), "detector"
        )
        return d

    class Recipe(arbor.recipe):
        def __init__(self):
            arbor.recipe.__init__(self)
            self.properties = arbor.neuron_cable_properties()
            self.control_volumes = arbor.cv_data(self.cell_description(0)).num_cv

        def num_cells(self):
            return inputs.n

        def cell_kind(self, gid):
            return arbor.cell_kind.cable

        def cell_description(self, gid):
            return arbor.cable_cell(morphology, decor(float(inputs.amp[gid])), labels, policy)

        def global_properties(self, kind):
            return self.properties

        def event_generators(self, gid):
            spikes = netstim_spike_times(
                inputs.start[gid], inputs.interval[gid], template.stim_number
            )
            return [
                arbor.event_generator(
                    f"syn{k}",
                    weight,
                    arbor.explicit_schedule(
                        [float(t) * units.ms for t in spikes + inputs.delay[gid, k]]
                    ),
                )
                for k, (*_, weight) in enumerate(template.synapses)
            ]

        def probes(self, gid):
            return [
                arbor.cable_probe_membrane_voltage(where(*probe), f"probe{i}")
                for i, probe in enumerate(template.probes)
            ]

    return Recipe()


def _split_points(points: np.ndarray, xs: list[float]) -> tuple[np.ndarray, dict[float, int]]:
    """3-D points with a point inserted at each arc-length fraction of ``xs`` (children
    connected inside a section: Arbor forks only at segment ends); the index of each."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points[:, :3], axis=0), axis=1))])
    rows, arcs, at = list(points), list(arc), {}
    for x in xs:
        a = x * arc[-1]
        k = int(np.searchsorted(arcs, a))
        if not np.isclose(arcs[k], a, rtol=0.0, atol=1e-9):
            f = (a - arcs[k - 1]) / (arcs[k] - arcs[k - 1])
            rows.insert(k, rows[k - 1] + f * (rows[k] - rows[k - 1]))
            arcs.insert(k, a)
        at[x] = k
    return np.array(rows), at


class _Baseline:
    """The parent's handle on one baseline running in a child process.

    ``factory`` (picklable: a module-level function) builds the child's runner from
    ``(kind, setup, inputs, tstop)``; default: the pyramid copies of this benchmark.
    """

    def __init__(self, kind: str, setup, inputs, tstop: float, factory=None):
        self.kind = kind
        self.error: str | None = None
        self.info: dict = {}
        self.cpu_over_wall: float | None = None  # of the latest run: the cores it kept busy
        descriptor, self.log_path = tempfile.mkstemp(prefix=f"dhs-bench-{kind}-", suffix=".log")
        os.close(descriptor)
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main,
            args=(child, kind, setup, inputs, tstop, self.log_path, factory),
            daemon=True,
        )
        self.process.start()
        child.close()

    def wait_ready(self) -> None:
        try:
            self.info = self._receive("ready")
        except BaselineError as error:
            self.error = str(error)

    def run(self) -> None:
        """One timed call (the round robin's); after an error, nothing."""
        if self.error is not None:
            return
        try:
            self._send("run")
            self.cpu_over_wall = self._receive("done")
        except BaselineError as error:
            self.error = str(error)

    def results(self, count: int) -> dict | None:
        if self.error is not None:
            return None
        try:
            self._send("results", count)
            return self._receive("results")
        except BaselineError as error:
            self.error = str(error)
            return None

    def close(self) -> None:
        if self.process.is_alive() and self.error is None:
            try:
                self.connection.send(("close", None))
                self.connection.poll(30)
            except (OSError, EOFError):
                pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.connection.close()
        Path(self.log_path).unlink(missing_ok=True)

    def _send(self, command: str, argument=None) -> None:
        try:
            self.connection.send((command, argument))
        except OSError:
            raise BaselineError(self._died()) from None

    def _receive(self, expected: str):
        while not self.connection.poll(1.0):
            if not self.process.is_alive() and not self.connection.poll(0.1):
                raise BaselineError(self._died())
        try:
            tag, value = self.connection.recv()
        except (EOFError, OSError):
            raise BaselineError(self._died()) from None
        if tag == "error":
            raise BaselineError(value.rstrip() + self._log_tail())
        if tag != expected:
            raise BaselineError(f"unexpected answer {tag!r} (expected {expected!r})")
        return value

    def _died(self) -> str:
        self.process.join(5)
        return f"the {self.kind} process ended (exit code {self.process.exitcode})" + (
            self._log_tail()
        )

    def _log_tail(self, characters: int = 3000) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace").strip()
        except OSError:
            return ""
        return f"\n--- its output (end) ---\n{text[-characters:]}" if text else ""


def _arbor_status() -> str | None:
    """None when Arbor can be imported, otherwise why not."""
    try:
        import arbor  # noqa: F401
    except ImportError:
        return ARBOR_MISSING
    return None


def _coreneuron_status() -> str | None:
    try:
        from neuron import coreneuron  # noqa: F401
    except ImportError as error:
        return f"not available in this neuron installation: {error}"
    return None


# --------------------------------------------------------------------------- accuracy
def _recording(result, count: int) -> dict:
    """The first ``count`` instances of an engine run, as the baselines report them."""
    return {
        q: {"traces": result.v[q], "spikes": result.spikes[q], "v_final": result.v_final[q]}
        for q in range(count)
    }


def compare(tested: dict, reference: dict) -> dict:
    """Max differences between two recordings ({instance: traces, spikes, v_final}).

    Traces are compared over the samples both have (Arbor has no sample at tstop);
    every node at tstop only where both have it (not Arbor).
    """
    dv_trace = dt_spike = 0.0
    dv_final = None
    counts_match = True
    for q, ours in tested.items():
        theirs = reference[q]
        length = min(ours["traces"].shape[-1], theirs["traces"].shape[-1])
        difference = np.abs(ours["traces"][..., :length] - theirs["traces"][..., :length])
        dv_trace = max(dv_trace, float(difference.max()))
        if ours["v_final"] is not None and theirs["v_final"] is not None:
            final = float(np.abs(ours["v_final"] - theirs["v_final"]).max())
            dv_final = final if dv_final is None else max(dv_final, final)
        if ours["spikes"].size != theirs["spikes"].size:
            counts_match = False
        elif ours["spikes"].size:
            dt_spike = max(dt_spike, float(np.abs(ours["spikes"] - theirs["spikes"]).max()))
    return {
        "instances_checked": sorted(tested),
        "max_abs_dv_probe_traces_mV": dv_trace,
        "max_abs_dv_all_nodes_at_tstop_mV": dv_final,
        "max_abs_dv_mV": max(dv_trace, dv_final or 0.0),
        "spike_counts_match": counts_match,
        "max_abs_spike_time_difference_ms": dt_spike if counts_match else None,
        "spikes_per_instance": [int(tested[q]["spikes"].size) for q in sorted(tested)],
    }


def _cuda_status(cell, n: int, allow_simulator: bool = False) -> str | None:
    """None when the engine can run on CUDA here, otherwise why not."""
    if not dhs.gpu_available() and not (allow_simulator and cuda_simulator_enabled()):
        return "not available: no CUDA GPU on this machine"
    try:
        Engine(cell, n, backend="cuda")
    except ValueError as error:
        return f"not available: the engine does not accept backend='cuda' ({error})"
    return None


# --------------------------------------------------------------------------- the benchmark
def run_benchmark(
    sizes: tuple[int, ...] = (100, 400, 1000),
    cuda_sizes: tuple[int, ...] = (1000, 10000),
    tstop: float = 25.0,
    neuron_instances: int = 6,
    check_instances: int = 3,
    rounds: int = 3,
    seed: int = 0,
    baselines: tuple[str, ...] | None = None,
    cuda: bool = True,
    allow_simulator: bool = False,
    profile: bool | None = None,
    output_path: str | Path | None = None,
    write: bool = True,
    verbose: bool = True,
) -> dict:
    """Measure the engine beside NEURON, CoreNEURON and Arbor; write the JSON.

    Parameters
    ----------
    sizes : tuple of int
        Numbers of instances N for the CPU engine and the many-cell baselines.
    cuda_sizes : tuple of int
        Numbers of instances for the CUDA engine (when it is available); beside
        ``neuron_sequential`` (and the many-cell baselines where N is also in ``sizes``).
    tstop : float
        Simulated time per instance in ms (``round(tstop / dt)`` steps of 0.025 ms).
    neuron_instances : int
        M, the instances ``neuron_sequential`` runs one after another per timed call.
    check_instances : int
        Instances of every run compared with NEURON (at most M and every N).
    rounds : int
        Rounds of :func:`benchmarks.solve.time_round_robin` (each: one untimed + one timed
        call per method).
    baselines : tuple of str, optional
        Which of :data:`BASELINES` run (default: all; Arbor when installed).
        ``neuron_sequential`` always runs (its runs are also the reference traces).
    cuda : bool
        Run the CUDA engine for ``cuda_sizes`` when a GPU is there (False: never).
    allow_simulator : bool
        Also run the "CUDA" engine under Numba's CUDA simulator (``gpu_check --dry-run``).
    profile : bool, optional
        Time the engine with parts of the model removed, several chunk widths, one
        worker against all, and N = 1 (:func:`profile_engine`: where the time goes), at
        the smallest of ``sizes`` for at most 10 ms. Default: when the CPU engine misses its target.
    """
    # neuron_sequential always runs: it is cheap and its runs are the reference traces
    selected = ("neuron_sequential", *(BASELINES[1:] if baselines is None else baselines))
    selected = tuple(dict.fromkeys(selected))
    unknown = sorted(set(selected) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
    statuses = {name: "not selected (baselines=...)" for name in BASELINES}
    for name in selected:
        statuses[name] = "selected"
    if "arbor" in selected and (missing := _arbor_status()):
        statuses["arbor"] = missing
    if "coreneuron" in selected and (missing := _coreneuron_status()):
        statuses["coreneuron"] = missing
    many = [name for name in MANY_CELL_BASELINES if statuses[name] == "selected"]
    outcomes = {name: {"ran": [], "errors": {}} for name in many}

    bench = PyramidBench()
    try:
        cell = bench.cell
        n_steps = round(tstop / DT)
        n_synapses = len(bench.netcons)
        largest = max((*sizes, *cuda_sizes, neuron_instances))
        inputs = make_inputs(largest, n_synapses, seed)
        check = min(check_instances, neuron_instances, *sizes, *cuda_sizes)
        setup = bench.setup() if many else None

        compile_start = time.perf_counter()
        bench.engine_run(bench.engine(_subset(inputs, 2)), 1.0, {})()  # JIT (or cache load)
        compile_s = time.perf_counter() - compile_start
        cuda_status = _cuda_status(cell, 2, allow_simulator) if cuda else "not run (--no-cuda)"
        if not cuda_sizes and cuda:
            cuda_status = "not run (no CUDA sizes)"
        run_cuda = cuda_status is None

        references = {q: bench.neuron_reference(inputs, q, tstop) for q in range(check)}
        sequential = bench.neuron_runs(inputs, neuron_instances, tstop)
        results = {}
        for n in sorted(set(sizes) | (set(cuda_sizes) if run_cuda else set())):
            results[f"N={n}"] = _measure_size(
                bench,
                setup,
                inputs,
                n,
                tstop,
                rounds,
                check,
                references,
                sequential,
                neuron_instances,
                on_cpu=n in sizes,
                on_cuda=run_cuda and n in cuda_sizes,
                many=many if n in sizes else [],
                statuses=statuses,
                outcomes=outcomes,
                verbose=verbose,
            )
        if "neuron_sequential" in selected:
            statuses["neuron_sequential"] = "ran"
        for name, outcome in outcomes.items():
            statuses[name] = _status(outcome)
        targets = _targets(results, cuda_status)
        report = {
            "benchmark": "dhs.engine throughput vs NEURON (one core, nthread(2)), CoreNEURON "
            "and Arbor: N instances of one cell, each with its own inputs",
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
            "baselines": {
                name: {"status": statuses[name], "what": BASELINE_DESCRIPTIONS[name]}
                for name in BASELINES
            },
            "headline": f"{HEADLINE}: the CPU engine against the faster of neuron_nthread2 "
            "and coreneuron at the same N, on the same cores (the fair baseline); "
            "speedup_vs has the ratio to every baseline",
            "method": "benchmarks.solve.time_round_robin per N: per round, every method gets "
            "one untimed and one timed call; best over timed calls. Throughput = instances x "
            "steps / s. Engine calls: Engine.run, including its set-up (event sorting, "
            "allocation), recording two nodes of every instance and spike detection; "
            "set_events/set are timed separately (configure_s). neuron_sequential: "
            "h.finitialize + h.continuerun per instance, nothing recorded. Many-cell "
            "baselines (child processes; build and warm-up not timed): the same two nodes "
            "of every cell recorded and spikes detected; neuron_nthread2: h.finitialize + "
            "h.continuerun; coreneuron: h.finitialize + pc.psolve; arbor: "
            "simulation.reset + simulation.run. cpu_time_over_wall_time: the process's CPU "
            "time over the wall time of its latest timed call, about the cores it kept busy "
            "(below 2 for a 2-thread method: the other core was busy with something else).",
            "engine_jit_or_cache_load_s": compile_s,
            "cuda": cuda_status
            or ("available (CUDA simulator)" if cuda_simulator_enabled() else "available"),
            "results": results,
            "summary": _summary(results),
            "targets": targets,
            "reproduce": "dhs-bench engine",
        }
        below = [t for t in targets.values() if t["met"] is False]
        if profile is None:
            profile = bool(below)
        if profile and sizes:
            found = profile_engine(bench, inputs, n=min(sizes), tstop=min(tstop, 10.0))
            rate = results[f"N={min(sizes)}"]["methods"]["neuron_sequential"]
            found["neuron_ns_per_node_step"] = 1e9 / rate["instance_steps_per_s"] / cell.n
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


BASELINE_DESCRIPTIONS = {
    "neuron_sequential": "one NEURON cell, instances one after another on one core "
    "(h.finitialize + h.continuerun each); M instances timed, the rate holds for every N",
    "neuron_nthread2": "N cells in one NEURON session, h.ParallelContext().nthread(2); "
    "h.finitialize + h.continuerun (one untimed warm-up run first)",
    "coreneuron": "the same N cells run by CoreNEURON from the neuron wheel: "
    "coreneuron.enable = True, gpu = False, cvode.cache_efficient(1), nthread(2); "
    "h.finitialize + pc.psolve (includes CoreNEURON's model copy per psolve)",
    "arbor": "the same cell in Arbor (NEURON's 3-D points and segment boundaries, hh/pas with "
    "NEURON's parameters, IClamp, ExpSyn event generators), N cells in one recipe, "
    "arbor.context(threads=2); simulation.reset + run. Arbor's hh uses exact rates "
    "(NEURON: tables), so it differs by a few mV at spikes",
}


def _measure_size(
    bench: PyramidBench,
    setup: CellSetup | None,
    inputs: Inputs,
    n: int,
    tstop: float,
    rounds: int,
    check: int,
    references: dict[int, dict],
    sequential: Callable[[], None],
    neuron_instances: int,
    *,
    on_cpu: bool,
    on_cuda: bool,
    many: list[str],
    statuses: dict[str, str],
    outcomes: dict[str, dict],
    verbose: bool,
) -> dict:
    """Time every method at one N side by side; accuracy against every NEURON baseline."""
    n_steps = round(tstop / DT)
    sub = _subset(inputs, n)
    if verbose:
        print(f"N={n}: setting up {', '.join(many) or 'no many-cell baselines'}", flush=True)
    workers = {name: _Baseline(name, setup, sub, tstop) for name in many}
    try:
        for worker in workers.values():
            worker.wait_ready()
        calls = {"neuron_sequential": sequential}
        for name, worker in workers.items():
            if worker.error is None:
                calls[name] = worker.run
        holders: dict[str, dict] = {}
        engines: dict[str, dict] = {}
        variants = [("engine_cpu", "cpu", {})] if on_cpu else []
        if on_cuda:  # the cost model's pick, and both schemes forced
            variants += [
                ("engine_cuda", "cuda", {}),
                *((f"engine_cuda_{scheme}", "cuda", {"scheme": scheme}) for scheme in SCHEMES),
            ]
        for name, backend, options in variants:
            start = time.perf_counter()
            engine = bench.engine(sub, backend, **options)
            engines[name] = {"configure_s": time.perf_counter() - start, "engine": engine}
            holders[name] = {}
            calls[name] = _metered(bench.engine_run(engine, tstop, holders[name]), holders[name])
        if verbose:
            print(f"N={n}: timing {', '.join(calls)} ({rounds} rounds)", flush=True)
        timings = time_round_robin(calls, rounds=rounds, calls_per_turn=1, budget_s=1e9)

        methods: dict[str, dict] = {}
        rate = {}
        sequential_timing = timings["neuron_sequential"]
        rate["neuron_sequential"] = neuron_instances * n_steps / sequential_timing["best_s"]
        methods["neuron_sequential"] = {
            "instances_timed": neuron_instances,
            **sequential_timing,
            "instance_steps_per_s": rate["neuron_sequential"],
            "note": f"M={neuron_instances} instances run one after another on one core; "
            "NEURON's cost is linear in N, so this rate holds for every N",
        }
        recordings = {"neuron_sequential": references}
        for name, worker in workers.items():
            found = worker.results(check) if worker.error is None else None
            if worker.error is not None:
                methods[name] = {"instances": n, "error": worker.error, **worker.info}
                outcomes[name]["errors"][f"N={n}"] = worker.error
                continue
            outcomes[name]["ran"].append(f"N={n}")
            timing = timings[name]
            rate[name] = n * n_steps / timing["best_s"]
            methods[name] = {
                "instances": n,
                **timing,
                "instance_steps_per_s": rate[name],
                "speedup_over_neuron_sequential": rate[name] / rate["neuron_sequential"],
                "cpu_time_over_wall_time": worker.cpu_over_wall,
                **worker.info,
            }
            recordings[name] = found
        for name in MANY_CELL_BASELINES:
            if name not in methods:
                status = "not run at this N (only at the CPU sizes)" if name in many else None
                methods[name] = {"status": status or statuses[name]}
        for name, entry in engines.items():
            timing = timings[name]
            rate[name] = n * n_steps / timing["best_s"]
            engine = entry["engine"]
            methods[name] = {
                "instances": n,
                **timing,
                "configure_s": entry["configure_s"],
                "backend": engine.backend,
                "scheme": engine.scheme,
                "scheme_choice": None
                if engine.scheme_choice is None
                else dataclasses.asdict(engine.scheme_choice),
                "workers": (engine.workers or _cores()) if engine.backend == "cpu" else None,
                "instance_steps_per_s": rate[name],
                "cpu_time_over_wall_time": holders[name]["cpu_over_wall"],
                "speedup_vs": {base: rate[name] / rate[base] for base in BASELINES if base in rate},
            }
            fair = [base for base in FAIR_BASELINES if base in rate]
            if fair:
                fastest = max(fair, key=rate.get)
                methods[name]["fastest_neuron_same_cores"] = fastest
                methods[name][HEADLINE] = rate[name] / rate[fastest]
            recordings[name] = _recording(holders[name]["result"], check)

        accuracy = {}
        for name in engines:
            for base in ("neuron_sequential", *FAIR_BASELINES):
                if base in recordings:
                    accuracy[f"{name}_vs_{base}"] = compare(recordings[name], recordings[base])
        for base in MANY_CELL_BASELINES:
            if base in recordings:
                accuracy[f"{base}_vs_neuron_sequential"] = compare(recordings[base], references)
        order = [*BASELINES, *engines]
        methods = {name: methods[name] for name in order if name in methods}
        return {"instances": n, "methods": methods, "accuracy": accuracy}
    finally:
        for worker in workers.values():
            worker.close()


def _metered(function, holder: dict):
    """``function``, storing the process's CPU time over the wall time of its latest call."""

    def run():
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        holder["cpu_over_wall"] = (time.process_time() - cpu) / (time.perf_counter() - wall)

    return run


def _status(outcome: dict) -> str:
    """A many-cell baseline's overall status: where it ran, where it failed (and why)."""
    ran, errors = outcome["ran"], outcome["errors"]
    if not ran and not errors:
        return "not run (no N where it applies)"
    if not errors:
        return "ran"
    where, text = next(iter(errors.items()))
    prefix = f"ran at {', '.join(ran)}; " if ran else ""
    return f"{prefix}error at {', '.join(errors)} (first, at {where}): {text}"


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _summary(results: dict) -> dict:
    """Instance-steps per second of every method at every N, and the headline ratios."""
    rates: dict[str, dict[str, float]] = {}
    headline: dict[str, dict] = {}
    for key, group in results.items():
        for name, method in group["methods"].items():
            if "instance_steps_per_s" in method:
                rates.setdefault(name, {})[key] = method["instance_steps_per_s"]
        engine = group["methods"].get("engine_cpu", {})
        if HEADLINE in engine:
            headline[key] = {
                "against": engine["fastest_neuron_same_cores"],
                "speedup": engine[HEADLINE],
            }
    return {"instance_steps_per_s": rates, HEADLINE: headline}


def _subset(inputs: Inputs, n: int) -> Inputs:
    return Inputs(inputs.amp[:n], inputs.start[:n], inputs.interval[:n], inputs.delay[:n])


def _targets(results: dict, cuda_status: str | None) -> dict:
    targets = {}
    for backend, (n_min, factor, against) in TARGETS.items():
        name = f"engine_{backend}"
        target = {
            "applies_to": f"N >= {n_min}",
            "required_speedup": factor,
            "against": against,
        }
        speedups, missing = {}, []
        for key, group in results.items():
            method = group["methods"].get(name)
            if method is None or group["instances"] < n_min:
                continue
            if against == "neuron_sequential":
                value = method["speedup_vs"].get("neuron_sequential")
            else:
                value = method.get(HEADLINE)
            if value is None:
                missing.append(key)
            else:
                speedups[key] = value
        target["speedups"] = speedups
        if not speedups:
            target["met"] = None
            if backend == "cuda" and cuda_status:
                target["verdict"] = cuda_status
            elif missing:
                target["verdict"] = f"not measured: no {against} baseline ran at {missing}"
            else:
                target["verdict"] = "not measured"
        else:
            worst = min(speedups.values())
            target["worst_speedup"] = worst
            target["met"] = worst >= factor and not missing
            what = (
                "the fastest NEURON on the same cores"
                if against != "neuron_sequential"
                else ("single-core NEURON")
            )
            if target["met"]:
                target["verdict"] = f"met: at least {worst:.1f}x {what} for every N >= {n_min}"
            else:
                target["verdict"] = (
                    f"NOT MET: {worst:.1f}x {what} for some N >= {n_min}, below the "
                    f"{factor:g}x target" + (f" (no baseline at {missing})" if missing else "")
                )
        targets[backend] = target
    return targets


# --------------------------------------------------------------------------- profile
#: The chunk widths of the profile's sweep (``Engine(..., chunk=w)``).
PROFILE_CHUNKS = (1, 4, 16, 32, 64, 128)


def _reduced(model: CellModel, keep) -> CellModel:
    """``model`` with only the mechanisms for whose table ``keep(table)`` is true; the
    removed ones' events, and the ions no kept mechanism uses, go too."""
    mechanisms = {name: table for name, table in model.mechanisms.items() if keep(table)}
    used = {use.ion for table in mechanisms.values() for use in table.mechanism.ions}
    return dataclasses.replace(
        model,
        mechanisms=mechanisms,
        ions={ion: table for ion, table in model.ions.items() if ion in used},
        events={name: events for name, events in model.events.items() if name in mechanisms},
    )


def _listed(model: CellModel, names: list[str]) -> str:
    """Mechanisms with their instance counts: ``"1 IClamp, 8 ExpSyn"``, ``"hh at 9 nodes"``
    (or ``"none"``)."""
    listed = []
    for name in names:
        table = model.mechanisms[name]
        point = table.mechanism.is_point_process
        listed.append(f"{table.count} {name}" if point else f"{name} at {table.count} nodes")
    return ", ".join(listed) or "none"


def profile_engine(
    bench: PyramidBench, inputs: Inputs, n: int, tstop: float, rounds: int = 2
) -> dict:
    """Where the engine's time goes: parts of the model removed, chunk widths, workers, N.

    Parameters
    ----------
    bench : PyramidBench
        The open bench (its exported model and inputs' wiring).
    inputs : Inputs
        At least ``n`` instances' inputs.
    n : int
        Instances of every variant but the N = 1 one.
    tstop : float
        Simulated time per run in ms.
    rounds : int
        Rounds of :func:`benchmarks.solve.time_round_robin` (best of ``rounds`` timed
        calls per variant, each after an untimed one, which also compiles a reduced
        model's kernel).

    Returns
    -------
    dict
        Times in µs per instance-step: the best ``Engine.run`` call (recording the two
        probes and detecting spikes as the benchmark does) over instances x steps, so a
        call's fixed cost (set-up, initialisation: ``set_up_us_per_call``, a call with
        tstop = 0) is spread over them and dominates at small N x steps.

        * ``variants_workers_1``: on one worker, the full model, then reduced models
          built from the model's own tables (``dataclasses.replace`` with
          ``model.mechanisms`` filtered; the removed mechanisms' events and unused ions
          go too), run without inputs: without the point processes, then also without
          the density mechanisms other than the first, then without any mechanism;
          ``phase_estimates`` are the differences;
        * ``chunk_sweep``: the full model on all workers with the engine's default chunk
          and at each width of :data:`PROFILE_CHUNKS`; ``workers_sweep``: one worker
          against all; ``instances_sweep``: N = ``n`` against N = 1 (all with the
          engine's default chunk).
    """
    cell = bench.cell
    sub = _subset(inputs, n)
    n_steps = round(tstop / DT)
    points = [k for k, t in cell.mechanisms.items() if t.mechanism.is_point_process]
    density = [k for k, t in cell.mechanisms.items() if not t.mechanism.is_point_process]
    first, others = density[:1], density[1:]
    no_points = _reduced(cell, lambda t: t.name not in points)
    first_only = _reduced(no_points, lambda t: t.name not in others)
    bare = _reduced(first_only, lambda t: False)
    workers = min(_cores(), n)
    reduced = {  # on one worker: no interference between the workers
        "full model": bench.engine(sub, workers=1),
        f"without the point processes ({', '.join(points)}) and their events": Engine(
            no_points, n, workers=1
        ),
        "... and without the density mechanisms other than the first "
        f"({', '.join(others) or 'none'})": Engine(first_only, n, workers=1),
        f"... and without {', '.join(first) or 'any mechanism'}: no mechanism left": Engine(
            bare, n, workers=1
        ),
    }
    default = f"the engine's default chunk, {workers} workers"
    chunks = {default: bench.engine(sub)}
    per_worker = -(-n // workers)  # the most instances one worker gets
    for width in PROFILE_CHUNKS:
        label = f"chunk={width}, {workers} workers"
        if width > per_worker:
            label += f" (wider than the {per_worker} instances per worker)"
        chunks[label] = bench.engine(sub, chunk=width)
    single = {"N=1": bench.engine(_subset(inputs, 1))}
    engines = {**reduced, **chunks, **single}
    calls = {name: bench.engine_run(engine, tstop, {}) for name, engine in engines.items()}
    set_up = {f"N={n}": engines[default], "N=1": single["N=1"]}
    for name, engine in set_up.items():  # the fixed cost of a call: tstop = 0
        calls[f"set-up {name}"] = bench.engine_run(engine, 0.0, {})
    timings = time_round_robin(calls, rounds=rounds, calls_per_turn=1, budget_s=1e9)
    us = {
        name: timings[name]["best_s"] / (engine.n_instances * n_steps) * 1e6
        for name, engine in engines.items()
    }
    full, without_points, with_first, nothing = (us[name] for name in reduced)
    return {
        "instances": n,
        "tstop_ms": tstop,
        "unit": "µs per instance-step (one instance advanced one step)",
        "variants_workers_1": {name: us[name] for name in reduced},
        "phase_estimates": {
            f"point processes ({_listed(cell, points)}) and their events": full - without_points,
            f"density mechanisms other than the first ({_listed(cell, others)})": (
                without_points - with_first
            ),
            f"the first density mechanism ({_listed(cell, first)})": with_first - nothing,
            "no mechanism: capacitance, axial terms, solve, v update, recording, spikes": nothing,
        },
        "chunk_sweep": {name: us[name] for name in chunks},
        "workers_sweep": {"workers=1": full, f"all workers ({workers})": us[default]},
        "instances_sweep": {f"N={n}": us[default], "N=1": us["N=1"]},
        "set_up_us_per_call": {name: timings[f"set-up {name}"]["best_s"] * 1e6 for name in set_up},
        "ns_per_node_step_full_model": us[default] * 1e3 / cell.n,
        "neuron_ns_per_node_step": None,
    }


def _last_line(error: str) -> str:
    """The exception line of a recorded error (before the child's output, if any)."""
    lines = error.split("\n--- its output")[0].strip().splitlines()
    return lines[-1] if lines else ""


def print_report(report: dict) -> None:
    model = report["model"]
    print(
        f"\n{model['nodes']:,}-node pyramid, tstop {report['tstop_ms']:g} ms, "
        f"dt {report['dt_ms']:g} ms ({report['steps_per_instance']:,} steps per instance)"
    )
    for key, group in report["results"].items():
        methods = group["methods"]
        engines = [name for name in methods if name.startswith("engine_")]
        header = "".join(f" {'vs ' + name[7:]:>10s}" for name in engines)
        print(f"\n  {key}\n  {'method':20s} {'best s':>9s} {'inst*steps/s':>14s}{header}")
        for name, method in methods.items():
            if "instance_steps_per_s" not in method:
                if "error" in method:
                    print(f"  {name:20s} error: {_last_line(method['error'])}")
                else:
                    print(f"  {name:20s} {method.get('status', '')}")
                continue
            ratios = "".join(
                f" {methods[e]['speedup_vs'][name]:9.2f}x"
                if name in methods[e]["speedup_vs"]
                else f" {'':>10s}"
                for e in engines
            )
            print(
                f"  {name:20s} {method['best_s']:9.3f} "
                f"{method['instance_steps_per_s']:14,.0f}{ratios}"
            )
        for name in engines:
            if HEADLINE in methods[name]:
                print(
                    f"  {name}: {methods[name][HEADLINE]:.2f}x "
                    f"{methods[name]['fastest_neuron_same_cores']} (the fastest NEURON on the "
                    "same cores)"
                )
        for name, check in group["accuracy"].items():
            print(
                f"  accuracy {name}: max |dV| = {check['max_abs_dv_mV']:.3g} mV over instances "
                f"{check['instances_checked']}, spike counts match: {check['spike_counts_match']}"
            )
    print()
    for name, baseline in report["baselines"].items():
        status = baseline["status"]
        if "error" in status:
            status = f"{status.split(': ', 1)[0]}: ... {_last_line(status)} (in the JSON)"
        print(f"  {name}: {status}")
    print(f"  cuda: {report['cuda']}")
    for backend, target in report["targets"].items():
        print(f"  target {backend} ({target['applies_to']}, >= {target['required_speedup']:g}x "
              f"{target['against']}): {target['verdict']}")  # fmt: skip
    if "profile" in report:
        profile = report["profile"]
        print(f"\n  profile ({profile['unit']}, N={profile['instances']}):")
        titles = {
            "variants_workers_1": "the model with parts removed, one worker",
            "phase_estimates": "phases (differences between those)",
            "chunk_sweep": "chunk widths, all workers",
            "workers_sweep": "workers (the engine's default chunk)",
            "instances_sweep": "instances (the engine's default chunk, all workers)",
        }
        for section, title in titles.items():
            print(f"   {title}:")
            for name, value in profile[section].items():
                print(f"    {name:82s} {value:8.2f}")
        print("   the fixed cost of one Engine.run call (tstop = 0), µs per call:")
        for name, value in profile["set_up_us_per_call"].items():
            print(f"    {name:82s} {value:8.0f}")
        engine_ns = profile["ns_per_node_step_full_model"]
        neuron_ns = profile["neuron_ns_per_node_step"]
        print(f"    ns per node-step: engine {engine_ns:.2f}, NEURON (one core) {neuron_ns:.2f}")

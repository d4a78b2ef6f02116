"""Throughput on the released L5PC: N cells, each with its own step amplitude, side by side.

The cell: BluePyOpt's ``examples/l5pc`` (the Blue Brain layer 5 thick-tufted pyramidal
cell, 12 mechanisms, calcium dynamics, the apical Ih gradient) with its released
parameters, built as BluePyOpt builds it (``tests/support/published_models.build_l5pc``),
with the Step3 protocol's two IClamps at the soma: the -0.126 nA holding current and the
step, moved to ``step_delay`` (default 100 ms; Step3's is 700 ms) so that short runs
spike. Every cell q gets its own step amplitude (seeded, U(0.6, 1.2) nA; cell q has the
same amplitude at every N).

For every N, one :func:`benchmarks.solve.time_round_robin` times side by side (one untimed
and one timed call per method and round):

``neuron_sequential``
    One L5PC in NEURON, M cells (``neuron_instances``) one after another on ONE core:
    the step's amplitude set, ``h.finitialize`` + ``h.continuerun(tstop)``, nothing
    recorded. Its cost is linear in N, so the rate of M cells holds for every N. Its
    recorded runs of the first cells are the reference traces.
``neuron_nthread2``
    N copies of the cell in ONE NEURON session (each built by ``build_l5pc``, its own
    step amplitude), every cell's soma and apical tip recorded and its spikes detected
    (a gid per cell, ``pc.spike_record``), ``ParallelContext.nthread(2)``; the timed
    call is ``h.finitialize`` + ``h.continuerun(tstop)`` after an untimed warm-up run.
``coreneuron``
    The same N cells run by CoreNEURON from the ``neuron`` wheel on 2 threads. The
    L5PC's mechanisms are compiled for it with ``nrnivmodl -coreneuron`` (once, cached
    beside ``load_mod_mechanisms``' build: ``<hash>-coreneuron``) and loaded
    (``CORENEURONLIB`` names the build's ``libcorenrnmech``); ``coreneuron.enable =
    True``, ``gpu = False``, ``h.cvode.cache_efficient(1)``, ``pc.nthread(2)``; the timed
    call is ``h.finitialize`` + ``pc.psolve(tstop)`` (CoreNEURON's copy of the model
    included). When it cannot run (no compiler, ``nrnivmodl`` failing, CoreNEURON
    failing), its exact error is in the report.

Every NEURON baseline runs in its own child process (:class:`benchmarks.engine._Baseline`:
NEURON loads one mechanism library per process, a crash costs only itself, and what it
prints goes to a log whose end is recorded with any error). The ``neuron_sequential``
child also exports the model (``export_model``) for the engine.

Against them: **the engine on the CPU** (``Engine(model, N)``, its default workers: every
core) in this process, every instance given its own step amplitude
(``engine.set("IClamp.amp", amplitudes, target=<the step clamp>)``), recording the same two
nodes of every instance and detecting spikes at the soma.

The headline, as in :mod:`benchmarks.engine`: the engine against the faster of
``neuron_nthread2`` and ``coreneuron`` at the same N on the same cores
(``speedup_vs_fastest_neuron_same_cores``); the CPU target is >= 5x for N >= 100. The first
cells of every run are compared with NEURON's one-cell runs and the engine with every
baseline (soma and apical tip at every step, every node at tstop, spike times): 0.0 mV
against NEURON, ~1e-11 mV against CoreNEURON.

Run from a source checkout (the model builder lives with the tests)::

    python -m benchmarks.l5pc                      # N = 100 and 1000, tstop 300 ms
    python -m benchmarks.l5pc --sizes 10 --tstop 50 --out /tmp/l5pc.json

NEURON with many L5PCs is slow: at N = 1,000 and 300 ms each many-cell call takes tens
of minutes on two cores, and a round makes two calls per method (``--rounds``, default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine import (
    DT,
    FAIR_BASELINES,
    HEADLINE,
    THREADS,
    THRESHOLD,
    WARM_UP_MS,
    BaselineError,
    _Baseline,
    _coreneuron_status,
    _cores,
    _last_line,
    _metered,
    _status,
    _summary,
    _targets,
    compare,
)
from .solve import DATA, device_tag, machine_info, time_round_robin

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"
#: Every baseline, in the order they are timed.
BASELINES = ("neuron_sequential", "neuron_nthread2", "coreneuron")
#: The baselines with all N cells in one session (a child process per N).
MANY_CELL_BASELINES = ("neuron_nthread2", "coreneuron")
AMPLITUDE_RANGE = (0.6, 1.2)  # nA, the step's amplitude per cell ~ U(...)
PROTOCOL = "Step3"

BASELINE_DESCRIPTIONS = {
    "neuron_sequential": "one L5PC in NEURON, M cells one after another on one core (step "
    "amplitude set, h.finitialize + h.continuerun each, nothing recorded); the rate holds "
    "for every N. Its recorded runs are the reference traces",
    "neuron_nthread2": "N L5PCs in one NEURON session, h.ParallelContext().nthread(2); "
    "h.finitialize + h.continuerun (one untimed warm-up run first)",
    "coreneuron": "the same N L5PCs run by CoreNEURON from the neuron wheel: mechanisms "
    "built with nrnivmodl -coreneuron, coreneuron.enable = True, gpu = False, "
    "cvode.cache_efficient(1), nthread(2); h.finitialize + pc.psolve (includes "
    "CoreNEURON's model copy per psolve)",
}


@dataclass
class L5pcSetup:
    """What the child processes need besides the amplitudes (picklable)."""

    step_delay: float  # ms
    instances: int  # M, the cells neuron_sequential runs per timed call
    export_to: str | None = None  # folder of the exported model (neuron_sequential)


# --------------------------------------------------------------------------- child processes
def _published_models():
    """``tests/support/published_models`` (the L5PC builder), importable from a checkout."""
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    import published_models

    return published_models


def _mod_dir() -> Path:
    return _published_models().l5pc_folder() / "mechanisms"


def coreneuron_mechanisms(mod_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``nrnivmodl -coreneuron`` on ``mod_dir`` unless cached; the folder and its
    ``libcorenrnmech``.

    The build goes to ``<load_mod_mechanisms' build folder>-coreneuron`` (same hash: the
    ``.mod`` files and NEURON's version), built in a temporary folder renamed into place.
    Raises ``RuntimeError`` with ``nrnivmodl``'s output when it is missing or fails.
    """
    from neuron_bridge.compile_mod import build_dir, find_nrnivmodl

    mod_dir = Path(mod_dir).resolve()
    plain = build_dir(mod_dir)
    target = plain.with_name(plain.name + "-coreneuron")
    found = _coreneuron_library(target)
    if found is not None:
        return target, found
    nrnivmodl = find_nrnivmodl()
    if nrnivmodl is None:
        raise RuntimeError("nrnivmodl not found (next to this Python or on PATH)")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-coreneuron-", dir=target.parent))
    try:
        for path in sorted(mod_dir.glob("*.mod")):
            shutil.copy2(path, scratch / path.name)
        done = subprocess.run(
            [nrnivmodl, "-coreneuron", "."],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"$ {nrnivmodl} -coreneuron .\n{done.stdout}\n{done.stderr}", flush=True)
        if done.returncode != 0 or _coreneuron_library(scratch) is None:
            raise RuntimeError(
                f"nrnivmodl -coreneuron failed (exit {done.returncode}) on {mod_dir}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        try:
            scratch.rename(target)
        except OSError:  # another process finished first
            if _coreneuron_library(target) is None:
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target, _coreneuron_library(target)


def _coreneuron_library(folder: Path) -> Path | None:
    """The folder's ``<arch>/libcorenrnmech`` when its NEURON library is there too."""
    for library in sorted(folder.glob("*/libcorenrnmech.*")):
        if any(library.parent.glob("libnrnmech.*")):
            return library
    return None


def _cxx() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and (found := shutil.which(name)):
            return found
    return None


def _session(kind: str):
    """NEURON with the L5PC's mechanisms (CoreNEURON's build for ``coreneuron``)."""
    import neuron
    from neuron import h

    info = {"neuron_version": neuron.__version__}
    if kind == "coreneuron":
        info["cxx_compiler"] = _cxx()
        folder, library = coreneuron_mechanisms(_mod_dir())
        os.environ["CORENEURONLIB"] = str(library)  # CoreNEURON loads the L5PC's build
        if not neuron.load_mechanisms(str(folder), warn_if_already_loaded=False):
            raise RuntimeError(f"NEURON could not load the mechanisms built in {folder}")
        info["coreneuron_library"] = str(library)
    else:
        from neuron_bridge.compile_mod import load_mod_mechanisms

        load_mod_mechanisms(_mod_dir())
    h.load_file("stdrun.hoc")
    h.dt = DT
    h.steps_per_ms = 1.0 / DT
    h.cvode.active(0)
    return h, info


def _build(h, step_delay: float, amplitude: float) -> dict:
    """One L5PC with the step's onset and amplitude set."""
    built = _published_models().build_l5pc(PROTOCOL)
    step = built["clamps"][0]
    step.delay, step.amp = step_delay, float(amplitude)
    built["step"] = step
    return built


def _v_all(cell) -> np.ndarray:
    """Every segment's v (``allseg``, the sections of ``cell.all`` in order)."""
    return np.array([seg.v for sec in cell.all for seg in sec.allseg()])


class _SequentialCell:
    """One L5PC in NEURON, cells one after another on one core; exports the model."""

    def __init__(self, setup: L5pcSetup, amplitudes: np.ndarray, tstop: float):
        start = time.perf_counter()
        h, info = _session("neuron_sequential")
        self.h, self.info, self.tstop = h, info, tstop
        self.amplitudes = amplitudes
        self.instances = setup.instances
        self.built = built = _build(h, setup.step_delay, amplitudes[0])
        info["threads"] = 1
        if setup.export_to is not None:
            from neuron_bridge.export import export_model

            model = export_model()
            model.save(Path(setup.export_to) / "l5pc.npz")
            soma, tip = built["soma"], built["apical_tip"]
            info["model"] = {
                "nodes": model.n,
                "soma": int(soma.node_index()),
                "apical_tip": int(tip.node_index()),
                "apical_tip_segment": str(tip),
                "step": built["step"].hname(),
                "holding": built["clamps"][1].hname(),
                "holding_amp_nA": float(built["clamps"][1].amp),
                "step_dur_ms": float(built["step"].dur),
                "mechanism_instances": {k: t.count for k, t in model.mechanisms.items()},
                "celsius": float(h.celsius),
                "v_init_mV": float(h.v_init),
                # the engine's node of every (section of cell.all, allseg) in order
                "order": [
                    int(seg.node_index()) for sec in built["cell"].all for seg in sec.allseg()
                ],
            }
        info["build_s"] = time.perf_counter() - start

    def run(self, tstop: float) -> None:
        h, step = self.h, self.built["step"]
        for amplitude in self.amplitudes[: self.instances]:
            step.amp = float(amplitude)
            h.finitialize(h.v_init)
            h.continuerun(tstop)

    def results(self, count: int) -> dict:
        """Cells ``0..count-1`` run again, recorded: the reference traces."""
        h, built = self.h, self.built
        soma = built["soma"]
        vectors = [h.Vector().record(soma._ref_v), h.Vector().record(built["apical_tip"]._ref_v)]
        detector = h.NetCon(soma._ref_v, None, sec=soma.sec)
        detector.threshold = THRESHOLD
        spikes = h.Vector()
        detector.record(spikes)
        found = {}
        for q in range(count):
            built["step"].amp = float(self.amplitudes[q])
            h.finitialize(h.v_init)
            h.continuerun(self.tstop)
            found[q] = {
                "traces": np.array([v.as_numpy().copy() for v in vectors]),
                "spikes": spikes.as_numpy().copy(),
                "v_final": _v_all(built["cell"]),
            }
        del detector
        return found


class _ManyCells:
    """N L5PCs in one NEURON session on ``THREADS`` threads (or run by CoreNEURON)."""

    def __init__(self, kind: str, setup: L5pcSetup, amplitudes: np.ndarray, tstop: float):
        start = time.perf_counter()
        h, info = _session(kind)
        self.h, self.info = h, info
        self.cells = [_build(h, setup.step_delay, amplitude) for amplitude in amplitudes]
        self.context = context = h.ParallelContext()
        for q, cell in enumerate(self.cells):
            soma = cell["soma"]
            cell["traces"] = [
                h.Vector().record(soma._ref_v),
                h.Vector().record(cell["apical_tip"]._ref_v),
            ]
            cell["detector"] = detector = h.NetCon(soma._ref_v, None, sec=soma.sec)
            detector.threshold = THRESHOLD
            context.set_gid2node(q, context.id())  # spikes by gid: CoreNEURON needs it
            context.cell(q, detector)
        self.spike_t, self.spike_gid = h.Vector(), h.Vector()
        context.spike_record(-1, self.spike_t, self.spike_gid)
        self.coreneuron = kind == "coreneuron"
        info["threads"] = THREADS
        if self.coreneuron:
            from neuron import coreneuron

            h.cvode.cache_efficient(1)
            coreneuron.enable = True
            coreneuron.gpu = False
            coreneuron.verbose = 1  # errors only
            info.update(
                coreneuron_enable=bool(coreneuron.enable),
                coreneuron_gpu=bool(coreneuron.gpu),
                cache_efficient=int(h.cvode.cache_efficient()),
            )
        context.nthread(THREADS)
        info["threads_running"] = int(context.nthread())
        info["build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        self.run(min(WARM_UP_MS, tstop))  # NEURON's first many-cell run is slow: untimed
        info["warm_up_s"] = time.perf_counter() - start
        info["warm_up_ms"] = min(WARM_UP_MS, tstop)

    def run(self, tstop: float) -> None:
        self.h.finitialize(self.h.v_init)
        if self.coreneuron:
            self.context.psolve(tstop)
        else:
            self.h.continuerun(tstop)

    def results(self, count: int) -> dict:
        gids, times = self.spike_gid.as_numpy(), self.spike_t.as_numpy()
        return {
            q: {
                "traces": np.array([v.as_numpy().copy() for v in self.cells[q]["traces"]]),
                "spikes": np.sort(times[gids == q]),
                "v_final": _v_all(self.cells[q]["cell"]),
            }
            for q in range(count)
        }


def open_runner(kind: str, setup: L5pcSetup, amplitudes: np.ndarray, tstop: float):
    """The child's runner of ``kind`` (the factory of :class:`benchmarks.engine._Baseline`)."""
    if kind == "neuron_sequential":
        return _SequentialCell(setup, amplitudes, tstop)
    return _ManyCells(kind, setup, amplitudes, tstop)


# --------------------------------------------------------------------------- the benchmark
def make_amplitudes(n: int, seed: int = 0) -> np.ndarray:
    """The step amplitude of cells ``0..n-1`` in nA (cell q's is the same for every n)."""
    return np.random.default_rng(seed).uniform(*AMPLITUDE_RANGE, n)


def run_benchmark(
    sizes: tuple[int, ...] = (100, 1000),
    tstop: float = 300.0,
    step_delay: float = 100.0,
    neuron_instances: int = 4,
    check_instances: int = 3,
    rounds: int = 1,
    seed: int = 0,
    baselines: tuple[str, ...] | None = None,
    output_path: str | Path | None = None,
    logs: str | Path | None = None,
    write: bool = True,
    verbose: bool = True,
) -> dict:
    """Measure the engine beside NEURON (one core; nthread(2)) and CoreNEURON on the L5PC.

    Parameters
    ----------
    sizes : tuple of int
        Numbers of cells N.
    tstop : float
        Simulated time per cell in ms (``round(tstop / dt)`` steps of 0.025 ms).
    step_delay : float
        The step's onset in ms.
    neuron_instances : int
        M, the cells ``neuron_sequential`` runs one after another per timed call.
    check_instances : int
        Cells of every run compared with NEURON (at most every N; neuron_sequential
        records its one-cell runs of them).
    rounds : int
        Rounds of :func:`benchmarks.solve.time_round_robin` (each: one untimed + one timed
        call per method).
    baselines : tuple of str, optional
        Which of :data:`BASELINES` run (default: all). ``neuron_sequential`` always runs
        (it exports the model and its runs are the reference traces).
    output_path : path, optional
        The JSON (default ``data/benchmarks/l5pc_<device>.json``).
    logs : path, optional
        A folder to keep the children's logs in (default: deleted; their end is in the
        report with any error).
    """
    selected = ("neuron_sequential", *(BASELINES[1:] if baselines is None else baselines))
    selected = tuple(dict.fromkeys(selected))
    unknown = sorted(set(selected) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
    statuses = {name: "not selected (baselines=...)" for name in BASELINES}
    for name in selected:
        statuses[name] = "selected"
    if "coreneuron" in selected and (missing := _coreneuron_status()):
        statuses["coreneuron"] = missing
    many = [name for name in MANY_CELL_BASELINES if statuses[name] == "selected"]
    outcomes = {name: {"ran": [], "errors": {}} for name in many}
    sizes = tuple(sorted(set(sizes)))
    amplitudes = make_amplitudes(max((*sizes, neuron_instances)), seed)
    check = min(check_instances, *sizes)
    n_steps = round(tstop / DT)
    log_dir = Path(logs) if logs else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)

    from dhs.engine import load_model

    with tempfile.TemporaryDirectory(prefix="dhs-l5pc-") as work:
        if verbose:
            print("building the L5PC in NEURON (neuron_sequential) and exporting it", flush=True)
        setup = L5pcSetup(step_delay, neuron_instances, export_to=work)
        sequential = _Baseline("neuron_sequential", setup, amplitudes, tstop, open_runner)
        try:
            sequential.wait_ready()
            references = sequential.results(check)
            if sequential.error is not None:
                raise BaselineError(f"neuron_sequential failed:\n{sequential.error}")
            meta = sequential.info.pop("model")
            model = load_model(Path(work) / "l5pc.npz")
            probes = [meta["soma"], meta["apical_tip"]]
            start = time.perf_counter()
            _engine_call(model, amplitudes[:2], meta, 1.0, probes, {})()  # JIT or cache load
            compile_s = time.perf_counter() - start
            setup = L5pcSetup(step_delay, neuron_instances)
            results = {}
            for n in sizes:
                results[f"N={n}"] = _measure_size(
                    model,
                    meta,
                    setup,
                    amplitudes,
                    n,
                    tstop,
                    rounds,
                    check,
                    references,
                    sequential,
                    many,
                    outcomes,
                    statuses,
                    log_dir,
                    verbose,
                )
            if sequential.error is not None:
                raise BaselineError(f"neuron_sequential failed:\n{sequential.error}")
        finally:
            _keep_log(sequential, log_dir, "neuron_sequential")
            sequential.close()
    statuses["neuron_sequential"] = "ran"
    for name, outcome in outcomes.items():
        statuses[name] = _status(outcome)
    target = _targets(results, None)["cpu"]
    if not target["speedups"] and max(sizes) < 100:
        target["verdict"] = "not measured: no N >= 100 in this run"
    report = {
        "benchmark": "dhs.engine throughput vs NEURON (one core, nthread(2)) and CoreNEURON "
        "on the released BluePyOpt L5PC: N cells, each with its own step amplitude",
        "model": {
            "description": "BluePyOpt 1.14.26 examples/l5pc (Blue Brain L5 thick-tufted "
            "pyramidal cell), released parameters, built as BluePyOpt builds it "
            "(tests/support/published_models.build_l5pc); Step3's holding current "
            f"({meta['holding_amp_nA']:g} nA) and step IClamps at soma[0](0.5), the "
            f"step moved to {step_delay:g} ms ({meta['step_dur_ms']:g} ms long)",
            "nodes": meta["nodes"],
            "mechanism_instances": meta["mechanism_instances"],
            "celsius": meta["celsius"],
            "v_init_mV": meta["v_init_mV"],
            "step_clamp": meta["step"],
            "step_delay_ms": step_delay,
            "inputs_per_instance": f"step amplitude ~ U{AMPLITUDE_RANGE} nA; seed {seed}",
            "recorded": f"soma (node {meta['soma']}) and apical tip "
            f"({meta['apical_tip_segment']}, node {meta['apical_tip']}) of every cell; "
            f"spikes at the soma (threshold {THRESHOLD:g} mV)",
        },
        "tstop_ms": tstop,
        "dt_ms": DT,
        "steps_per_instance": n_steps,
        "machine": machine_info(),
        "baselines": {
            name: {"status": statuses[name], "what": BASELINE_DESCRIPTIONS[name]}
            for name in BASELINES
        },
        "headline": f"{HEADLINE}: the CPU engine against the faster of neuron_nthread2 and "
        "coreneuron at the same N, on the same cores (the fair baseline); speedup_vs has "
        "the ratio to every baseline",
        "method": "benchmarks.solve.time_round_robin per N: per round, every method gets "
        "one untimed and one timed call; best over timed calls. Throughput = instances x "
        "steps / s. Engine: Engine.run (including its set-up), recording two nodes of every "
        "instance and detecting spikes. Every NEURON baseline runs in its own child "
        "process (build and warm-up not timed); neuron_sequential records nothing, the "
        "many-cell baselines record the same two nodes of every cell and detect spikes. "
        "cpu_time_over_wall_time: the process's CPU time over the wall time of its latest "
        "timed call (below 2 for a 2-thread method: the other core was busy).",
        "engine_jit_or_cache_load_s": compile_s,
        "results": results,
        "summary": _summary(results),
        "targets": {"cpu": target},
        "reproduce": f"python -m benchmarks.l5pc --sizes {' '.join(map(str, sizes))} "
        f"--tstop {tstop:g} --step-delay {step_delay:g} --rounds {rounds}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if verbose:
        print_report(report)
    if write:
        path = (
            Path(output_path)
            if output_path
            else DATA / "benchmarks" / f"l5pc_{device_tag(report['machine'])}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        if verbose:
            print(f"\nwrote {path}")
    return report


def _engine_call(model, amplitudes: np.ndarray, meta: dict, tstop: float, probes, holder):
    """A function running an engine of ``amplitudes.size`` instances, each its own step."""
    from dhs.engine import Engine

    engine = Engine(model, amplitudes.size)
    engine.set("IClamp.amp", amplitudes, target=meta["step"])
    holder["engine"] = engine

    def run():
        holder["result"] = engine.run(
            tstop, dt=DT, record_nodes=probes, spike_node=probes[0], spike_threshold=THRESHOLD
        )

    return run


def _keep_log(worker: _Baseline, log_dir: Path | None, name: str) -> None:
    if log_dir is not None and Path(worker.log_path).exists():
        shutil.copyfile(worker.log_path, log_dir / f"l5pc_{name}.log")


def _measure_size(
    model,
    meta,
    setup,
    amplitudes,
    n,
    tstop,
    rounds,
    check,
    references,
    sequential,
    many,
    outcomes,
    statuses,
    log_dir,
    verbose,
) -> dict:
    """Time every method at one N side by side; accuracy against every NEURON baseline."""
    n_steps = round(tstop / DT)
    if verbose:
        print(f"N={n}: setting up {', '.join(many) or 'no many-cell baselines'}", flush=True)
    workers = {name: _Baseline(name, setup, amplitudes[:n], tstop, open_runner) for name in many}
    try:
        for worker in workers.values():
            worker.wait_ready()
        calls = {"neuron_sequential": sequential.run}
        for name, worker in workers.items():
            if worker.error is None:
                calls[name] = worker.run
        holder: dict = {}
        start = time.perf_counter()
        engine_run = _engine_call(
            model, amplitudes[:n], meta, tstop, [meta["soma"], meta["apical_tip"]], holder
        )
        configure_s = time.perf_counter() - start
        calls["engine_cpu"] = _metered(engine_run, holder)
        if verbose:
            print(f"N={n}: timing {', '.join(calls)} ({rounds} round(s))", flush=True)
        timings = time_round_robin(calls, rounds=rounds, calls_per_turn=1, budget_s=1e9)

        rate = {}
        methods: dict[str, dict] = {}
        timing = timings["neuron_sequential"]
        rate["neuron_sequential"] = setup.instances * n_steps / timing["best_s"]
        methods["neuron_sequential"] = {
            "instances_timed": setup.instances,
            **timing,
            "instance_steps_per_s": rate["neuron_sequential"],
            "cpu_time_over_wall_time": sequential.cpu_over_wall,
            "note": f"M={setup.instances} cells run one after another on one core; "
            "NEURON's cost is linear in N, so this rate holds for every N",
            **sequential.info,
        }
        recordings = {"neuron_sequential": references}
        for name, worker in workers.items():
            found = worker.results(check) if worker.error is None else None
            if worker.error is not None:
                methods[name] = {"instances": n, "error": worker.error, **worker.info}
                outcomes[name]["errors"][f"N={n}"] = worker.error
                continue
            outcomes[name]["ran"].append(f"N={n}")
            rate[name] = n * n_steps / timings[name]["best_s"]
            methods[name] = {
                "instances": n,
                **timings[name],
                "instance_steps_per_s": rate[name],
                "speedup_over_neuron_sequential": rate[name] / rate["neuron_sequential"],
                "cpu_time_over_wall_time": worker.cpu_over_wall,
                **worker.info,
            }
            recordings[name] = found
        for name in MANY_CELL_BASELINES:
            if name not in methods:
                methods[name] = {"status": statuses[name]}

        engine = holder["engine"]
        rate["engine_cpu"] = n * n_steps / timings["engine_cpu"]["best_s"]
        entry = {
            "instances": n,
            **timings["engine_cpu"],
            "configure_s": configure_s,
            "backend": engine.backend,
            "workers": engine.workers or _cores(),
            "instance_steps_per_s": rate["engine_cpu"],
            "cpu_time_over_wall_time": holder["cpu_over_wall"],
            "speedup_vs": {
                base: rate["engine_cpu"] / rate[base] for base in BASELINES if base in rate
            },
        }
        fair = [base for base in FAIR_BASELINES if base in rate]
        if fair:
            fastest = max(fair, key=rate.get)
            entry["fastest_neuron_same_cores"] = fastest
            entry[HEADLINE] = rate["engine_cpu"] / rate[fastest]
        methods["engine_cpu"] = entry
        result, order = holder["result"], meta["order"]
        recordings["engine_cpu"] = {
            q: {
                "traces": result.v[q],
                "spikes": result.spikes[q],
                "v_final": result.v_final[q][order],
            }
            for q in range(check)
        }
        accuracy = {}
        for base in BASELINES:
            if base in recordings:
                accuracy[f"engine_cpu_vs_{base}"] = compare(
                    recordings["engine_cpu"], recordings[base]
                )
        for base in MANY_CELL_BASELINES:
            if base in recordings:
                accuracy[f"{base}_vs_neuron_sequential"] = compare(recordings[base], references)
        return {"instances": n, "methods": methods, "accuracy": accuracy}
    finally:
        for name, worker in workers.items():
            _keep_log(worker, log_dir, f"{name}_N{n}")
            worker.close()


def print_report(report: dict) -> None:
    model = report["model"]
    print(
        f"\nL5PC ({model['nodes']:,} nodes), tstop {report['tstop_ms']:g} ms, dt "
        f"{report['dt_ms']:g} ms ({report['steps_per_instance']:,} steps per instance)"
    )
    for key, group in report["results"].items():
        methods = group["methods"]
        engine = methods["engine_cpu"]
        print(
            f"\n  {key}\n  {'method':20s} {'best s':>9s} {'inst*steps/s':>14s} {'engine vs':>10s}"
        )
        for name, method in methods.items():
            if "instance_steps_per_s" not in method:
                what = method.get("status") or f"error: {_last_line(method.get('error', ''))}"
                print(f"  {name:20s} {what}")
                continue
            ratio = engine["speedup_vs"].get(name)
            shown = f"{ratio:9.2f}x" if ratio is not None and name != "engine_cpu" else ""
            print(
                f"  {name:20s} {method['best_s']:9.3f} {method['instance_steps_per_s']:14,.0f} "
                f"{shown:>10s}"
            )
        if HEADLINE in engine:
            print(
                f"  engine_cpu: {engine[HEADLINE]:.2f}x {engine['fastest_neuron_same_cores']} "
                "(the fastest NEURON on the same cores)"
            )
        for name, check in group["accuracy"].items():
            print(
                f"  accuracy {name}: max |dV| = {check['max_abs_dv_mV']:.3g} mV over cells "
                f"{check['instances_checked']}, spike counts match: {check['spike_counts_match']}"
            )
    print()
    for name, baseline in report["baselines"].items():
        status = baseline["status"]
        if "error" in status:
            status = f"{status.split(': ', 1)[0]}: ... {_last_line(status)} (in the JSON)"
        print(f"  {name}: {status}")
    target = report["targets"]["cpu"]
    print(
        f"  target ({target['applies_to']}, >= {target['required_speedup']:g}x "
        f"{target['against']}): {target['verdict']}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.l5pc", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes",
        "--n",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="numbers of cells N (default 100 1000)",
    )
    parser.add_argument("--tstop", type=float, default=300.0, help="ms (default 300)")
    parser.add_argument(
        "--step-delay",
        type=float,
        default=100.0,
        help="step onset in ms (Step3's is 700; default 100 so short runs spike)",
    )
    parser.add_argument(
        "--neuron-instances",
        type=int,
        default=4,
        help="M cells timed in neuron_sequential (default 4)",
    )
    parser.add_argument(
        "--check-instances", type=int, default=3, help="cells compared with NEURON (default 3)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="round-robin rounds (default 1)")
    parser.add_argument(
        "--baselines",
        nargs="+",
        choices=BASELINES,
        help="default: all (neuron_sequential always runs)",
    )
    parser.add_argument(
        "--out",
        "--output",
        type=Path,
        default=None,
        help="JSON path (default data/benchmarks/l5pc_<device>.json)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the children's logs in this folder"
    )
    arguments = parser.parse_args(argv)
    run_benchmark(
        sizes=tuple(arguments.sizes),
        tstop=arguments.tstop,
        step_delay=arguments.step_delay,
        neuron_instances=arguments.neuron_instances,
        check_instances=arguments.check_instances,
        rounds=arguments.rounds,
        baselines=tuple(arguments.baselines) if arguments.baselines else None,
        output_path=arguments.out,
        logs=arguments.logs,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

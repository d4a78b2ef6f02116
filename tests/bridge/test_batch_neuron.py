"""A batch of three different NEURON cells, one with explicit spines (the issue's
acceptance test for mixed batches).

Each cell is built in NEURON on its own, exported (:func:`neuron_bridge.export_model`),
run natively by NEURON (fixed step, dt = 0.025 ms, 30 ms, soma and one or two other
nodes recorded, spikes at the soma) and deleted before the next is built:

``spiny`` (311 nodes; hh, pas, AmpaNmda)
    NEURON's demo pyramid at 40 µm segments, ``hh`` soma, ``pas`` dendrites, eight
    explicit spines (neck and head, :func:`neuron_bridge.add_spines_at`) with an
    AmpaNmda synapse on each head, driven by two NetStims through NetCons (28 events;
    the soma spikes twice).
``branched`` (53 nodes; hh, pas, IClamp)
    A hand-built branched cell with ``hh`` in the soma, the axon, the apical trunk and
    one apical branch, ``pas`` in the other dendrites, an IClamp at the soma (two spikes).
``synaptic`` (25 nodes; hh, pas, ExpSyn, Exp2Syn)
    A ball-and-stick (``hh`` soma, ``pas`` dendrite) with an ExpSyn and an Exp2Syn on the
    dendrite driven by two NetStims (8 events, three spikes).

The three exported models run together in one CPU :class:`dhs.engine.Batch` (2 workers,
3 instances each, per-instance parameters set through the engine's API, instance 0
keeping the exported values): every instance equals its engine run alone bit for bit;
instance 0 of each equals NEURON bit for bit (0.0 mV, the same spike times); the other
instances differ from it. Under the CUDA simulator the same three models, saved and
loaded in a child process, run in a CUDA Batch in both schemes and equal a CPU Batch
bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from neuron import h

from dhs.engine import Batch, CellModel, Engine, RunOptions
from neuron_bridge import (
    SpineParameters,
    add_spines_at,
    export_model,
    spine_sites,
    synapse_rows,
)
from neuron_models import SPIKE_THRESHOLD, V_INIT, Model, reset_neuron, simulate
from paths import ROOT, SUPPORT
from pyramid_cells import active_pyramid

TSTOP = 30.0  # ms
DT = 0.025  # ms
N_INSTANCES = 3
WORKERS = 2
SIMULATOR_TSTOP = 3.5  # ms: every cell gets its input, two of them spike
SIMULATOR_TIMEOUT_S = 300


@dataclass
class Exported:
    """A cell exported from NEURON and NEURON's own run of it."""

    name: str
    model: CellModel
    record_nodes: tuple[int, ...]  # soma(0.5) first
    v: np.ndarray  # (n_records, n_times), mV
    spikes: np.ndarray  # ms, at soma(0.5)


def _netstim(start: float, interval: float, number: int):
    stim = h.NetStim()
    stim.start, stim.interval, stim.number, stim.noise = start, interval, number, 0
    return stim


def _connect(stim, synapse, weight: float, delay: float):
    netcon = h.NetCon(stim, synapse)
    netcon.weight[0], netcon.delay = weight, delay
    return netcon


def _record(name: str, soma, probes: dict, objects: dict) -> Exported:
    """Export the model NEURON holds now, then run it natively (``objects``: the point
    processes, NetStims and NetCons, kept alive for the run)."""
    model = export_model(V_INIT)
    nodes = tuple(int(segment.node_index()) for segment in probes.values())
    sections = list(h.allsec())
    native = simulate(
        Model(name=name, cells=[sections], somas=[soma], probes=probes, objects=objects), TSTOP
    )
    v = np.array(list(native.traces.values()))
    return Exported(name, model, nodes, v, native.spikes[soma.name()])


def _spiny() -> Exported:
    cell = active_pyramid(segment_length=40.0)
    sites = spine_sites(cell, SpineParameters(density=0.3), seed=2)
    pool = np.sort(np.random.default_rng(3).choice(len(sites), 8, replace=False))
    spines = add_spines_at(cell, sites.subset(pool))
    synapses = [h.AmpaNmda(head(0.5)) for head in spines.heads]
    stims = [_netstim(1.0, 6.0, 4), _netstim(5.0, 9.0, 3)]
    netcons = [
        _connect(stims[k % 2], synapse, 0.03, 0.5 + 0.25 * k) for k, synapse in enumerate(synapses)
    ]
    soma = cell.soma[0]
    probes = {
        "soma": soma(0.5),
        "head": spines.heads[0](0.5),
        "parent": spines.necks[0].parentseg(),
    }
    objects = {"synapses": synapses, "stims": stims, "netcons": netcons}
    exported = _record("spiny", soma, probes, objects)
    assert np.array_equal(synapse_rows(synapses), np.arange(8))
    return exported


def _section(name: str, length: float, diam: float, nseg: int, mechanism: str):
    section = h.Section(name=name)
    section.L, section.diam, section.nseg, section.Ra = length, diam, nseg, 120.0
    section.insert(mechanism)
    if mechanism == "pas":
        for segment in section:
            segment.pas.g, segment.pas.e = 5e-5, -70.0
    return section


def _branched() -> Exported:
    soma = _section("br_soma", 18.0, 18.0, 1, "hh")
    axon = _section("br_axon", 300.0, 1.0, 15, "hh")
    trunk = _section("br_trunk", 150.0, 3.0, 7, "hh")
    tuft_a = _section("br_tuft_a", 120.0, 1.2, 5, "hh")
    tuft_b = _section("br_tuft_b", 90.0, 1.0, 4, "pas")
    basal = [_section(f"br_basal{k}", 80.0 + 20 * k, 1.5, 3 + k, "pas") for k in range(3)]
    axon.connect(soma(0))
    trunk.connect(soma(1))
    tuft_a.connect(trunk(1))
    tuft_b.connect(trunk(1))
    for k, section in enumerate(basal):
        section.connect(soma(0.5) if k else soma(0))
    for section in (axon, tuft_a):
        for segment in section:
            segment.hh.gnabar = 0.08
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur, clamp.amp = 1.0, 20.0, 0.4
    probes = {"soma": soma(0.5), "tuft": tuft_a(0.9), "axon": axon(0.95)}
    return _record("branched", soma, probes, {"clamp": clamp})


def _synaptic() -> Exported:
    soma = _section("bs_soma", 25.0, 25.0, 1, "hh")
    dendrite = _section("bs_dend", 400.0, 2.0, 21, "pas")
    dendrite.connect(soma(1))
    fast = h.ExpSyn(dendrite(0.2))
    fast.tau, fast.e = 2.0, 0.0
    slow = h.Exp2Syn(dendrite(0.7))
    slow.tau1, slow.tau2, slow.e = 0.5, 5.0, 0.0
    stims = [_netstim(1.0, 8.0, 3), _netstim(4.5, 5.0, 5)]
    netcons = [_connect(stims[0], fast, 0.04, 1.0), _connect(stims[1], slow, 0.03, 0.75)]
    probes = {"soma": soma(0.5), "dendrite": dendrite(0.7)}
    objects = {"synapses": [fast, slow], "stims": stims, "netcons": netcons}
    return _record("synaptic", soma, probes, objects)


@pytest.fixture(scope="module")
def cells(ampanmda) -> list[Exported]:
    """The three cells, each built, exported, run by NEURON and deleted in turn (a
    builder's NEURON objects go with its frame; :func:`reset_neuron` deletes the
    sections, so nothing of one cell is in NEURON while the next is exported)."""
    exported = []
    for build in (_spiny, _branched, _synaptic):
        reset_neuron()
        exported.append(build())
        reset_neuron()
    return exported


# ----------------------------------------------------------------------- the engine
def _vary(engine: Engine, name: str) -> None:
    """Per-instance parameters; instance 0 keeps the exported values."""
    scale = np.linspace(1.0, 1.6, engine.n_instances)
    if name == "spiny":  # every synapse's weights, per instance
        for s in range(engine.model.mechanisms["AmpaNmda"].count):
            times, weights = engine.events("AmpaNmda", s)
            for q in range(1, engine.n_instances):
                engine.set_events("AmpaNmda", s, times, weights[:, 0] * scale[q], instances=q)
    elif name == "branched":
        engine.set("IClamp.amp", engine.get("IClamp.amp")[:, 0] * scale)
    else:
        engine.set("Exp2Syn.tau2", engine.get("Exp2Syn.tau2")[:, 0] * scale)
        engine.set("ExpSyn.e", engine.get("ExpSyn.e")[:, 0] - 10.0 * (scale - 1.0))


def _engines(cells: list[Exported], **options) -> list[Engine]:
    engines = []
    for cell in cells:
        engine = Engine(cell.model, N_INSTANCES, **options)
        _vary(engine, cell.name)
        engines.append(engine)
    return engines


def _options(cell: Exported) -> RunOptions:
    return RunOptions(
        TSTOP,
        DT,
        record_nodes=cell.record_nodes,
        spike_node=cell.record_nodes[0],
        spike_threshold=SPIKE_THRESHOLD,
    )


def test_three_different_cells(cells):
    """Different morphologies and mechanism sets; the spiny cell has 8 spine heads (two
    nodes each); every cell spikes in NEURON."""
    sizes = [cell.model.n for cell in cells]
    mechanisms = [set(cell.model.mechanisms) for cell in cells]
    assert len(set(sizes)) == 3, sizes
    assert mechanisms[0] == {"hh", "pas", "AmpaNmda"}
    assert mechanisms[1] == {"hh", "pas", "IClamp"}
    assert mechanisms[2] == {"hh", "pas", "ExpSyn", "Exp2Syn"}
    assert sum("spine_head" in name for name in cells[0].model.node_names) == 8 * 2
    assert all(cell.spikes.size >= 1 for cell in cells), [c.spikes for c in cells]


def test_batch_equals_engines_alone_and_neuron(cells):
    """One Batch of all three (2 workers) against each engine alone and against NEURON.
    Per instance: AmpaNmda weights x1, x1.3, x1.6 (``set_events`` per instance);
    IClamp amplitude x1, x1.3, x1.6; Exp2Syn tau2 x1, x1.3, x1.6 with ExpSyn e 0, -3,
    -6 mV. Every instance's spike times change too."""
    options = [_options(cell) for cell in cells]
    batch = Batch(_engines(cells), workers=WORKERS).run(options)
    alone = [
        engine.run(option)
        for engine, option in zip(_engines(cells, workers=WORKERS), options, strict=True)
    ]
    for cell, together, single in zip(cells, batch, alone, strict=True):
        assert np.array_equal(together.v, single.v), cell.name
        assert np.array_equal(together.v_final, single.v_final), cell.name
        for a, b in zip(together.spikes, single.spikes, strict=True):
            assert np.array_equal(a, b), cell.name
        difference = np.abs(together.v[0] - cell.v).max()
        assert difference == 0.0, f"{cell.name}: max |ΔV| = {difference} mV against NEURON"
        assert np.array_equal(together.spikes[0], cell.spikes), cell.name
        for q in range(1, N_INSTANCES):
            assert not np.array_equal(together.v[q], together.v[0]), (cell.name, q)
            assert not np.array_equal(together.spikes[q], together.spikes[0]), (cell.name, q)


# ----------------------------------------------------------------------- CUDA simulator
_CHILD = r"""
import json, sys, time
import numpy as np
from dhs.backends import cuda_simulator_enabled
from dhs.engine import Batch, Engine, RunOptions, load_model

sys.setswitchinterval(2e-5)  # the simulated threads contend for the GIL
jobs = json.loads(sys.argv[1])
models = [load_model(job["path"]) for job in jobs]
options = [RunOptions(job["tstop"], 0.025, record_nodes=tuple(job["nodes"]),
                      spike_node=job["nodes"][0], spike_threshold=job["threshold"])
           for job in jobs]

def engines(**kwargs):
    made = []
    for model in models:
        engine = Engine(model, 2, **kwargs)
        if "IClamp" in model.mechanisms:
            engine.set("IClamp.amp", engine.get("IClamp.amp")[:, 0] * [1.0, 1.4])
        for kind in model.events:
            for s in range(model.mechanisms[kind].count):
                times, weights = engine.events(kind, s)
                engine.set_events(kind, s, times, weights[:, 0] * 1.4, instances=1)
        made.append(engine)
    return made

cpu = Batch(engines(), workers=2).run(options)
report = {"simulator": cuda_simulator_enabled(), "runs": []}
for scheme in ("thread", "lanes"):
    start = time.perf_counter()
    made = engines(backend="cuda", scheme=scheme, lanes=4)
    gpu = Batch(made).run(options)
    seconds = time.perf_counter() - start
    for job, a, b, engine in zip(jobs, cpu, gpu, made):
        report["runs"].append({
            "name": job["name"], "scheme": scheme, "ran": engine.scheme, "seconds": seconds,
            "spike_counts": [int(s.size) for s in b.spikes],
            "v_range": [float(a.v.min()), float(a.v.max())],
            "max_abs_dv": float(np.abs(a.v - b.v).max()),
            "max_abs_dv_final": float(np.abs(a.v_final - b.v_final).max()),
            "spikes_equal": all(np.array_equal(x, y) for x, y in zip(a.spikes, b.spikes)),
            "instances_differ": bool(not np.array_equal(a.v[0], a.v[1])),
        })
print(json.dumps(report), flush=True)
"""


@pytest.mark.cudasim
def test_cuda_simulator_batch_equals_cpu(cells, tmp_path):
    """The three models saved, loaded in a child under ``NUMBA_ENABLE_CUDASIM=1`` and
    run for 3.5 ms, 2 instances each (instance 1 with 1.4 times the IClamp amplitude and
    synaptic weights), in a CUDA Batch in each scheme (``lanes=4``): equal to a CPU
    Batch bit for bit. About 45 s (thread 11 s, lanes 33 s)."""
    jobs = []
    for cell in cells:
        path = tmp_path / f"{cell.name}.npz"
        cell.model.save(path)
        jobs.append({"name": cell.name, "path": str(path), "tstop": SIMULATOR_TSTOP,
                     "nodes": list(cell.record_nodes), "threshold": SPIKE_THRESHOLD})  # fmt: skip
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    environment["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(ROOT), str(SUPPORT), environment.get("PYTHONPATH")) if path
    )
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(jobs)],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SIMULATOR_TIMEOUT_S,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["simulator"], "NUMBA_ENABLE_CUDASIM=1 did not take effect"
    runs = [(run["name"], run["scheme"]) for run in report["runs"]]
    assert runs == [(cell.name, s) for s in ("thread", "lanes") for cell in cells]
    for run in report["runs"]:
        assert run["max_abs_dv"] == 0.0 and run["max_abs_dv_final"] == 0.0, run
        assert run["ran"] == run["scheme"] and run["spikes_equal"], run
        assert run["instances_differ"] and run["v_range"][1] - run["v_range"][0] > 10.0, run
    spiking = {run["name"] for run in report["runs"] if min(run["spike_counts"]) >= 1}
    assert spiking == {"branched", "synaptic"}, report["runs"]

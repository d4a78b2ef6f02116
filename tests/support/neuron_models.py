"""Real NEURON models for the ``neuron_bridge`` tests, and the reset between tests.

Nothing here is mocked: the models are built with ``neuron.h`` and simulated by NEURON.
NEURON keeps its state per process, so every builder returns a :class:`Model` that holds
the only references to its point processes, NetStims and NetCons, and
:func:`reset_neuron` deletes every section, drops those references and puts NEURON's
global settings back to the defaults these tests assume. The fixtures that call these
functions live in ``conftest_neuron.py``.

Models
------
``branchy`` (:func:`build_branchy`)
    Two cells. Cell A: an ``hh`` soma driven by an IClamp, with dendrites attached at
    ``soma(0)``, ``soma(0.5)`` and ``soma(1)``; children at ``x = 0``, ``0.5`` and ``1``
    of a dendrite; a *reversed* section (``connect(parent(1), 1)``, attached at its own
    ``x = 1``) that has children of its own; and a second reversed section attached at
    a parent's ``x = 0``. ``nseg`` is 1, odd and even. Cell B: an ``hh`` soma and three
    dendrites, an ExpSyn driven by a NetStim through a NetCon. Both cells spike.
``pyramid`` (:func:`build_pyramid`)
    NEURON's demo pyramidal cell (``demo/pyramid.nrn`` in the wheel) with segments of
    at most 1 µm (``nseg`` = smallest odd integer >= L / 1 µm; 5,551 matrix rows),
    ``hh`` in the soma, ``pas`` elsewhere, an IClamp at the soma and three synapses
    (two ExpSyn, one Exp2Syn) on dendrites, driven by one NetStim. The soma spikes.
"""

from __future__ import annotations

import gc
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import neuron
import numpy as np
import pytest
from neuron import h

import dhs
from neuron_bridge import _nrn, installed
from neuron_bridge.compile_mod import find_nrnivmodl

# Backends a swap or a solve is checked with; "cuda" only where a real GPU exists.
BACKENDS = [
    "serial",
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not dhs.gpu_available(), reason="needs a CUDA GPU"),
        ],
    ),
]

DT = 0.025  # ms; NEURON's default, and 1 / steps_per_ms
V_INIT = -65.0  # mV
SPIKE_THRESHOLD = -10.0  # mV

# Stimulus times of the models below, in ms. A single-step check (extract, then one
# fadvance) must not have any of them in [t, t + dt]: fadvance evaluates the IClamp at
# t + dt/2 and delivers events up to t + dt/2, fcurrent (what extract assembles) at t.
BRANCHY_ICLAMP = (2.0, 80.0)  # delay, dur: on at 2 ms, off at 82 ms
BRANCHY_NETSTIM = (5.0, 10.0, 5)  # start, interval, number: events at 5, 15, ..., 45 ms
NETCON_DELAY = 1.0  # ms: synaptic events arrive at 6, 16, ..., 46 ms
PYRAMID_ICLAMP = (2.0, 40.0)  # on at 2 ms, off at 42 ms
PYRAMID_NETSTIM = (4.0, 7.0, 6)  # events at 4, 11, ..., 39 ms; arriving 1 ms later


@dataclass
class Model:
    """A NEURON model built here, with the references that keep its objects alive.

    Attributes
    ----------
    name : str
    cells : list of list of nrn.Section
        Each cell's sections, root section first.
    somas : list of nrn.Section
        One per cell; spikes are detected at ``soma(0.5)``.
    probes : dict of str to nrn.Segment
        Where voltages are recorded in runs (:func:`simulate`).
    reversed_sections : list of nrn.Section
        Sections attached at their own ``x = 1`` end (``orientation() == 1``).
    stimulus_edges : tuple of float
        Times (ms) at which an input switches or an event arrives.
    objects : dict of str to object
        Point processes, NetStims and NetCons; dropped by :meth:`release`.
    """

    name: str
    cells: list
    somas: list
    probes: dict
    reversed_sections: list = field(default_factory=list)
    stimulus_edges: tuple = ()
    objects: dict = field(default_factory=dict)

    @property
    def sections(self) -> list:
        return [section for cell in self.cells for section in cell]

    def release(self) -> None:
        """Drop every reference to NEURON objects (before the sections are deleted)."""
        self.objects.clear()
        self.probes.clear()
        self.cells.clear()
        self.somas.clear()
        self.reversed_sections.clear()

    def quiet_at(self, t: float, dt: float = DT) -> bool:
        """True when no stimulus edge lies in [t - dt, t + 2 dt] (a generous margin)."""
        return all(not (t - dt <= edge <= t + 2 * dt) for edge in self.stimulus_edges)


@dataclass
class Run:
    """What :func:`simulate` recorded: voltage traces (mV), spike times (ms), steps."""

    t: np.ndarray
    traces: dict
    spikes: dict
    steps: int
    seconds: float

    def spike_count(self) -> int:
        return sum(times.size for times in self.spikes.values())


# --------------------------------------------------------------------------- mod files
def mod_compiler_missing() -> str | None:
    """Why ``dhs/engine/mod`` cannot be compiled here, or None when it can."""
    if find_nrnivmodl() is None:
        return "nrnivmodl is not installed"
    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++, clang++) for nrnivmodl"
    return None


# --------------------------------------------------------------------------- reset
def reset_neuron(*models: Model, collect: bool = True) -> None:
    """Put NEURON back to a clean default state: no swap, no sections, default settings.

    ``models`` are released first. Also safe when a test failed half-way (CVode on, two
    threads, a swap installed). ``collect=False`` skips the garbage collection (about
    0.1 s in a test session) when nothing can be left to collect.
    """
    swap = installed()
    if swap is not None:
        swap.uninstall()
    _nrn.hook_pointer().value = None  # in case a test set it by hand
    for model in models:
        model.release()
    if collect:
        gc.collect()  # point processes, NetCons, Vectors, LinearMechanisms in cycles
    for section in list(h.allsec()):
        h.delete_section(sec=section)
    _detach_orphan_netcons()
    if _nrn.uses_sparse13() and int(h.List("LinearMechanism").count()) == 0:
        # Once an extracellular section or a LinearMechanism existed, NEURON stays on
        # its sparse13 solver even after they are gone; this switches it back.
        h.CVode().use_mxb(0)
    restore_solve_settings()
    h.secondorder = 0
    h.steps_per_ms = 1.0 / DT
    h.dt = DT
    h.celsius = 6.3
    h.t = 0.0


def restore_solve_settings() -> None:
    """Fixed step, one thread, ``optimize_node_order(0)``: what the DHS swap needs."""
    h.cvode_active(0)
    parallel = h.ParallelContext()
    parallel.nthread(1)
    parallel.optimize_node_order(0)


def _detach_orphan_netcons() -> None:
    """Give NetCons whose target lost its section no target.

    NEURON 9.0.2 crashes (segmentation fault) in the next ``finitialize`` when a NetCon
    still delivers to a point process whose section was deleted and something (say a
    failed test's traceback) keeps the NetCon and that point process alive.
    """
    netcons = h.List("NetCon")
    for index in range(int(netcons.count())):
        target = netcons.o(index).syn()
        if target is not None and not target.has_loc():
            netcons.o(index).setpost()


def _odd_at_least(ratio: float) -> int:
    nseg = max(1, math.ceil(ratio - 1e-9))
    return nseg if nseg % 2 else nseg + 1


# --------------------------------------------------------------------------- branchy
def _section(name: str, length: float, diam: float, nseg: int, mechanism: str = "pas"):
    section = h.Section(name=name)
    section.L = length
    section.diam = diam
    section.nseg = nseg
    section.Ra = 100.0
    section.insert(mechanism)
    if mechanism == "pas":
        for segment in section:
            segment.pas.g = 1e-4
            segment.pas.e = -65.0
    return section


def build_branchy() -> Model:
    """Two cells with every kind of attachment; both spike in 100 ms (see module doc)."""
    # Cell A.
    soma_a = _section("a_soma", 20.0, 20.0, 1, "hh")
    at_0 = _section("a_at0", 80.0, 1.5, 4)  # even nseg, on soma(0): the root node
    at_half = _section("a_at_half", 60.0, 1.2, 1)  # nseg 1, on soma(0.5)
    at_1 = _section("a_at1", 150.0, 2.0, 5)  # odd nseg, on soma(1)
    child_0 = _section("a_child0", 40.0, 0.8, 3)
    child_half = _section("a_child_half", 50.0, 0.7, 2)
    child_1 = _section("a_child1", 70.0, 1.0, 6)
    reversed_1 = _section("a_reversed", 90.0, 1.1, 7)  # attached at its own x = 1
    reversed_0 = _section("a_reversed0", 30.0, 0.9, 2)  # reversed, on a parent's x = 0
    on_free_end = _section("a_on_reversed_free_end", 25.0, 0.6, 3)
    on_reversed_middle = _section("a_on_reversed_middle", 35.0, 0.6, 1)
    at_0.connect(soma_a(0))
    at_half.connect(soma_a(0.5))
    at_1.connect(soma_a(1))
    child_0.connect(at_1(0))
    child_half.connect(at_1(0.5))
    child_1.connect(at_1(1))
    reversed_1.connect(at_half(1), 1)
    reversed_0.connect(child_half(0), 1)
    on_free_end.connect(reversed_1(0))  # the free end of a reversed section is x = 0
    on_reversed_middle.connect(reversed_1(0.3))
    cell_a = [soma_a, at_0, at_half, at_1, child_0, child_half, child_1, reversed_1,
              reversed_0, on_free_end, on_reversed_middle]  # fmt: skip

    # Cell B.
    soma_b = _section("b_soma", 15.0, 15.0, 1, "hh")
    b_dend = _section("b_dend", 120.0, 1.5, 9)
    b_basal = _section("b_basal", 45.0, 1.0, 2)
    b_tip = _section("b_tip", 60.0, 0.8, 4)
    b_dend.connect(soma_b(1))
    b_basal.connect(soma_b(0))
    b_tip.connect(b_dend(1))
    cell_b = [soma_b, b_dend, b_basal, b_tip]

    clamp = h.IClamp(soma_a(0.5))
    clamp.delay, clamp.dur = BRANCHY_ICLAMP
    clamp.amp = 0.5  # nA
    synapse = h.ExpSyn(b_dend(0.1))
    synapse.tau, synapse.e = 2.0, 0.0
    stim = h.NetStim()
    stim.start, stim.interval, stim.number = BRANCHY_NETSTIM
    stim.noise = 0
    netcon = h.NetCon(stim, synapse)
    netcon.weight[0] = 0.01  # µS
    netcon.delay = NETCON_DELAY

    start, interval, number = BRANCHY_NETSTIM
    events = [start + k * interval for k in range(number)]
    edges = (*BRANCHY_ICLAMP[:1], sum(BRANCHY_ICLAMP), *events,
             *(e + NETCON_DELAY for e in events))  # fmt: skip
    return Model(
        name="branchy",
        cells=[cell_a, cell_b],
        somas=[soma_a, soma_b],
        probes={
            "a_soma": soma_a(0.5),
            "b_soma": soma_b(0.5),
            "a_reversed": reversed_1(0.5),
            "a_reversed_free_end": reversed_1(0),
            "b_dend": b_dend(0.1),
        },
        reversed_sections=[reversed_1, reversed_0],
        stimulus_edges=edges,
        objects={"clamp": clamp, "synapse": synapse, "stim": stim, "netcon": netcon},
    )


# --------------------------------------------------------------------------- pyramid
def pyramid_path() -> Path:
    """``demo/pyramid.nrn`` inside the installed ``neuron`` wheel."""
    candidates = [
        Path(neuron.__file__).resolve().parent / ".data" / "share" / "nrn" / "demo",
        Path(h.neuronhome()) / "demo",
    ]
    for folder in candidates:
        if (folder / "pyramid.nrn").is_file():
            return folder / "pyramid.nrn"
    found = sorted(Path(neuron.__file__).resolve().parent.rglob("pyramid.nrn"))
    if not found:
        raise FileNotFoundError(f"pyramid.nrn not found under {candidates}")
    return found[0]


PYRAMID_NODES = 5551  # data/README.md: pyramid_nodes_1um


def build_pyramid(dx: float = 1.0) -> Model:
    """NEURON's demo pyramid, segments of at most ``dx`` µm, hh soma, synapses."""
    if any(True for _ in h.allsec()):
        raise RuntimeError("build_pyramid needs a model without sections (reset_neuron)")
    h.xopen(str(pyramid_path()))  # creates top-level soma, dendrite_1[31], ...
    sections = list(h.allsec())
    soma = h.soma
    for section in sections:
        section.nseg = _odd_at_least(section.L / dx)
        section.Ra = 150.0
        if section == soma:
            section.insert("hh")
        else:
            section.insert("pas")
            for segment in section:
                segment.pas.g = 1e-4
                segment.pas.e = -65.0
    sections.sort(key=lambda section: section != soma)  # root section first

    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur = PYRAMID_ICLAMP
    clamp.amp = 0.3  # nA: spikes at 6.7, 22.1 and 36.2 ms
    objects = {"clamp": clamp}
    start, interval, number = PYRAMID_NETSTIM
    stim = h.NetStim()
    stim.start, stim.interval, stim.number = start, interval, number
    stim.noise = 0
    objects["stim"] = stim
    sites = [
        ("exp", h.dendrite_1[5](0.5)),
        ("exp2", h.dendrite_3[4](0.3)),
        ("exp", h.dendrite_6[2](0.8)),
    ]
    for k, (kind, site) in enumerate(sites):
        if kind == "exp":
            synapse = h.ExpSyn(site)
            synapse.tau = 2.0
        else:
            synapse = h.Exp2Syn(site)
            synapse.tau1, synapse.tau2 = 0.5, 3.0
        synapse.e = 0.0
        netcon = h.NetCon(stim, synapse)
        netcon.weight[0] = 0.02
        netcon.delay = NETCON_DELAY
        objects[f"synapse{k}"] = synapse
        objects[f"netcon{k}"] = netcon
    events = [start + k * interval for k in range(number)]
    edges = (PYRAMID_ICLAMP[0], sum(PYRAMID_ICLAMP), *events,
             *(e + NETCON_DELAY for e in events))  # fmt: skip
    return Model(
        name="pyramid",
        cells=[sections],
        somas=[soma],
        probes={
            "soma": soma(0.5),
            "synapse_site": h.dendrite_3[4](0.3),
            "distal": h.dendrite_1[30](0.5),
        },
        stimulus_edges=edges,
        objects=objects,
    )


# --------------------------------------------------------------------------- running
def simulate(model: Model, tstop: float, v_init: float = V_INIT, changes=()) -> Run:
    """``h.finitialize(v_init); h.continuerun(tstop)``, recording probes and spikes.

    ``changes``: ``(t, function)`` pairs, in time order; the run stops at each ``t``
    (``h.continuerun(t)``), calls ``function()`` and goes on.
    """
    t_vector = h.Vector().record(h._ref_t)
    vectors = {name: h.Vector().record(segment._ref_v) for name, segment in model.probes.items()}
    detectors = {}
    spike_vectors = {}
    for soma in model.somas:
        detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
        detector.threshold = SPIKE_THRESHOLD
        spike_vectors[soma.name()] = h.Vector()
        detector.record(spike_vectors[soma.name()])
        detectors[soma.name()] = detector
    start = time.perf_counter()
    h.finitialize(v_init)
    for t, change in changes:
        h.continuerun(t)
        change()
    h.continuerun(tstop)
    seconds = time.perf_counter() - start
    run = Run(
        t=t_vector.as_numpy().copy(),
        traces={name: vector.as_numpy().copy() for name, vector in vectors.items()},
        spikes={name: vector.as_numpy().copy() for name, vector in spike_vectors.items()},
        steps=int(t_vector.size()) - 1,  # t is recorded at finitialize and every step
        seconds=seconds,
    )
    del detectors, vectors, spike_vectors, t_vector
    return run


def node_voltages(segments: list) -> np.ndarray:
    """``seg.v`` of every node (zero-area end nodes and root nodes included)."""
    return np.array([segment.v for segment in segments])


def advance_to(t: float) -> None:
    """``h.fadvance()`` until ``h.t`` is within dt/2 of ``t``."""
    while h.t < t - 0.5 * h.dt:
        h.fadvance()

"""dhs.engine against NEURON itself: exported models reproduce NEURON's traces.

Everything here runs real NEURON (no mocks): a model is built, NEURON runs it for 200 ms
at dt = 0.025 ms (8,000 ``h.fadvance()`` calls after ``h.finitialize``), the model is
exported with :func:`neuron_bridge.export.export_model`, and the engine runs it with no
NEURON involved. Voltages must agree to 1e-6 mV and spike times to 1 µs; in practice
they agree bit for bit (``MAX_DIFFERENCES`` collects the measured values).

Every test builds its NEURON model in the ``neuron_session`` fixture, which deletes all
sections, drops the objects and restores NEURON's global settings afterwards, since
NEURON's state is shared by the whole test process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from neuron import h

from dhs.engine import CellModel, Engine, load_model
from dhs.engine.inputs import poisson_times
from neuron_bridge.export import export_model, netstim_spike_times, point_process_order
from neuron_bridge.extract import node_map, read_coupling
from neuron_models import reset_neuron

h.load_file("stdrun.hoc")

DT = 0.025  # ms
TSTOP = 200.0  # ms
N_STEPS = 8000
V_INIT = -65.0  # mV
THRESHOLD = -20.0  # mV
V_TOLERANCE = 1e-6  # mV
SPIKE_TOLERANCE = 1e-3  # ms (1 µs)


# --------------------------------------------------------------------------- NEURON state
def _reset_neuron() -> None:
    reset_neuron()  # the shared clean-up of tests/neuron_models.py
    h.usetable_hh = 1  # these tests switch hh's rate tables off and back on


@pytest.fixture
def neuron_session():
    """A clean NEURON before and after the test; yields a list that keeps objects alive."""
    _reset_neuron()
    keep: list = []
    yield keep
    keep.clear()
    _reset_neuron()


# --------------------------------------------------------------------------- models
@dataclass
class Built:
    """A NEURON model built here: probes (recorded segments), the spike site, objects."""

    probes: dict
    soma: object
    objects: dict = field(default_factory=dict)
    sections: list = field(default_factory=list)

    def node(self, probe: str) -> int:
        return int(self.probes[probe].node_index())


def _section(name: str, length: float, diam: float, nseg: int):
    section = h.Section(name=name)
    section.L, section.diam, section.nseg = length, diam, nseg
    section.Ra = 120.0
    section.cm = 1.3
    return section


def _pas(section, g: float = 2e-4, e: float = -68.0) -> None:
    section.insert("pas")
    for segment in section:
        segment.pas.g, segment.pas.e = g, e


def _netstim(start: float, interval: float, number: float):
    stim = h.NetStim()
    stim.start, stim.interval, stim.number, stim.noise = start, interval, number, 0
    return stim


def _connect(source, target, weight: float, delay: float):
    netcon = h.NetCon(source, target)
    netcon.weight[0], netcon.delay = weight, delay
    return netcon


def build_small(config: str) -> Built:
    """A small cell with every kind of attachment; ``config`` picks the mechanisms.

    Sections: soma; d1 on soma(1); d2 on soma(0) (the root node); d3 on d1(0.5); ``rev``
    reversed on d1(1) (attached at its own x = 1, free end x = 0). Point processes sit
    also on zero-area nodes: soma(0) (root), d2(1) and rev(0) (free ends), d3(1).

    * ``pas``: pas everywhere, three IClamps (subthreshold).
    * ``hh``: hh everywhere, IClamps (spikes).
    * ``expsyn``: pas everywhere, two ExpSyn driven by NetStims (subthreshold); one
      NetStim starts at 0 and its NetCon delay is dt/2 (an event on a delivery tie).
    * ``exp2syn``: pas everywhere, two Exp2Syn (one with tau1 = tau2, which INITIAL
      moves to 0.9999 tau2).
    * ``combined``: soma pas + hh, dendrites pas, d1 hh too, IClamp, ExpSyn, Exp2Syn,
      and a second cell (a forest) with hh and an ExpSyn (spikes).
    """
    soma = _section("soma", 20.0, 20.0, 1)
    d1 = _section("d1", 200.0, 2.0, 5)
    d2 = _section("d2", 150.0, 1.0, 3)
    d3 = _section("d3", 100.0, 0.8, 4)
    rev = _section("rev", 80.0, 1.0, 3)
    d1.connect(soma(1))
    d2.connect(soma(0))
    d3.connect(d1(0.5))
    rev.connect(d1(1), 1)
    sections = [soma, d1, d2, d3, rev]
    built = Built(
        probes={"soma": soma(0.5), "d1": d1(0.9), "d3_end": d3(1), "rev_free": rev(0),
                "d2": d2(0.5)},
        soma=soma,
        sections=sections,
    )  # fmt: skip
    objects = built.objects
    if config == "hh":
        for section in sections:
            section.insert("hh")
    else:
        for section in sections:
            _pas(section)
    if config in ("pas", "hh", "combined"):
        clamps = [(soma(0.5), 5.0, 150.0, 0.12 if config == "pas" else 0.25),
                  (d2(1), 20.0, 30.0, 0.02), (soma(0), 60.0, 30.0, 0.03)]  # fmt: skip
        for k, (site, delay, dur, amp) in enumerate(clamps):
            clamp = h.IClamp(site)
            clamp.delay, clamp.dur, clamp.amp = delay, dur, amp
            objects[f"clamp{k}"] = clamp
    if config in ("expsyn", "combined"):
        objects["stim1"] = _netstim(10.0, 7.3, 12)
        objects["stim2"] = _netstim(0.0, 20.0, 5.5)
        for k, site in enumerate((d1(0.3), rev(0))):
            synapse = h.ExpSyn(site)
            synapse.tau, synapse.e = 2.0 + k, 0.0
            objects[f"expsyn{k}"] = synapse
        objects["nc_e0"] = _connect(objects["stim1"], objects["expsyn0"], 0.002, 1.0)
        objects["nc_e1"] = _connect(objects["stim2"], objects["expsyn1"], 0.001, 0.5 * DT)
    if config in ("exp2syn", "combined"):
        objects["stim3"] = _netstim(3.0, 11.1, 9)
        for k, (site, tau1, tau2) in enumerate(((d3(0.9), 0.5, 4.0), (d3(1), 2.0, 2.0))):
            synapse = h.Exp2Syn(site)
            synapse.tau1, synapse.tau2, synapse.e = tau1, tau2, -5.0
            objects[f"exp2syn{k}"] = synapse
            objects[f"nc_x{k}"] = _connect(objects["stim3"], synapse, 0.003, 2.5)
    if config == "combined":
        soma.insert("hh")
        d1.insert("hh")
        soma2 = _section("soma2", 15.0, 15.0, 1)
        soma2.insert("hh")
        dend2 = _section("dend2", 120.0, 1.5, 7)
        _pas(dend2)
        dend2.connect(soma2(1))
        sections += [soma2, dend2]
        synapse = h.ExpSyn(dend2(0.2))
        synapse.tau, synapse.e = 1.5, 0.0
        objects["expsyn_b"] = synapse
        objects["nc_b"] = _connect(objects["stim1"], synapse, 0.02, 1.0)
        built.probes["soma2"] = soma2(0.5)
    return built


def build_pyramid(keep: list, segment_length: float = 20.0) -> Built:
    """neuron_bridge's demo pyramid (hh soma, pas dendrites, IClamp, 8 ExpSyn) plus an
    Exp2Syn on the far dendrite, all driven by the model's NetStim."""
    from benchmarks.models import pyramid_model

    model = pyramid_model(segment_length=segment_length)
    keep.append(model)
    far = model.far_dendrite()
    synapse = h.Exp2Syn(far(0.5))
    synapse.tau1, synapse.tau2, synapse.e = 0.3, 5.0, 0.0
    stimulus = next(obj for obj in model.keep if obj.hname().startswith("NetStim"))
    netcon = _connect(stimulus, synapse, 0.01, 1.5)
    clamp = next(obj for obj in model.keep if obj.hname().startswith("IClamp"))
    return Built(
        probes={"soma": model.soma(0.5), "far": far(0.5), "far_end": far(1)},
        soma=model.soma,
        objects={"exp2syn": synapse, "netcon": netcon, "clamp": clamp, "model": model},
    )


# --------------------------------------------------------------------------- running
@dataclass
class NeuronRun:
    traces: np.ndarray  # (n_probes, N_STEPS + 1)
    spikes: np.ndarray


def run_neuron(built: Built, v_init: float = V_INIT) -> NeuronRun:
    vectors = [h.Vector().record(segment._ref_v) for segment in built.probes.values()]
    detector = h.NetCon(built.soma(0.5)._ref_v, None, sec=built.soma)
    detector.threshold = THRESHOLD
    spikes = h.Vector()
    detector.record(spikes)
    h.dt = DT
    h.finitialize(v_init)
    for _ in range(N_STEPS):
        h.fadvance()
    run = NeuronRun(np.array([v.as_numpy().copy() for v in vectors]), spikes.as_numpy().copy())
    del detector
    return run


def run_engine(engine: Engine, built: Built):
    return engine.run(
        TSTOP,
        dt=DT,
        record_nodes=[built.node(name) for name in built.probes],
        spike_node=built.node("soma"),
        spike_threshold=THRESHOLD,
    )


MAX_DIFFERENCES: dict[str, float] = {}


def assert_matches(result, instance: int, reference: NeuronRun, label: str) -> None:
    difference = float(np.abs(result.v[instance] - reference.traces).max())
    MAX_DIFFERENCES[label] = max(MAX_DIFFERENCES.get(label, 0.0), difference)
    assert result.v[instance].shape == reference.traces.shape
    assert difference < V_TOLERANCE, f"{label}: max |V_engine - V_NEURON| = {difference} mV"
    spikes = result.spikes[instance]
    assert spikes.size == reference.spikes.size, (
        f"{label}: {spikes.size} spikes, NEURON has {reference.spikes.size}"
    )
    if spikes.size:
        assert np.abs(spikes - reference.spikes).max() < SPIKE_TOLERANCE


# --------------------------------------------------------------------------- tests
CONFIGS = ["pas", "hh", "expsyn", "exp2syn", "combined"]


@pytest.mark.parametrize("config", CONFIGS)
def test_identical_instances_match_neuron(neuron_session, config):
    """Each mechanism alone and all together: 1 and 4 identical instances."""
    h.usetable_hh = 0
    built = build_small(config)
    neuron_session.append(built)
    reference = run_neuron(built)
    if config in ("hh", "combined"):
        assert reference.spikes.size >= 3, "the spiking configurations must spike"
    else:
        assert reference.spikes.size == 0
    model = export_model(V_INIT)
    for n_instances in (1, 4):
        result = run_engine(Engine(model, n_instances), built)
        for instance in range(n_instances):
            assert_matches(result, instance, reference, config)


def test_hh_tables_match_neuron(neuron_session):
    """NEURON's default hh rate tables (usetable_hh = 1), built and looked up as NEURON."""
    assert h.usetable_hh == 1
    built = build_small("combined")
    neuron_session.append(built)
    reference = run_neuron(built)
    model = export_model(V_INIT)
    assert model.mechanisms["hh"].globals["usetable"] == 1
    result = run_engine(Engine(model, 2), built)
    for instance in range(2):
        assert_matches(result, instance, reference, "combined, tables")


def _set_pas_g(built, value):
    for section in built.sections:
        for segment in section:
            segment.pas.g = value


def _set_hh_gnabar(built, value):
    for section in built.sections:
        for segment in section:
            if h.ismembrane("hh", sec=section):
                segment.hh.gnabar = value


def _set_cm(built, value):
    for section in built.sections:
        section.cm = value


OVERRIDES = [
    # config, engine parameter, index, values, how NEURON gets the same change
    ("pas", "pas.g", None, [5e-5, 1e-4, 2e-4, 4e-4], _set_pas_g),
    ("hh", "IClamp.amp", 0, [0.1, 0.2, 0.3, 0.5],
     lambda built, value: setattr(built.objects["clamp0"], "amp", value)),
    ("expsyn", "ExpSyn.tau", 0, [0.5, 1.0, 3.0, 8.0],
     lambda built, value: setattr(built.objects["expsyn0"], "tau", value)),
    ("exp2syn", "Exp2Syn.tau2", 0, [1.0, 3.0, 6.0, 12.0],
     lambda built, value: setattr(built.objects["exp2syn0"], "tau2", value)),
    ("combined", "hh.gnabar", None, [0.08, 0.12, 0.16, 0.25], _set_hh_gnabar),
    ("combined", "cm", None, [0.7, 1.0, 1.3, 2.0], _set_cm),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "parameter", "index", "values", "change"),
    OVERRIDES,
    ids=[f"{config}-{parameter}" for config, parameter, *_ in OVERRIDES],
)
def test_per_instance_parameters_match_neuron(
    neuron_session, config, parameter, index, values, change
):
    """One parameter differs per instance; each instance matches its own NEURON run."""
    h.usetable_hh = 0
    built = build_small(config)
    neuron_session.append(built)
    engine = Engine(export_model(V_INIT), len(values))
    engine.set(parameter, np.array(values), target=index)
    result = run_engine(engine, built)
    for instance, value in enumerate(values):
        change(built, value)
        assert_matches(result, instance, run_neuron(built), f"{config} {parameter}")


def test_per_instance_v_init_matches_neuron(neuron_session):
    """v_init per instance, including one above threshold (a spike at t = 1e-10 ms)."""
    h.usetable_hh = 0
    built = build_small("combined")
    neuron_session.append(built)
    values = [-70.0, -65.0, -58.0, -10.0]
    engine = Engine(export_model(V_INIT), len(values))
    engine.set("v_init", values)
    result = run_engine(engine, built)
    for instance, value in enumerate(values):
        reference = run_neuron(built, v_init=value)
        assert_matches(result, instance, reference, "combined v_init")
    assert result.spikes[3][0] == pytest.approx(1e-10, abs=1e-15)


def test_per_instance_events_match_neuron(neuron_session):
    """Different synaptic inputs per instance, against NEURON runs with a changed NetStim."""
    h.usetable_hh = 0
    built = build_small("expsyn")
    neuron_session.append(built)
    stim, netcon = built.objects["stim1"], built.objects["nc_e0"]
    engine = Engine(export_model(V_INIT), 3)
    settings = [(10.0, 7.3, 12, 0.002), (4.0, 2.5, 40, 0.004), (30.0, 1.1, 7.5, 0.006)]
    for instance, (start, interval, number, weight) in enumerate(settings):
        times = netstim_spike_times(start, interval, number) + netcon.delay
        engine.set_events("ExpSyn", 0, times, weight, instances=instance)
    result = run_engine(engine, built)
    for instance, (start, interval, number, weight) in enumerate(settings):
        stim.start, stim.interval, stim.number = start, interval, number
        netcon.weight[0] = weight
        assert_matches(result, instance, run_neuron(built), "expsyn events")


def _row(kind: str, synapse) -> int:
    """The engine's row of a NEURON synapse (export_model's order of that kind)."""
    return [obj.hname() for obj in point_process_order(kind)].index(synapse.hname())


def test_poisson_input_matches_neuron(neuron_session):
    """add_poisson: NEURON gets the same trains (poisson_times) through NetCon.event."""
    h.usetable_hh = 0
    built = build_small("combined")
    neuron_session.append(built)
    targets = [("ExpSyn", built.objects["expsyn0"]), ("ExpSyn", built.objects["expsyn_b"]),
               ("Exp2Syn", built.objects["exp2syn1"])]  # fmt: skip
    seed, rate, weight = 7, 40.0, 0.004
    engine = Engine(export_model(V_INIT), 3)
    for kind in ("ExpSyn", "Exp2Syn"):
        rows = [_row(kind, obj) for k, obj in targets if k == kind]
        engine.add_poisson(kind, rows, rate, weight, seed=seed + len(kind))
    result = run_engine(engine, built)
    netcons = [h.NetCon(None, obj) for _, obj in targets]
    for netcon in netcons:
        netcon.weight[0] = weight
    for instance in range(3):
        trains = {kind: poisson_times(rate, 0.0, TSTOP, seed=seed + len(kind), instance=instance,
                                      n_synapses=sum(k == kind for k, _ in targets))
                  for kind in ("ExpSyn", "Exp2Syn")}  # fmt: skip
        schedule = []
        for kind in trains:
            mine = [netcon for (k, _), netcon in zip(targets, netcons, strict=True) if k == kind]
            schedule += list(zip(mine, trains[kind], strict=True))
        assert sum(train.size for _, train in schedule) > 10, "too few Poisson events"
        handler = h.FInitializeHandler(
            lambda schedule=schedule: [nc.event(t) for nc, train in schedule for t in train]
        )
        reference = run_neuron(built)
        del handler
        assert_matches(result, instance, reference, "poisson input")
    assert not np.array_equal(result.v[0], result.v[1]), "instances must get different input"


def test_bulk_and_poisson_events_do_not_depend_on_the_batch(neuron_session):
    """add_events equals per-instance set_events; instance_ids make a sub-batch equal."""
    built = build_small("combined")
    neuron_session.append(built)
    model = export_model(V_INIT)
    times = [np.array([12.0, 30.5]), np.array([3.25]), np.array([50.0, 51.0, 52.0])]
    by_set = Engine(model, 3)
    by_add = Engine(model, 3)
    for instance, t in enumerate(times):
        by_set.set_events("ExpSyn", 0, t, 0.01, instances=instance)
        by_add.set_events("ExpSyn", 0, t[:0], 0.01, instances=instance)
    by_add.add_events("ExpSyn", 0, np.repeat([0, 1, 2], [2, 1, 3]), np.concatenate(times), 0.01)
    first, second = run_engine(by_set, built), run_engine(by_add, built)
    np.testing.assert_array_equal(first.v, second.v)
    whole, part = Engine(model, 4), Engine(model, 2)
    whole.add_poisson("Exp2Syn", [0, 1], 30.0, 0.003, seed=3)
    part.add_poisson("Exp2Syn", [0, 1], 30.0, 0.003, seed=3, instance_ids=[2, 3])
    np.testing.assert_array_equal(run_engine(whole, built).v[2:], run_engine(part, built).v)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.add_events("ExpSyn", 5, 0, 1.0, 0.1), "ExpSyn 5 does not exist"),
        (lambda e: e.add_events("IClamp", 0, 0, 1.0, 0.1), "receive events"),
        (lambda e: e.add_events("ExpSyn", 0, 4, 1.0, 0.1), "instances must lie in"),
        (lambda e: e.add_events("ExpSyn", 0, 0, np.nan, 0.1), "must be finite"),
        (lambda e: e.add_poisson("ExpSyn", [0], -1.0, 0.1, seed=0), "rate_hz"),
        (lambda e: e.add_poisson("ExpSyn", [0], 1.0, 0.1, seed=-2), "seed"),
        (
            lambda e: e.add_poisson("ExpSyn", [0], 1.0, 0.1, seed=0, instance_ids=[0]),
            "instance_ids",
        ),
        (lambda e: e.add_poisson("ExpSyn", [0], 1.0, 0.1, seed=0, start=5, stop=1), "stop"),
    ],
)
def test_event_input_errors(neuron_session, call, message):
    neuron_session.append(build_small("expsyn"))
    engine = Engine(export_model(V_INIT), 4)
    with pytest.raises(ValueError, match=message):
        call(engine)


def test_poisson_times_statistics():
    """Counts, range and order of the trains; seeds and instances give other trains."""
    trains = poisson_times(20.0, 100.0, 1100.0, seed=1, instance=0, n_synapses=4000)
    counts = np.array([train.size for train in trains])
    assert abs(counts.mean() - 20.0) < 4 * math.sqrt(20.0 / 4000)  # Poisson(20)
    assert abs(counts.var() - 20.0) < 2.0
    every = np.concatenate(trains)
    assert every.min() >= 100.0 and every.max() < 1100.0
    assert all(np.all(np.diff(train) >= 0) for train in trains)
    # uniform in time: the two halves of the interval get the same share
    assert abs(np.mean(every < 600.0) - 0.5) < 0.01
    again = poisson_times(20.0, 100.0, 1100.0, seed=1, instance=0, n_synapses=4000)
    assert all(np.array_equal(x, y) for x, y in zip(trains, again, strict=True))
    other = poisson_times(20.0, 100.0, 1100.0, seed=1, instance=1, n_synapses=4000)
    assert not np.array_equal(np.concatenate(other), every)


@pytest.mark.parametrize("usetable", [0, 1])
def test_pyramid_matches_neuron(neuron_session, usetable):
    """NEURON's demo pyramidal cell (20 µm segments): hh soma, pas dendrites, IClamp,
    8 ExpSyn and an Exp2Syn; two instances with different IClamp amplitudes."""
    h.usetable_hh = usetable
    built = build_pyramid(neuron_session)
    clamp = built.objects["clamp"]
    amplitudes = [clamp.amp, 0.25]  # nA
    model = export_model(V_INIT)
    assert model.mechanisms["hh"].count >= 1 and model.mechanisms["Exp2Syn"].count == 1
    engine = Engine(model, len(amplitudes))
    engine.set("IClamp.amp", amplitudes, target=0)
    result = run_engine(engine, built)
    for instance, amplitude in enumerate(amplitudes):
        clamp.amp = amplitude
        reference = run_neuron(built)
        assert reference.spikes.size >= 2
        assert_matches(result, instance, reference, f"pyramid usetable={usetable}")


@pytest.mark.parametrize(
    ("start", "interval", "number"),
    [(5.0, 3.3, 4.5), (0.0, 0.7, 20), (12.5, 10.0, 1), (2.0, 0.1, 0.3), (-1.0, 5.0, 3)],
)
def test_netstim_spike_times_match_neuron(neuron_session, start, interval, number):
    """The exporter's NetStim spike times equal NEURON's, bit for bit."""
    stim = _netstim(start, interval, number)
    recorder = h.NetCon(stim, None)
    recorded = h.Vector()
    recorder.record(recorded)
    soma = _section("soma", 10.0, 10.0, 1)
    neuron_session += [stim, recorder, soma]
    h.finitialize(V_INIT)
    for _ in range(2000):
        h.fadvance()
    expected = recorded.as_numpy().copy()
    assert np.array_equal(netstim_spike_times(start, interval, number), expected)


def test_export_reads_neuron_internals(neuron_session, tmp_path):
    """Node areas (100 at zero-area nodes), cm, a and b, point-process nodes, and a
    save/load round trip of an exported model."""
    built = build_small("combined")
    neuron_session.append(built)
    model = export_model(V_INIT)
    nodes = node_map()
    assert np.array_equal(model.parent, nodes.parent)
    a, b = read_coupling(nodes)
    assert np.array_equal(model.a, a) and np.array_equal(model.b, b)
    ends = (nodes.x == 0.0) | (nodes.x == 1.0)
    assert np.all(model.area[ends] == 100.0) and np.all(model.cm[ends] == 0.0)
    soma = built.probes["soma"]
    assert model.area[soma.node_index()] == soma.area()
    assert model.cm[soma.node_index()] == 1.3
    clamp_nodes = model.mechanisms["IClamp"].node
    assert list(clamp_nodes) == [
        built.objects[f"clamp{k}"].get_segment().node_index() for k in range(3)
    ]
    assert model.node("soma(0.5)") == soma.node_index()
    assert model.mechanisms["hh"].count == 1 + 5 + 1  # soma, d1 (nseg 5), soma2
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, CellModel)
    first = Engine(model, 1).run(20.0, record_nodes=[soma.node_index()])
    second = Engine(loaded, 1).run(20.0, record_nodes=[soma.node_index()])
    assert np.array_equal(first.v, second.v)


def test_unsupported_mechanisms_are_all_listed(neuron_session):
    """Every unsupported mechanism (with its sections or location) and setting is named."""
    soma = _section("soma", 20.0, 20.0, 1)
    dend = [_section(f"dend{k}", 50.0, 1.0, 3) for k in range(2)]
    for section in dend:
        section.connect(soma(1))
    soma.insert("hh")
    soma.insert("extracellular")
    for section in dend:
        section.insert("fastpas")
    clamp = h.SEClamp(soma(0.5))
    alpha = h.AlphaSynapse(dend[1](0.5))
    cell = h.IntFire1()
    noisy = _netstim(1.0, 5.0, 3)
    noisy.noise = 0.5
    synapse = h.ExpSyn(dend[0](0.5))
    from_noise = _connect(noisy, synapse, 0.01, 1.0)
    from_voltage = h.NetCon(soma(0.5)._ref_v, synapse, sec=soma)
    neuron_session += [clamp, alpha, cell, noisy, synapse, from_noise, from_voltage]
    with pytest.raises(ValueError) as caught:
        export_model()
    message = str(caught.value)
    assert "extracellular in soma" in message
    assert "fastpas in dend0, dend1" in message
    assert "The engine runs" in message  # what is supported
    assert "IntFire1 (artificial cell)" in message
    assert "NetStim" in message and "noise" in message
    assert "membrane potential" in message
    for name in ("hh", "pas", "ExpSyn"):
        assert f" {name} in" not in message and f" {name} (" not in message


def test_unsupported_settings_are_listed(neuron_session):
    soma = _section("soma", 20.0, 20.0, 1)
    _pas(soma)
    neuron_session.append(soma)
    h.CVode().active(1)
    h.secondorder = 2
    try:
        with pytest.raises(ValueError, match=r"CVode[\s\S]*secondorder = 2"):
            export_model()
    finally:
        h.CVode().active(0)
        h.secondorder = 0
    assert export_model().n == 3


def test_report_max_differences():
    """Not a check: prints the measured max differences (``pytest -s``) for the record."""
    for label, difference in sorted(MAX_DIFFERENCES.items()):
        print(f"max |V_engine - V_NEURON| {label}: {difference:.3g} mV")
    assert all(math.isfinite(d) for d in MAX_DIFFERENCES.values())

"""The AmpaNmda synapse (``dhs/engine/mod/ampanmda.mod``): NEURON against the engine.

The mod file is compiled with ``nrnivmodl`` (once, cached in ``.nrn_build/``) and loaded
into this NEURON. Models with several AmpaNmda synapses driven by NetStims run 200 ms at
dt = 0.025 ms in NEURON and, once exported, in :class:`dhs.engine.Engine`: voltages must
agree to 1e-6 mV and spike times to 1 µs (they agree bit for bit). The Mg²⁺ block is
checked in NEURON alone, against Jahr & Stevens' formula.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from neuron import h

from dhs.engine import Engine, load_model
from neuron_bridge import compile_mod
from neuron_bridge.compile_mod import load_mod_mechanisms, mechanism_type
from neuron_bridge.export import export_model, netstim_spike_times, point_process_order
from neuron_models import reset_neuron

h.load_file("stdrun.hoc")

DT = 0.025  # ms
TSTOP = 200.0  # ms
N_STEPS = 8000
V_INIT = -65.0  # mV
THRESHOLD = -20.0  # mV
V_TOLERANCE = 1e-6  # mV
SPIKE_TOLERANCE = 1e-3  # ms
BUILT_IN_TYPES = {"pas": 4, "IClamp": 7, "ExpSyn": 9, "Exp2Syn": 10, "na_ion": 15,
                  "k_ion": 16, "hh": 17}  # fmt: skip


def _reset_neuron() -> None:
    reset_neuron()  # the shared clean-up of tests/neuron_models.py
    h.usetable_hh = 1  # these tests switch hh's rate tables off and back on


@pytest.fixture
def session(ampanmda):
    """A clean NEURON with AmpaNmda loaded; yields a list that keeps objects alive."""
    _reset_neuron()
    keep: list = []
    yield keep
    keep.clear()
    _reset_neuron()


# --------------------------------------------------------------------------- helpers
def _section(name, length, diam, nseg, cm=1.0):
    section = h.Section(name=name)
    section.L, section.diam, section.nseg, section.Ra, section.cm = length, diam, nseg, 120.0, cm
    return section


def _netstim(start, interval, number):
    stim = h.NetStim()
    stim.start, stim.interval, stim.number, stim.noise = start, interval, number, 0
    return stim


def _connect(source, target, weight, delay):
    netcon = h.NetCon(source, target)
    netcon.weight[0], netcon.delay = weight, delay
    return netcon


def _run_neuron(probes, soma, v_init=V_INIT):
    vectors = [h.Vector().record(segment._ref_v) for segment in probes]
    detector = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    detector.threshold = THRESHOLD
    spikes = h.Vector()
    detector.record(spikes)
    h.dt = DT
    h.finitialize(v_init)
    for _ in range(N_STEPS):
        h.fadvance()
    traces = np.array([v.as_numpy().copy() for v in vectors])
    return traces, spikes.as_numpy().copy()


def _run_engine(engine, probes, soma):
    return engine.run(
        TSTOP,
        dt=DT,
        record_nodes=[int(segment.node_index()) for segment in probes],
        spike_node=int(soma(0.5).node_index()),
        spike_threshold=THRESHOLD,
    )


def _assert_matches(result, instance, reference, label):
    traces, spikes = reference
    difference = float(np.abs(result.v[instance] - traces).max())
    assert difference < V_TOLERANCE, f"{label}: max |V_engine - V_NEURON| = {difference} mV"
    mine = result.spikes[instance]
    assert mine.size == spikes.size, f"{label}: {mine.size} spikes, NEURON has {spikes.size}"
    if spikes.size:
        assert np.abs(mine - spikes).max() < SPIKE_TOLERANCE
    return difference


def build_small(keep):
    """hh soma, pas dendrites (one reversed), six AmpaNmda synapses (one on the root
    node, one on a free end, one with tau1 = tau2 and other parameters changed, one on
    the hh node, two on one node), and an ExpSyn and Exp2Syn sharing nodes with them:
    where they share a node, the order of the currents (by NEURON's type numbers, and
    within a type by creation) must be NEURON's for the sums to agree bit for bit."""
    soma = _section("soma", 20.0, 20.0, 1)
    soma.insert("hh")
    d1 = _section("d1", 300.0, 1.5, 7)
    d2 = _section("d2", 150.0, 1.0, 3)
    rev = _section("rev", 80.0, 0.8, 3)
    d1.connect(soma(1))
    d2.connect(soma(0))
    rev.connect(d1(1), 1)
    for section in (d1, d2, rev):
        section.insert("pas")
        for segment in section:
            segment.pas.g, segment.pas.e = 1e-4, -67.0
    sites = [d1(0.5), d1(0.9), rev(0), soma(0), soma(0.5), d1(0.5)]
    synapses = [h.AmpaNmda(site) for site in sites]
    odd = synapses[2]
    odd.tau1_nmda, odd.tau2_nmda, odd.nmda_ratio, odd.mg, odd.e = 30.0, 30.0, 2.5, 1.8, -5.0
    synapses[3].tau1_ampa, synapses[3].tau2_ampa = 0.5, 3.0
    stims = [_netstim(5.0, 9.7, 15), _netstim(0.0, 23.0, 6), _netstim(40.0, 2.1, 20)]
    netcons = [
        _connect(stims[0], synapses[0], 0.004, 1.0),
        _connect(stims[1], synapses[1], 0.003, 0.5 * DT),  # an event on a delivery tie
        _connect(stims[2], synapses[2], 0.002, 2.0),
        _connect(stims[0], synapses[3], 0.001, 3.3),
        _connect(stims[2], synapses[0], 0.0015, 0.7),  # two sources, one synapse
        _connect(stims[1], synapses[4], 0.0005, 1.7),
        _connect(stims[2], synapses[5], 0.0007, 0.3),
    ]
    expsyn = h.ExpSyn(d1(0.5))
    exp2syn = h.Exp2Syn(d1(0.9))
    exp2syn.tau1, exp2syn.tau2 = 0.4, 4.0
    netcons += [_connect(stims[1], expsyn, 0.002, 1.0), _connect(stims[0], exp2syn, 0.002, 1.0)]
    expsyn2 = h.ExpSyn(d1(0.5))  # two ExpSyn at one node too (export's order applies to all)
    expsyn2.tau = 4.0
    netcons.append(_connect(stims[2], expsyn2, 0.0012, 0.4))
    keep += [soma, d1, d2, rev, *synapses, *stims, *netcons, expsyn, exp2syn, expsyn2]
    objects = {"synapses": synapses, "stims": stims, "netcons": netcons}
    return [soma(0.5), d1(0.5), d1(0.9), rev(0), d2(0.5)], soma, objects


# --------------------------------------------------------------------------- tests
def test_mechanism_type_numbers(ampanmda):
    """Loading AmpaNmda leaves the built-in type numbers alone and puts it after hh, the
    order the engine adds the currents in; loading twice is harmless."""
    for name, number in BUILT_IN_TYPES.items():
        assert mechanism_type(name) == number, name
    assert mechanism_type("AmpaNmda") > mechanism_type("hh")
    assert load_mod_mechanisms() == ampanmda
    compile_mod._loaded.clear()  # as in a fresh process: NEURON already has AmpaNmda
    assert load_mod_mechanisms() == ampanmda
    assert mechanism_type("AmpaNmda") > mechanism_type("hh")
    assert any(ampanmda.glob("*/libnrnmech.so")) or any(ampanmda.glob("*/.libs/libnrnmech.so"))


def test_small_cell_matches_neuron(session, tmp_path):
    """1 and 3 identical instances, usetable_hh = 0, spikes from NMDA-driven input; the
    model also survives a save/load round trip."""
    h.usetable_hh = 0
    probes, soma, _ = build_small(session)
    reference = _run_neuron(probes, soma)
    assert reference[1].size >= 2, "the small cell must spike"
    model = export_model(V_INIT)
    assert model.mechanisms["AmpaNmda"].count == 6
    assert model.events["AmpaNmda"].time.size > 20
    for n_instances in (1, 3):
        result = _run_engine(Engine(model, n_instances), probes, soma)
        for instance in range(n_instances):
            assert _assert_matches(result, instance, reference, "small") == 0.0
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert np.array_equal(loaded.mechanisms["AmpaNmda"].params["mg"],
                          model.mechanisms["AmpaNmda"].params["mg"])  # fmt: skip
    assert np.array_equal(_run_engine(Engine(loaded, 1), probes, soma).v[0], result.v[0])


@pytest.mark.parametrize(
    ("parameter", "index", "values", "attribute"),
    [("AmpaNmda.mg", None, [0.0, 0.5, 2.0], "mg"),
     ("AmpaNmda.nmda_ratio", 5, [0.0, 0.7, 3.0], "nmda_ratio"),
     ("AmpaNmda.tau2_nmda", 1, [20.0, 80.0, 150.0], "tau2_nmda")],
)  # fmt: skip
def test_per_instance_parameters_match_neuron(session, parameter, index, values, attribute):
    """One parameter per instance, of every synapse or of synapse ``index`` (in creation
    order; its row in the engine comes from ``point_process_order``)."""
    probes, soma, objects = build_small(session)
    synapses = objects["synapses"]
    engine = Engine(export_model(V_INIT), len(values))
    rows = [o.hname() for o in point_process_order("AmpaNmda")]
    row = None if index is None else rows.index(synapses[index].hname())
    engine.set(parameter, np.array(values), target=row)
    result = _run_engine(engine, probes, soma)
    for instance, value in enumerate(values):
        for k, synapse in enumerate(synapses):
            if index is None or k == index:
                setattr(synapse, attribute, value)
        _assert_matches(result, instance, _run_neuron(probes, soma), parameter)


def test_per_instance_events_match_neuron(session):
    """Different NetStim settings for synapse 0 per instance. Synapse 0 also gets the
    events of a second NetCon, which ``set_events`` (a replacement) must repeat."""
    probes, soma, objects = build_small(session)
    stim, netcon, second = objects["stims"][0], objects["netcons"][0], objects["netcons"][4]
    synapses = objects["synapses"]
    rows = [o.hname() for o in point_process_order("AmpaNmda")]
    # Synapses 0 and 5 share a node: NEURON sums the newest first, and so must the engine.
    assert rows.index(synapses[5].hname()) < rows.index(synapses[0].hname())
    # stim also drives synapse 3 and the Exp2Syn: keep their events as NEURON will make them
    engine = Engine(export_model(V_INIT), 2)
    settings = [(5.0, 9.7, 15, 0.004), (12.0, 3.1, 30, 0.006)]
    extra = netstim_spike_times(40.0, 2.1, 20) + second.delay
    for instance, (start, interval, number, weight) in enumerate(settings):
        times = np.concatenate([netstim_spike_times(start, interval, number) + netcon.delay,
                                extra])  # fmt: skip
        weights = np.concatenate([np.full(times.size - extra.size, weight),
                                  np.full(extra.size, second.weight[0])])  # fmt: skip
        engine.set_events("AmpaNmda", rows.index(synapses[0].hname()), times, weights,
                          instances=instance)  # fmt: skip
        for kind, synapse, link in (("AmpaNmda", rows.index(synapses[3].hname()), 3),
                                    ("Exp2Syn", 0, 8)):  # fmt: skip
            con = objects["netcons"][link]
            moved = netstim_spike_times(start, interval, number) + con.delay
            engine.set_events(kind, synapse, moved, con.weight[0], instances=instance)
    result = _run_engine(engine, probes, soma)
    for instance, (start, interval, number, weight) in enumerate(settings):
        stim.start, stim.interval, stim.number = start, interval, number
        netcon.weight[0] = weight
        _assert_matches(result, instance, _run_neuron(probes, soma), "events")


@pytest.mark.parametrize("usetable", [0, 1])
def test_pyramid_matches_neuron(session, usetable):
    """The issue's acceptance case: NEURON's pyramidal cell (20 µm segments), hh in the
    soma and three dendrites, pas elsewhere, an IClamp and every supported synapse (the
    demo's 8 ExpSyn, an Exp2Syn, six AmpaNmda, NetStim-driven, plus seeded Poisson
    background on two AmpaNmda via NetCon.event / Engine.add_poisson); 200 ms, two
    instances with different IClamp amplitudes, hh rate tables off and on."""
    from benchmarks.models import pyramid_model
    from dhs.engine.inputs import poisson_times

    h.usetable_hh = usetable
    model = pyramid_model(segment_length=20.0)
    session.append(model)
    dendrites = model.cell.dendrites
    active = dendrites[:3]  # hh on the first dendrites too, on top of their pas
    for section in active:
        section.insert("hh")
        for segment in section:
            segment.hh.gnabar = 0.04
    far = model.far_dendrite()
    sites = [far(0.5), far(0.9)] + [dendrites[(k * 131) % len(dendrites)](0.6) for k in range(4)]
    stims = [_netstim(15.0 + 3.0 * k, 6.0 + k, 12) for k in range(3)]
    synapses = []
    for k, site in enumerate(sites):
        synapse = h.AmpaNmda(site)
        synapses.append(synapse)
        session += [synapse, _connect(stims[k % 3], synapse, 0.002 + 0.001 * k, 1.0 + 0.2 * k)]
    exp2 = h.Exp2Syn(active[1](0.5))
    exp2.tau1, exp2.tau2, exp2.e = 0.5, 4.0, 0.0
    session += [*stims, exp2, _connect(stims[1], exp2, 0.004, 2.0)]
    probes = [model.soma(0.5), active[0](0.5), far(0.5), far(1)]
    clamp = next(obj for obj in model.keep if obj.hname().startswith("IClamp"))
    amplitudes = [clamp.amp, 0.1]
    exported = export_model(V_INIT)
    counts = {name: table.count for name, table in exported.mechanisms.items()}
    assert counts["AmpaNmda"] == len(sites) and counts["Exp2Syn"] == 1
    assert counts["ExpSyn"] == 8 and counts["IClamp"] == 1
    assert counts["hh"] == sum(section.nseg for section in [model.soma, *active])
    background = [synapses[0], synapses[3]]
    rows = [point_process_order("AmpaNmda").index(s) for s in background]
    engine = Engine(exported, len(amplitudes))
    engine.set("IClamp.amp", amplitudes, target=0)
    engine.add_poisson("AmpaNmda", rows, 25.0, 0.001, seed=11)
    result = _run_engine(engine, probes, model.soma)
    netcons = [h.NetCon(None, synapse) for synapse in background]
    for netcon in netcons:
        netcon.weight[0] = 0.001
    session += netcons
    for instance, amplitude in enumerate(amplitudes):
        clamp.amp = amplitude
        trains = poisson_times(25.0, 0.0, TSTOP, seed=11, instance=instance, n_synapses=2)
        assert all(train.size > 0 for train in trains)
        handler = h.FInitializeHandler(
            lambda trains=trains: [
                nc.event(t) for nc, train in zip(netcons, trains, strict=True) for t in train
            ]
        )
        reference = _run_neuron(probes, model.soma)
        del handler
        assert reference[1].size >= 2
        label = f"pyramid usetable={usetable}"
        assert _assert_matches(result, instance, reference, label) == 0.0


def _mgblock(v, mg):
    return 1.0 / (1.0 + math.exp(-0.062 * v) * mg / 3.57)


@pytest.mark.parametrize("mg", [1.0, 0.0, 2.0])
def test_mg_block_in_neuron(session, mg):
    """NEURON's NMDA current under a voltage clamp at -65 and -10 mV: the conductance is
    the same (it does not depend on v), the current ratio is Jahr & Stevens'
    B(-65) (-65) / (B(-10) (-10)); AMPA is not blocked. With mg = 1 mM, B(-65) ≈ 0.06."""
    measured = {}
    for hold in (-65.0, -10.0):
        soma = _section("soma", 10.0, 10.0, 1)
        clamp = h.SEClamp(soma(0.5))
        clamp.dur1, clamp.amp1, clamp.rs = 1e9, hold, 1e-4
        synapse = h.AmpaNmda(soma(0.5))
        synapse.mg = mg
        stim = _netstim(2.0, 10.0, 1)
        netcon = _connect(stim, synapse, 0.001, 0.0)
        records = {name: h.Vector().record(getattr(synapse, f"_ref_{name}"))
                   for name in ("i_nmda", "g_nmda", "i_ampa", "g_ampa")}  # fmt: skip
        v = h.Vector().record(soma(0.5)._ref_v)
        h.finitialize(hold)
        while h.t < 20.0 - DT / 2:
            h.fadvance()
        measured[hold] = {name: vec.as_numpy().copy() for name, vec in records.items()}
        measured[hold]["v"] = v.as_numpy().copy()
        assert synapse.mgblock(hold) == pytest.approx(_mgblock(hold, mg), rel=1e-14)
        del netcon, stim, synapse, clamp, records, v
        h.delete_section(sec=soma)
    low, high = measured[-65.0], measured[-10.0]
    step = round(12.0 / DT)  # 10 ms after the event: NMDA well open, AMPA decayed
    assert np.array_equal(low["g_nmda"], high["g_nmda"]) and low["g_nmda"][step] > 0
    for record in (low, high):
        v = record["v"][step - 1]  # the potential nrn_cur saw for the recorded values
        block = record["i_nmda"][step] / (record["g_nmda"][step] * (v - 0.0))
        assert block == pytest.approx(_mgblock(v, mg), rel=1e-12)
        ampa = record["i_ampa"][step] / (record["g_ampa"][step] * (v - 0.0))
        assert ampa == pytest.approx(1.0, rel=1e-12)
    ratio = low["i_nmda"][step] / high["i_nmda"][step]
    expected = _mgblock(-65.0, mg) * -65.0 / (_mgblock(-10.0, mg) * -10.0)
    assert ratio == pytest.approx(expected, rel=1e-3)  # the clamp holds v to ~1e-4 mV
    if mg == 1.0:
        assert _mgblock(-65.0, mg) == pytest.approx(0.0597, abs=5e-4)
    if mg == 0.0:
        assert ratio == pytest.approx(6.5, rel=1e-3)

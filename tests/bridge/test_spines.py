"""Dendritic spines and input patterns (``neuron_bridge.spines``, ``neuron_bridge.patterns``).

Everything runs on real NEURON sections; nothing is mocked. The cell is NEURON's demo
pyramid (``load_morphology()``, 78 dendrites, 5,349.55 µm of dendrite), made passive
(Ra 150 Ω·cm, cm 1 µF/cm², pas 5e-5 S/cm² at -65 mV) unless a test says otherwise.

What is shown:

* the density rule: on the pyramid, the spine count is within 2 % (in fact within half
  a spine) of 1.3 /µm × the dendritic length beyond 60 µm, and the spines spread
  uniformly over that length; the qualifying length agrees with an independent
  integration over 0.1 µm segments with NEURON's ``h.distance``;
* spine geometry and membrane, and the F-factor (what it scales, where), with the input
  resistance of the F-factor model close to that of the full-spine model;
* the input patterns (clustered, distributed, the per-trial synapse pool);
* the reduced case: a pyramid with a few spines and AmpaNmda synapses on their heads
  plus Poisson background, three trials, runs in the engine and natively in NEURON with
  max |ΔV| <= 1e-6 mV at the soma and at spine heads and the same spikes (within 1 µs),
  in a trial below and a trial above threshold.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from neuron import h

from dhs.engine import Engine
from dhs.engine.inputs import poisson_times
from neuron_bridge import (
    SpineParameters,
    add_spines,
    add_spines_at,
    apply_f_factor,
    area_matched_f_factor,
    clustered,
    discretize,
    distributed,
    export_model,
    node_count,
    qualifying_length,
    section_tree,
    spine_sites,
    spine_synapses,
    synapse_rows,
    trial_inputs,
)
from neuron_models import SPIKE_THRESHOLD, Model, simulate
from pyramid_cells import E_PAS, G_PAS

MIN_DISTANCE = 60.0  # µm
DENSITY = 1.3  # spines per µm
PYRAMID_DENDRITE_UM = 5349.5514  # sum of L over the pyramid's dendrites (test_morphology)
PYRAMID_QUALIFYING_UM = 4466.833  # measured here: dendrite beyond 60 µm from soma(0.5)
V_TOLERANCE = 1e-6  # mV
SPIKE_TOLERANCE = 1e-3  # ms


def _soma_distance(cell, segment) -> float:
    return h.distance(cell.soma[0](0.5), segment)


# ----------------------------------------------------------------------- geometry
def test_section_tree_distances_match_neuron(passive_pyramid):
    """The tree's path distances equal h.distance at every node (segment centres and
    section ends), from the soma and between random pairs of nodes."""
    cell = passive_pyramid(segment_length=7.0)
    tree = section_tree(cell)
    assert tree.n == len(cell.sections) == 79
    assert tree.dendrite.sum() == len(cell.dendrites) == 78
    nodes = []  # (section index, x)
    for i, section in enumerate(cell.sections):
        xs = [0.0, *((k + 0.5) / section.nseg for k in range(section.nseg)), 1.0]
        nodes += [(i, x) for x in xs]
    index, x = (np.array(column) for column in zip(*nodes, strict=True))
    mine = tree.soma_distance(index, x)
    neuron = np.array([_soma_distance(cell, cell.sections[i](xi)) for i, xi in nodes])
    assert np.abs(mine - neuron).max() < 1e-9
    rng = np.random.default_rng(3)
    for a, b in rng.integers(len(nodes), size=(40, 2)).tolist():
        (sa, xa), (sb, xb) = nodes[a], nodes[b]
        expected = h.distance(cell.sections[sa](xa), cell.sections[sb](xb))
        assert tree.path_distance(sa, xa, [sb], [xb])[0] == pytest.approx(expected, abs=1e-9)


def test_qualifying_length_matches_fine_integration(passive_pyramid):
    """qualifying_length (exact, from the tree) against 0.1 µm segments classified by
    NEURON's h.distance of their centres: they differ by at most half a segment per
    section that crosses the threshold."""
    cell = passive_pyramid(segment_length=0.1)
    integrated, crossing = 0.0, 0
    soma = cell.soma[0](0.5)
    for section in cell.dendrites:
        ends = (h.distance(soma, section(0)), h.distance(soma, section(1)))
        crossing += min(ends) <= MIN_DISTANCE < max(ends)
        piece = section.L / section.nseg
        integrated += piece * sum(h.distance(soma, seg) > MIN_DISTANCE for seg in section)
    exact = qualifying_length(cell, MIN_DISTANCE)
    assert crossing > 0
    assert abs(exact - integrated) <= 0.05 * crossing + 1e-9, (exact, integrated, crossing)
    assert exact == pytest.approx(PYRAMID_QUALIFYING_UM, abs=1e-3)
    assert qualifying_length(cell, 0.0) == pytest.approx(PYRAMID_DENDRITE_UM, abs=1e-3)
    assert qualifying_length(cell, 1e6) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spine_count_follows_density_rule(passive_pyramid, seed):
    """count = density × qualifying length within 2 % (by construction within half a
    spine); every site is on a dendrite beyond 60 µm; the sites spread over the
    qualifying length uniformly (counts in distance bands within 5 binomial standard
    deviations of their share of the length); the seed fixes them."""
    cell = passive_pyramid()
    sites = spine_sites(cell, seed=seed)
    expected = DENSITY * qualifying_length(cell, MIN_DISTANCE)
    assert abs(len(sites) - expected) <= 0.02 * expected
    assert abs(len(sites) - expected) <= 0.5
    assert (sites.soma_distance > MIN_DISTANCE - 1e-9).all()
    assert sites.tree.dendrite[sites.section].all()
    edges = [MIN_DISTANCE, 150.0, 250.0, 350.0, 450.0, 600.0, math.inf]
    total = qualifying_length(cell, MIN_DISTANCE)
    for low, high in itertools.pairwise(edges):
        beyond_high = qualifying_length(cell, high) if math.isfinite(high) else 0.0
        share = (qualifying_length(cell, low) - beyond_high) / total
        count = np.count_nonzero((sites.soma_distance > low) & (sites.soma_distance <= high))
        sd = math.sqrt(len(sites) * share * (1 - share))
        assert abs(count - len(sites) * share) <= 5 * sd + 1, (low, high, count, share)
    again = spine_sites(cell, seed=seed)
    assert np.array_equal(again.section, sites.section) and np.array_equal(again.x, sites.x)
    other = spine_sites(cell, seed=seed + 10)
    assert len(other) == len(sites) and not np.array_equal(other.x, sites.x)


def test_full_spines_geometry_membrane_and_nodes(passive_pyramid):
    """Every site gets a neck (1.35 × 0.25 µm) on the right dendrite at the right x and
    a head of 2.8 µm² (NEURON's h.area) on the neck's far end; both copy cm, pas and Ra
    of the parent; NEURON's matrix grows by 4 rows per spine (2 sections × (centre + end))."""
    cell = passive_pyramid()
    rows_before, sections_before = node_count(), len(list(h.allsec()))
    spines = add_spines(cell, seed=0)
    n = len(spines)
    assert n == len(spines.sites) == 5807
    assert np.array_equal(spines.explicit, np.arange(n))
    assert len(list(h.allsec())) == sections_before + 2 * n
    assert node_count() == rows_before + 4 * n
    params = SpineParameters()
    assert params.head_diameter == pytest.approx(math.sqrt(2.8 / math.pi), rel=1e-15)
    for k, (neck, head) in enumerate(zip(spines.necks, spines.heads, strict=True)):
        site = int(spines.explicit[k])
        dendrite = cell.sections[int(spines.sites.section[site])]
        attached = neck.parentseg()
        assert attached.sec == dendrite and attached.x == pytest.approx(spines.sites.x[site])
        assert neck.orientation() == 0 and head.parentseg().sec == neck
        assert head.parentseg().x == 1.0
        assert (neck.L, neck.diam, neck.nseg, head.nseg) == (1.35, 0.25, 1, 1)
        assert head.L == head.diam
        assert h.area(0.5, sec=head) == pytest.approx(2.8, rel=1e-12)
        assert h.area(0.5, sec=neck) == pytest.approx(math.pi * 0.25 * 1.35, rel=1e-12)
        for section in (neck, head):
            assert section.Ra == dendrite.Ra and section.cm == 1.0
            assert (section(0.5).pas.g, section(0.5).pas.e) == (G_PAS, E_PAS)
    spines.delete()
    assert len(list(h.allsec())) == sections_before and node_count() == rows_before


def test_spines_at_copy_passive_membrane_only(passive_pyramid):
    """add_spines_at on a dendrite with hh and its own cm, pas and Ra: the spines get
    the parent segment's cm and pas (g, e), not hh; neck_ra overrides Ra."""
    cell = passive_pyramid(segment_length=20.0)
    dendrite = cell.dendrites[1]
    dendrite.insert("hh")
    dendrite.Ra = 90.0
    for k, segment in enumerate(dendrite):
        segment.cm, segment.pas.g, segment.pas.e = 1.0 + k, 1e-4 * (k + 1), -70.0 - k
    locations = [(dendrite, 0.03), (dendrite, 0.97), (dendrite.name(), 0.5)]
    spines = add_spines_at(cell, locations)
    assert len(spines) == 3 and spines.mode == "at"
    for (_, x), neck, head in zip(locations, spines.necks, spines.heads, strict=True):
        parent = dendrite(x)
        for section in (neck, head):
            assert section.cm == parent.cm and section.Ra == 90.0
            assert (section(0.5).pas.g, section(0.5).pas.e) == (parent.pas.g, parent.pas.e)
            assert not h.ismembrane("hh", sec=section)
    other = add_spines_at(cell, [(dendrite, 0.5)], SpineParameters(neck_ra=300.0), name="x")
    assert other.necks[0].Ra == other.heads[0].Ra == 300.0
    assert other.necks[0].name() == "pyr.x_neck[0]"


# ----------------------------------------------------------------------- F-factor
def test_f_factor_scales_cm_and_conductances_beyond_min_distance(passive_pyramid):
    """cm, pas.g and hh's gnabar, gkbar, gl are multiplied by F exactly in the dendritic
    segments whose centre is beyond 60 µm; reversal potentials, the soma and nearer
    segments are untouched; undo restores every value."""
    cell = passive_pyramid(segment_length=10.0)
    crossing = next(
        sec for sec in cell.dendrites
        if _soma_distance(cell, sec(0)) < MIN_DISTANCE < _soma_distance(cell, sec(1))
    )  # fmt: skip
    crossing.insert("hh")
    names = [("cm", None), ("pas", "g"), ("pas", "e"), ("hh", "gnabar"), ("hh", "gkbar"),
             ("hh", "gl"), ("hh", "el")]  # fmt: skip

    def values(segment):
        got = {}
        for mechanism, parameter in names:
            if parameter is None:
                got["cm"] = segment.cm
            elif h.ismembrane(mechanism, sec=segment.sec):
                got[f"{mechanism}.{parameter}"] = getattr(getattr(segment, mechanism), parameter)
        return got

    before = {(sec, k): values(seg) for sec in cell.sections for k, seg in enumerate(sec)}
    record = apply_f_factor(cell, 1.9, MIN_DISTANCE)
    assert record.parameters == {"pas": ("g",), "hh": ("gnabar", "gkbar", "gl")}
    scaled = 0
    for section in cell.sections:
        for k, segment in enumerate(section):
            beyond = section in cell.dendrites and _soma_distance(cell, segment) > MIN_DISTANCE
            scaled += beyond
            for key, old in before[(section, k)].items():
                scaled_kind = key.split(".")[-1] in ("cm", "g", "gnabar", "gkbar", "gl")
                factor = 1.9 if beyond and scaled_kind else 1.0
                assert values(segment)[key] == old * factor, (section.name(), k, key)
    assert scaled == len(record.scaled) > 0
    record.undo()
    after = {(sec, k): values(seg) for sec in cell.sections for k, seg in enumerate(sec)}
    assert after == before
    only = apply_f_factor(cell, 2.0, conductances={"hh": ["gnabar"]})
    assert only.parameters == {"pas": ("g",), "hh": ("gnabar",)}
    segment = crossing(0.99)
    assert segment.hh.gkbar == before[(crossing, crossing.nseg - 1)]["hh.gkbar"]
    assert segment.hh.gnabar == 2.0 * before[(crossing, crossing.nseg - 1)]["hh.gnabar"]
    with pytest.raises(ValueError, match="conductances"):
        apply_f_factor(cell, 2.0, conductances={"hh": ["gbogus"]})


def _input_resistance(cell) -> float:
    """Somatic input resistance in MΩ at 0 Hz (h.Impedance; the cell is passive)."""
    impedance = h.Impedance()
    impedance.loc(0.5, sec=cell.soma[0])
    impedance.compute(0.0)
    return impedance.input(0.5, sec=cell.soma[0])


def test_f_factor_input_resistance_close_to_full_spines(passive_pyramid):
    """Passive pyramid, 5 µm segments. Explicit spines lower the somatic input
    resistance by about a third; the F-factor model with the area-matched F (2.00 for
    this cell) adds the same membrane (conductance totals within 0.5 %) and gives an
    input resistance within 3 % of the full-spine model (measured: 2.0 % higher, because
    F adds membrane in proportion to dendritic area while spines come per length, so
    thick proximal dendrites get too much and thin distal ones too little); the paper's
    F = 1.9 is within 7 % (measured 5.2 %)."""
    cell = passive_pyramid(segment_length=5.0)
    bare = _input_resistance(cell)

    def conductance() -> float:  # total membrane conductance, µm² S/cm²
        return sum(seg.area() * seg.pas.g for sec in h.allsec() for seg in sec)

    spines = add_spines(cell, seed=3)
    full, g_full = _input_resistance(cell), conductance()
    spines.delete()
    matched = area_matched_f_factor(cell)
    assert matched == pytest.approx(2.0011, abs=1e-3)
    record = apply_f_factor(cell, matched)
    folded, g_folded = _input_resistance(cell), conductance()
    record.undo()
    record = apply_f_factor(cell, 1.9)
    paper = _input_resistance(cell)
    record.undo()
    assert full / bare < 0.7
    assert g_folded == pytest.approx(g_full, rel=5e-3)
    assert abs(folded - full) / full < 0.03, (folded, full)
    assert abs(paper - full) / full < 0.07, (paper, full)
    assert _input_resistance(cell) == pytest.approx(bare, rel=1e-12)


def test_few_spine_mode(passive_pyramid):
    """mode="few": the same sites as mode="full" for the seed, the F-factor on the
    dendrite, explicit spines only at the given sites, with the parent's membrane from
    before the F-factor; delete() removes the spines and undoes the F-factor."""
    cell = passive_pyramid(segment_length=10.0)
    sites = spine_sites(cell, seed=5)
    at = [3, 1000, len(sites) - 1]
    spines = add_spines(cell, seed=5, mode="few", at=at)
    assert spines.mode == "few" and len(spines) == 3 and spines.f_factor.factor == 1.9
    assert np.array_equal(spines.sites.x, sites.x)
    assert np.array_equal(spines.explicit, at)
    for neck, site in zip(spines.necks, at, strict=True):
        parent = neck.parentseg()
        # the F-factor goes by segment centres, the sites by exact position
        factor = 1.9 if _soma_distance(cell, parent) > MIN_DISTANCE else 1.0
        assert parent.cm == factor and parent.pas.g == factor * G_PAS
        assert neck.cm == 1.0 and neck(0.5).pas.g == G_PAS
        assert parent.x == pytest.approx(sites.x[site])
    assert spines.head_of(1000) == spines.heads[1]
    spines.delete()
    assert len(list(h.allsec())) == len(cell.sections)
    assert all(seg.cm == 1.0 and seg.pas.g == G_PAS for sec in cell.sections for seg in sec)


# ----------------------------------------------------------------------- patterns
def test_distributed_sites(passive_pyramid):
    """n distinct sites, sorted, on spiny dendrite; the seed fixes them."""
    sites = spine_sites(passive_pyramid(), seed=1)
    chosen = distributed(sites, 240, rng=4)
    assert chosen.size == 240 and np.unique(chosen).size == 240
    assert np.array_equal(chosen, np.sort(chosen))
    assert (sites.soma_distance[chosen] > MIN_DISTANCE).all()
    assert sites.tree.dendrite[sites.section[chosen]].all()
    assert np.array_equal(distributed(sites, 240, rng=4), chosen)
    assert not np.array_equal(distributed(sites, 240, rng=5), chosen)
    assert distributed(sites, 0, rng=4).size == 0
    with pytest.raises(ValueError, match="n = "):
        distributed(sites, len(sites) + 1)


def test_clustered_sites(passive_pyramid):
    """Sites within length/2 of the given centre (path distance, checked with
    h.distance on the sites' segments at a fine nseg too); with random centres, any two
    sites of a cluster are within length of each other; counts and seeds."""
    cell = passive_pyramid()
    sites = spine_sites(cell, seed=2)
    far = max(cell.dendrites, key=lambda sec: _soma_distance(cell, sec(1)))
    center = (far, 0.5)
    chosen = clustered(sites, 20, 20.0, center=center, rng=1)
    assert chosen.size == 20 and np.unique(chosen).size == 20
    assert (sites.distance_from(far, 0.5)[chosen] <= 10.0).all()
    # the same with NEURON, which measures to the nearest node: with 0.02 µm segments
    # a node lies within 0.01 µm of any point (far(0.5) is a node: nseg is odd)
    for site in chosen.tolist():
        section = cell.sections[int(sites.section[site])]
        discretize([section, far], segment_length=0.02)
        node_error = 0.5 * section.L / section.nseg
        assert h.distance(far(0.5), section(float(sites.x[site]))) <= 10.0 + node_error
    assert np.array_equal(clustered(sites, 20, 20.0, center=center, rng=1), chosen)
    by_index = clustered(sites, 5, 20.0, center=int(chosen[0]), rng=1)
    start = (int(sites.section[chosen[0]]), float(sites.x[chosen[0]]))
    assert (sites.distance_from(*start)[by_index] <= 10.0).all()
    for seed in range(5):
        cluster = clustered(sites, 20, 20.0, rng=seed)
        assert cluster.size == 20
        for site in cluster.tolist():
            apart = sites.distance_from(int(sites.section[site]), float(sites.x[site]))[cluster]
            assert apart.max() <= 20.0 + 1e-9
    with pytest.raises(ValueError, match="length/2"):
        clustered(sites, 200, 20.0, center=center)
    with pytest.raises(ValueError, match="max_tries"):
        clustered(sites, 200, 20.0, rng=0, max_tries=3)


def test_trial_inputs_pool_and_events(passive_pyramid):
    """The pool is the union of the sites used; each trial's activations map back to
    its sites; background trains are poisson_times(seed, instance=trial)."""
    sites = spine_sites(passive_pyramid(), seed=0)
    rng = np.random.default_rng(9)
    active = [distributed(sites, 30, rng), clustered(sites, 20, 20.0, rng=rng), []]
    background = distributed(sites, 50, rng)
    inputs = trial_inputs(sites, active, background, activation_time=30.0,
                          activation_weight=5e-4, background_rate_hz=1.0,
                          background_weight=2e-4, seed=17, background_stop=500.0)  # fmt: skip
    union = np.unique(np.concatenate([*active[:2], background]))
    assert np.array_equal(inputs.site_index, union) and inputs.n_synapses == union.size
    assert np.array_equal(inputs.sites.x, sites.x[union])
    for q, chosen in enumerate(active):
        assert np.array_equal(inputs.site_index[inputs.active[q]], np.asarray(chosen, int))
    assert np.array_equal(inputs.site_index[inputs.background], background)
    for trial in range(3):
        synapse, time, weight = inputs.events(trial)
        trains = poisson_times(1.0, 0.0, 500.0, seed=17, instance=trial, n_synapses=50)
        n_active = len(active[trial])
        assert time.size == n_active + sum(train.size for train in trains)
        assert np.all(np.diff(time) >= 0)
        assert np.count_nonzero(weight == 5e-4) == n_active
        for k, train in enumerate(trains):
            mine = np.sort(time[(synapse == inputs.background[k]) & (weight == 2e-4)])
            assert np.array_equal(mine, train)
        again = inputs.events(trial)
        assert all(np.array_equal(a, b) for a, b in zip(again, (synapse, time, weight),
                                                        strict=True))  # fmt: skip


# ----------------------------------------------------------------------- reduced case
@pytest.mark.parametrize(("mode", "density"), [("few", 1.3), ("full", 0.3)])
def test_reduced_case_engine_matches_neuron(ampanmda, no_hh_tables, active_pyramid, mode, density):
    """Few-spine (F-factor + explicit spines at the pool sites) and full-spine (every
    site explicit, at a lower density to stay small) pyramids with AmpaNmda synapses on
    spine heads. Trial 0: 4 distributed synapses (no spike); trial 1: a cluster of 10
    within 60 µm; trial 2: 40 distributed synapses (a somatic spike); six background
    synapses at 20 Hz in every trial. 150 ms at dt = 0.025 ms: the engine (3 instances,
    one per trial) against native NEURON runs of each trial with the same events."""
    cell = active_pyramid()
    params = SpineParameters(density=density)
    sites = spine_sites(cell, params, seed=4)
    rng = np.random.default_rng(7)
    active = [distributed(sites, 4, rng), clustered(sites, 10, 60.0, rng=rng),
              distributed(sites, 40, rng)]  # fmt: skip
    inputs = trial_inputs(
        sites, active, distributed(sites, 6, rng), activation_time=20.0,
        activation_weight=0.002, background_rate_hz=20.0, background_weight=3e-4, seed=11,
        background_stop=150.0,
    )  # fmt: skip
    spines = add_spines(cell, params, seed=4, mode=mode,
                        at=inputs.site_index if mode == "few" else None)  # fmt: skip
    assert len(spines) == (inputs.n_synapses if mode == "few" else len(sites))
    synapses = spine_synapses(spines, inputs.site_index)
    soma = cell.soma[0]
    heads = [spines.head_of(int(inputs.site_index[inputs.active[1][0]])),
             spines.head_of(int(inputs.site_index[inputs.background[0]]))]  # fmt: skip
    probes = {"soma": soma(0.5), "cluster_head": heads[0](0.5), "background_head": heads[1](0.5)}

    engine = Engine(export_model(-65.0), n_instances=inputs.n_trials)
    inputs.to_engine(engine, synapse_rows(synapses))
    result = engine.run(150.0, dt=0.025, record_nodes=[p.node_index() for p in probes.values()],
                        spike_node=soma(0.5).node_index(),
                        spike_threshold=SPIKE_THRESHOLD)  # fmt: skip

    spike_counts = []
    for trial in range(inputs.n_trials):
        events = inputs.to_neuron(synapses, trial)
        model = Model(name=f"spines-{mode}", cells=[cell.sections], somas=[soma],
                      probes=dict(probes))  # fmt: skip
        native = simulate(model, 150.0)
        events.release()
        assert events.n_events >= len(active[trial])
        difference = np.abs(result.v[trial] - np.array(list(native.traces.values()))).max()
        assert difference <= V_TOLERANCE, f"trial {trial}: max |ΔV| = {difference} mV"
        reference = native.spikes[soma.name()]
        assert result.spikes[trial].size == reference.size, f"trial {trial}"
        assert np.abs(result.spikes[trial] - reference).max(initial=0.0) < SPIKE_TOLERANCE
        spike_counts.append(reference.size)
    assert spike_counts[0] == 0 and spike_counts[2] >= 1, spike_counts


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"density": -1.0}, "density"), ({"neck_length": 0.0}, "neck_length"),
     ({"neck_diameter": float("nan")}, "neck_diameter"), ({"head_area": -2.8}, "head_area"),
     ({"min_distance": -60.0}, "min_distance"), ({"neck_ra": 0.0}, "neck_ra"),
     ({"f_factor": 0.0}, "f_factor"), ({"density": "many"}, "density")],
)  # fmt: skip
def test_bad_spine_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SpineParameters(**kwargs)


def test_bad_arguments(passive_pyramid):
    cell = passive_pyramid()
    with pytest.raises(ValueError, match="mode"):
        add_spines(cell, mode="some")
    with pytest.raises(ValueError, match="at"):
        add_spines(cell, mode="full", at=[1])
    with pytest.raises(ValueError, match="seed"):
        spine_sites(cell, seed=-1)
    with pytest.raises(ValueError, match="factor"):
        apply_f_factor(cell, 0.0)
    with pytest.raises(ValueError, match="min_distance"):
        qualifying_length(cell, -1.0)
    with pytest.raises(ValueError, match="cell"):
        qualifying_length(cell.sections)
    stranger = h.Section(name="stranger")
    with pytest.raises(ValueError, match="not in this tree"):
        add_spines_at(cell, [(stranger, 0.5)])
    h.delete_section(sec=stranger)
    with pytest.raises(ValueError, match="x must lie"):
        add_spines_at(cell, [(cell.dendrites[0], 1.5)])
    sites = spine_sites(cell, SpineParameters(density=0.1))
    with pytest.raises(ValueError, match="n must"):
        distributed(sites, -1)
    with pytest.raises(ValueError, match="length"):
        clustered(sites, 2, -5.0)
    with pytest.raises(ValueError, match="rng"):
        distributed(sites, 2, rng=1.5)
    with pytest.raises(ValueError, match="active"):
        trial_inputs(sites, np.arange(3), activation_time=1.0, activation_weight=1e-3)
    with pytest.raises(ValueError, match="active"):
        trial_inputs(sites, [[len(sites)]], activation_time=1.0, activation_weight=1e-3)
    with pytest.raises(ValueError, match="activation_weight"):
        trial_inputs(sites, [[0]], activation_time=1.0, activation_weight=-1.0)
    with pytest.raises(ValueError, match="background_stop"):
        trial_inputs(sites, [[0]], [1], activation_time=1.0, activation_weight=1e-3,
                     background_rate_hz=1.0)  # fmt: skip
    inputs = trial_inputs(sites, [[0, 1]], activation_time=1.0, activation_weight=1e-3)
    with pytest.raises(ValueError, match="trial"):
        inputs.events(1)
    with pytest.raises(ValueError, match="synapses"):
        inputs.to_neuron([], 0)

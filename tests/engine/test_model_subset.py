"""``CellModel.subset``: a model made of some of its nodes, or without some of its point
processes.

Without NEURON: the kept nodes renumbered in order, every per-node array, mechanism and
ion row sliced, point processes at kept nodes kept (labels too), the events of dropped
ones dropped and the others pointing to their new rows; the closed-under-parents rule
and the other argument errors.

With NEURON: the demo pyramid (hh soma, passive dendrites, 40 µm segments) with twelve
spines and an AmpaNmda synapse on each head, exported, and a subset keeping five of the
spines is the model NEURON itself builds with only those five spines (the same arrays),
and runs bit for bit like it (0.0 mV at the soma and at a spine head, the same spikes).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from neuron import h

from dhs.engine import CellModel, Engine, SynapticEvents
from engine_models import random_tree, table
from neuron_bridge import (
    SpineParameters,
    _nrn,
    add_spines_at,
    export_model,
    node_count,
    spine_sites,
    synapse_rows,
)
from neuron_bridge.patterns import NeuronEvents
from neuron_models import SPIKE_THRESHOLD, Model, simulate
from pyramid_cells import active_pyramid

N_NODES = 30


def labelled_model() -> CellModel:
    """A branched tree with pas everywhere but the root, hh at two nodes, three labelled
    ExpSyn and one Exp2Syn with events, and a name per node."""
    tree = random_tree(N_NODES, seed=5, reach=3)
    expsyn = table("ExpSyn", [4, 17, 9], tau=[1.0, 2.0, 3.0], e=0.0)
    expsyn.labels = ("ExpSyn[0]", "ExpSyn[1]", "ExpSyn[2]")
    mechanisms = {
        "pas": table("pas", np.arange(1, N_NODES), g=np.linspace(1e-4, 2e-4, N_NODES - 1)),
        "ExpSyn": expsyn,
        "Exp2Syn": table("Exp2Syn", [17], tau1=0.5, tau2=3.0),
        "hh": table("hh", [1, 2], gnabar=0.12),
    }
    events = {
        "ExpSyn": SynapticEvents(np.array([0, 1, 2, 1, 0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
                                 np.array([0.01, 0.02, 0.03, 0.04, 0.05])),
        "Exp2Syn": SynapticEvents(np.array([0]), np.array([2.5]), np.array([0.02])),
    }  # fmt: skip
    names = tuple(f"node[{i}]" for i in range(N_NODES))
    return CellModel(**tree, mechanisms=mechanisms, events=events, node_names=names,
                     diam=np.linspace(1.0, 2.0, N_NODES))  # fmt: skip


def subtree(parent: np.ndarray, root: int) -> np.ndarray:
    """``root`` and every node below it, as a boolean mask."""
    inside = np.zeros(parent.size, dtype=bool)
    inside[root] = True
    for i in range(root + 1, parent.size):
        inside[i] = parent[i] >= 0 and inside[parent[i]]
    return inside


def test_subset_slices_and_renumbers():
    model = labelled_model()
    dropped = subtree(model.parent, 17)
    assert 3 <= dropped.sum() < N_NODES - 5 and not dropped[[4, 9]].any()
    keep = ~dropped
    kept = np.flatnonzero(keep)
    part = model.subset(keep)
    assert part.n == kept.size
    new_index = {int(old): new for new, old in enumerate(kept.tolist())}
    expected_parent = [-1 if p < 0 else new_index[int(p)] for p in model.parent[kept]]
    assert part.parent.tolist() == expected_parent
    for name in ("area", "cm", "a", "b", "diam"):
        assert np.array_equal(getattr(part, name), getattr(model, name)[kept]), name
    assert part.node_names == tuple(model.node_names[i] for i in kept)
    assert (part.v_init, part.celsius) == (model.v_init, model.celsius)
    assert list(part.mechanisms) == list(model.mechanisms)

    pas = part.mechanisms["pas"]
    rows = np.flatnonzero(keep[model.mechanisms["pas"].node])
    assert pas.node.tolist() == [new_index[int(i)] for i in model.mechanisms["pas"].node[rows]]
    assert np.array_equal(pas.params["g"], model.mechanisms["pas"].params["g"][rows])
    assert part.mechanisms["hh"].node.tolist() == [1, 2]
    assert part.mechanisms["hh"].globals == model.mechanisms["hh"].globals

    # ExpSyn[1] sits at node 17 (dropped): rows 0 and 2 stay, as rows 0 and 1
    expsyn = part.mechanisms["ExpSyn"]
    assert expsyn.labels == ("ExpSyn[0]", "ExpSyn[2]")
    assert expsyn.node.tolist() == [new_index[4], new_index[9]]
    assert expsyn.params["tau"].tolist() == [1.0, 3.0]
    assert part.point_process("ExpSyn[2]") == ("ExpSyn", 1)
    events = part.events["ExpSyn"]
    assert events.synapse.tolist() == [0, 1, 0]
    assert events.time.tolist() == [1.0, 3.0, 5.0]
    assert events.weight[:, 0].tolist() == [0.01, 0.03, 0.05]
    # the only Exp2Syn is dropped: an empty table, no events
    assert part.mechanisms["Exp2Syn"].count == 0
    assert part.events["Exp2Syn"].time.size == 0
    # ions: hh's na and k at the kept hh nodes
    for ion in ("na", "k"):
        assert part.ions[ion].node.tolist() == [1, 2]
        assert np.array_equal(part.ions[ion].e, model.ions[ion].e)

    # index arrays and masks agree; keeping everything gives the model back
    again = model.subset(kept)
    for key, value in part.to_arrays().items():
        assert np.array_equal(again.to_arrays()[key], value), key
    whole = model.subset(np.ones(N_NODES, dtype=bool))
    for key, value in model.to_arrays().items():
        assert np.array_equal(whole.to_arrays()[key], value), key
    # and the subset runs
    result = Engine(part, 2).run(6.0, record_nodes=[0, part.n - 1])
    assert np.isfinite(result.v).all()


def test_subset_without_labels_or_names():
    model = dataclasses.replace(labelled_model(), node_names=())
    part = model.subset(np.arange(10))
    assert part.n == 10 and part.node_names == ()


def test_subset_errors():
    model = labelled_model()
    child = int(np.flatnonzero(model.parent > 0)[0])
    middle = int(model.parent[child])
    keep = np.ones(N_NODES, dtype=bool)
    keep[middle] = False
    message = rf"node {child} \(node\[{child}\]\) is kept but its parent {middle} \(node"
    with pytest.raises(ValueError, match=message):
        model.subset(keep)
    with pytest.raises(ValueError, match="closed under parents"):
        model.subset([0, child])
    with pytest.raises(ValueError, match="increasing"):
        model.subset([0, 2, 1])
    with pytest.raises(ValueError, match="increasing"):
        model.subset([0, 1, 1])
    with pytest.raises(ValueError, match="outside"):
        model.subset([0, N_NODES])
    with pytest.raises(ValueError, match="shape"):
        model.subset(np.ones(N_NODES - 1, dtype=bool))
    with pytest.raises(ValueError, match="at least one"):
        model.subset(np.zeros(N_NODES, dtype=bool))
    with pytest.raises(ValueError, match="at least one"):
        model.subset([])
    with pytest.raises(ValueError, match="indices or a boolean mask"):
        model.subset([0.0, 1.0])
    with pytest.raises(ValueError, match=r"no such point process \(it has \['ExpSyn', 'Exp2Syn'"):
        model.subset(point_processes={"pas": [0]})
    with pytest.raises(ValueError, match=r"holds row 3, outside 0..2"):
        model.subset(point_processes={"ExpSyn": [0, 3]})
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        model.subset(point_processes={"ExpSyn": np.ones(2, dtype=bool)})
    with pytest.raises(ValueError, match="increasing"):
        model.subset(point_processes={"ExpSyn": [2, 0]})
    with pytest.raises(ValueError, match="a dict"):
        model.subset(point_processes=[0, 1])


def test_subset_of_point_processes():
    """Only some ExpSyn: every node stays, the dropped synapse's row and its events go,
    the others' events point to their new rows; Exp2Syn, not named, stays whole."""
    model = labelled_model()
    part = model.subset(point_processes={"ExpSyn": [0, 2]})
    assert part.n == model.n and np.array_equal(part.parent, model.parent)
    assert part.mechanisms["ExpSyn"].labels == ("ExpSyn[0]", "ExpSyn[2]")
    assert part.mechanisms["ExpSyn"].node.tolist() == [4, 9]
    assert part.mechanisms["ExpSyn"].params["tau"].tolist() == [1.0, 3.0]
    events = part.events["ExpSyn"]
    assert events.synapse.tolist() == [0, 1, 0] and events.time.tolist() == [1.0, 3.0, 5.0]
    assert part.mechanisms["Exp2Syn"].count == 1 and part.events["Exp2Syn"].time.size == 1
    # with nodes too: a mask and the node rule together
    both = model.subset(np.arange(10), point_processes={"ExpSyn": np.array([True, True, False])})
    assert both.mechanisms["ExpSyn"].labels == ("ExpSyn[0]",)


# ----------------------------------------------------------------------- with NEURON
def spine_nodes(necks, heads) -> list[int]:
    """Every node of the given spine sections (their segments and their 1-ends)."""
    _nrn.set_up_nodes()  # node_index() is 0 everywhere until NEURON numbers the nodes
    nodes = []
    for section in [*necks, *heads]:
        nodes += [segment.node_index() for segment in section] + [section(1).node_index()]
    return nodes


def assert_same_run(result, native, soma) -> None:
    """The engine's one instance and NEURON's run: 0.0 mV at every probe, the same
    somatic spikes, and at least one of them."""
    difference = np.abs(result.v[0] - np.array(list(native.traces.values()))).max()
    assert difference == 0.0, f"max |ΔV| = {difference} mV"
    reference = native.spikes[soma.name()]
    assert reference.size >= 1, "the synapses should make the soma spike"
    assert np.array_equal(result.spikes[0], reference)


def test_subset_without_spines_is_neuron_without_them(clean_neuron, ampanmda):
    """Twelve spines with a synapse each; a subset without seven of them against NEURON's
    model with only the other five, built from scratch: the same arrays, and the same
    potentials bit for bit (the five synapses get strong enough input to spike)."""
    cell = active_pyramid(segment_length=40.0)
    sites = spine_sites(cell, SpineParameters(density=0.3), seed=2)
    rng = np.random.default_rng(8)
    pool = np.sort(rng.choice(len(sites), 12, replace=False))
    chosen = np.sort(rng.choice(12, 5, replace=False))  # the spines that stay
    times = np.array([5.0, 5.0, 6.5, 5.25, 12.0, 3.0, 5.0, 7.0, 5.5, 5.0, 9.0, 4.0])
    weight = 0.03  # µS

    spines = add_spines_at(cell, sites.subset(pool))
    synapses = [h.AmpaNmda(head(0.5)) for head in spines.heads]
    rows = synapse_rows(synapses)
    pooled = export_model(-65.0)
    pooled = dataclasses.replace(
        pooled, events={"AmpaNmda": SynapticEvents(rows, times, np.full(12, weight))}
    )
    labels = [synapses[k].hname() for k in chosen]
    dropped = np.setdiff1d(np.arange(12), chosen)
    keep = np.ones(pooled.n, dtype=bool)
    necks, heads = [spines.necks[k] for k in dropped], [spines.heads[k] for k in dropped]
    keep[spine_nodes(necks, heads)] = False
    assert keep.size - keep.sum() == 4 * dropped.size  # two sections of two nodes each
    part = pooled.subset(keep)
    assert part.mechanisms["AmpaNmda"].labels == tuple(labels)
    assert sorted(part.events["AmpaNmda"].time.tolist()) == sorted(times[chosen].tolist())
    soma = cell.soma[0]
    probe_head = spines.heads[chosen[0]]
    probes_old = np.array([soma(0.5).node_index(), probe_head(0.5).node_index()])
    new_index = np.cumsum(keep) - 1
    assert keep[probes_old].all()
    engine = Engine(part, 1)
    result = engine.run(30.0, record_nodes=new_index[probes_old].tolist(),
                        spike_node=int(new_index[probes_old[0]]),
                        spike_threshold=SPIKE_THRESHOLD)  # fmt: skip
    del synapses
    spines.delete()

    # NEURON with only the chosen spines, their synapses and their events
    few = add_spines_at(cell, sites.subset(pool[chosen]))
    synapses = [h.AmpaNmda(head(0.5)) for head in few.heads]
    native_model = export_model(-65.0)
    assert native_model.n == part.n == node_count()
    for name in ("parent", "area", "cm", "a", "b", "diam"):
        assert np.array_equal(getattr(native_model, name), getattr(part, name)), name
    assert list(native_model.mechanisms) == list(part.mechanisms)
    for name, table_ in native_model.mechanisms.items():
        assert np.array_equal(table_.node, part.mechanisms[name].node), name
        for p, values in table_.params.items():
            assert np.array_equal(values, part.mechanisms[name].params[p]), (name, p)
    events = NeuronEvents(synapses, np.arange(5), times[chosen], np.full(5, weight))
    probes = {"soma": soma(0.5), "head": few.heads[0](0.5)}
    native = simulate(Model(name="subset-spines", cells=[cell.sections], somas=[soma],
                            probes=probes), 30.0)  # fmt: skip
    events.release()
    assert_same_run(result, native, soma)
    del synapses
    few.delete()
    cell.delete()


def test_subset_of_synapses_is_neuron_without_them(clean_neuron, ampanmda):
    """Twelve spines with a synapse each; a subset keeping every node but only five of
    the synapses against NEURON's model with the twelve spines and only those five
    synapses: the same tables, and 0.0 mV at the soma with the same spikes."""
    cell = active_pyramid(segment_length=40.0)
    sites = spine_sites(cell, SpineParameters(density=0.3), seed=2)
    pool = np.sort(np.random.default_rng(8).choice(len(sites), 12, replace=False))
    chosen = np.array([1, 4, 5, 9, 11])
    times = np.array([5.0, 5.0, 6.5, 5.25, 12.0])
    weight = 0.03  # µS
    spines = add_spines_at(cell, sites.subset(pool))
    synapses = [h.AmpaNmda(head(0.5)) for head in spines.heads]
    rows = synapse_rows(synapses)
    pooled = export_model(-65.0)
    kept_rows = np.sort(rows[chosen])
    part = pooled.subset(point_processes={"AmpaNmda": kept_rows})
    new_row = np.searchsorted(kept_rows, rows[chosen])  # of chosen synapse k
    part = dataclasses.replace(
        part, events={"AmpaNmda": SynapticEvents(new_row, times, np.full(5, weight))}
    )
    soma = cell.soma[0]
    soma_node = soma(0.5).node_index()
    result = Engine(part, 1).run(30.0, record_nodes=[soma_node], spike_node=soma_node,
                                 spike_threshold=SPIKE_THRESHOLD)  # fmt: skip
    for k in np.setdiff1d(np.arange(12), chosen).tolist():
        synapses[k] = None
    kept = [synapses[k] for k in chosen.tolist()]
    del synapses
    native_model = export_model(-65.0)
    table_ = native_model.mechanisms["AmpaNmda"]
    assert np.array_equal(table_.node, part.mechanisms["AmpaNmda"].node)
    for p, values in table_.params.items():
        assert np.array_equal(values, part.mechanisms["AmpaNmda"].params[p]), p
    events = NeuronEvents(kept, np.arange(5), times, np.full(5, weight))
    native = simulate(Model(name="subset-synapses", cells=[cell.sections], somas=[soma],
                            probes={"soma": soma(0.5)}), 30.0)  # fmt: skip
    events.release()
    assert_same_run(result, native, soma)
    del kept
    spines.delete()
    cell.delete()

"""Tests of ``neuron_bridge.extract`` against the real NEURON (no mocks).

The node map is checked node by node with ``section(x).node_index()``, and the extracted
system is checked by what NEURON itself does with it: one ``h.fadvance()`` changes every
node's voltage by exactly the solution of the system read just before (fixed step,
``secondorder = 0``: ``v += rhs`` after NEURON's own triang/bksub).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from paths import MORPHOLOGIES

pytest.importorskip("neuron")

from neuron import h

import dhs
from neuron_bridge import extract, node_map
from neuron_models import BACKENDS, DT, PYRAMID_NODES, V_INIT, advance_to, node_voltages

DATA = MORPHOLOGIES

# |Δv(dhs) - Δv(NEURON)| in mV. NEURON's update is v_new = v_old + x, and the test reads
# v_new - v_old, which equals x up to one rounding of v (|v| < 100 mV: 1.4e-14 mV).
# Measured: at most 7.1e-15 mV (branchy and pyramid, every time here, serial and cpu).
DV_TOLERANCE_MV = 1e-12

# Times (ms) at which one step is reproduced: right after finitialize, and at quiet
# moments (no IClamp edge or event in [t - dt, t + 2 dt], see Model.quiet_at) with the
# inputs on: branchy's cell A in a spike upstroke, cell B with its synapse conducting;
# the pyramid with the clamp on, and after a synaptic event and a spike.
DV_TIMES = {"branchy": (0.0, 3.5, 8.0), "pyramid": (0.0, 3.0, 7.0)}


def _extract_initialized():
    """``extract()`` after ``h.finitialize``: for the tests of the structure, which would
    otherwise see extract's warning that d and rhs are not yet valid."""
    h.finitialize(V_INIT)
    return extract()


def _sections() -> list:
    return list(h.allsec())


def _root_sections() -> list:
    return [sec for sec in h.allsec() if not h.SectionRef(sec=sec).has_parent()]


# ---------------------------------------------------------------------------- node map
def test_tree_covers_every_matrix_row(model):
    system = _extract_initialized()
    expected = sum(sec.nseg + 1 for sec in _sections()) + len(_root_sections())
    assert system.tree.n == expected == system.nodes.n
    assert system.a.shape == system.b.shape == system.d.shape == system.rhs.shape
    assert system.a.shape == (expected,)
    assert system.tree.n_components == len(model.cells)
    if model.name == "pyramid":
        assert system.tree.n == PYRAMID_NODES


def test_node_indices_are_zero_to_n_and_parents_come_first(model):
    system = _extract_initialized()
    n = system.tree.n
    parent = system.nodes.parent
    segments = system.nodes.segments()
    assert sorted(segment.node_index() for segment in segments) == list(range(n))
    children = np.flatnonzero(parent >= 0)
    assert np.all(parent[children] < children)  # NEURON's order is parent-before-child
    assert system.tree.parent_before_child
    assert np.array_equal(system.tree.parent, parent)


def test_location_gives_back_every_node(model):
    system = _extract_initialized()
    for node in range(system.tree.n):
        section, x = system.location(node)
        assert 0.0 <= x <= 1.0
        assert section(x).node_index() == node, (node, section.name(), x)


def test_roots_are_the_x0_nodes_of_the_root_sections(model):
    system = _extract_initialized()
    roots = np.flatnonzero(system.nodes.parent == -1)
    assert roots.size == len(model.cells) == system.tree.n_components
    root_sections = _root_sections()
    assert sorted(sec(0).node_index() for sec in root_sections) == roots.tolist()
    for node in roots:
        section, x = system.location(int(node))
        assert section in root_sections and x == 0.0
    assert {s.name() for s in root_sections} == {soma.name() for soma in model.somas}


def _section_chain(system, section) -> list[int]:
    """The nodes a section owns (its centres and free end), in node order."""
    owned = [
        node
        for node in range(system.tree.n)
        if system.nodes.section[node] == section and system.nodes.parent[node] != -1
    ]
    return owned


def test_section_nodes_run_from_the_attached_end(model):
    system = _extract_initialized()
    parent = system.nodes.parent
    for section in _sections():
        chain = _section_chain(system, section)
        assert len(chain) == section.nseg + 1, section.name()
        reversed_section = section.orientation() == 1
        attached, free = (1.0, 0.0) if reversed_section else (0.0, 1.0)
        xs = system.nodes.x[chain]
        # The chain hangs off the attached end's node (the parent's node) ...
        assert parent[chain[0]] == section(attached).node_index()
        ref = h.SectionRef(sec=section)
        if ref.has_parent():
            parent_segment = section.parentseg()
            assert (
                section(attached).node_index() == parent_segment.sec(parent_segment.x).node_index()
            )
        # ... then each node hangs off the previous one, moving away from that end,
        assert all(parent[b] == a for a, b in pairwise(chain))
        steps = np.diff(xs)
        assert np.all(steps < 0) if reversed_section else np.all(steps > 0), section.name()
        # and the last one is the free end (a zero-area node).
        assert xs[-1] == free
        assert sorted(xs[:-1]) == sorted(segment.x for segment in section)


def test_reversed_section_explicitly(branchy):
    """``a_reversed`` hangs at its own x = 1 from ``a_at_half(1)``; its free end is x = 0."""
    system = _extract_initialized()
    reversed_1, reversed_0 = branchy.reversed_sections
    at_half = next(s for s in branchy.cells[0] if s.name() == "a_at_half")
    assert reversed_1.orientation() == 1 and reversed_0.orientation() == 1
    assert reversed_1.parentseg().x == 1.0 and reversed_1.parentseg().sec == at_half
    assert reversed_1(1).node_index() == at_half(1).node_index()
    chain = _section_chain(system, reversed_1)
    assert system.nodes.x[chain].tolist() == [
        *sorted((seg.x for seg in reversed_1), reverse=True),
        0.0,
    ]
    assert system.location(chain[-1]) == (reversed_1, 0.0)
    assert system.nodes.parent[chain[0]] == at_half(1).node_index()
    # Children of the reversed section hang from its free end (x = 0) and from an
    # interior point (x = 0.3, in the segment whose centre is nearest).
    for name, x in (("a_on_reversed_free_end", 0.0), ("a_on_reversed_middle", 0.3)):
        child = next(s for s in branchy.cells[0] if s.name() == name)
        assert child.parentseg().sec == reversed_1 and child.parentseg().x == x
        first = _section_chain(system, child)[0]
        assert system.nodes.parent[first] == reversed_1(x).node_index()
    assert reversed_1(0).node_index() == chain[-1]
    # The second reversed section is attached at x = 0 of a_child_half, i.e. at the node
    # a_child_half itself hangs from.
    child_half = reversed_0.parentseg().sec
    assert reversed_0.parentseg().x == 0.0
    assert reversed_0(1).node_index() == child_half(0).node_index()


def test_children_at_x0_half_and_1_of_a_parent(branchy):
    system = _extract_initialized()
    parent = system.nodes.parent
    at_1 = next(s for s in branchy.cells[0] if s.name() == "a_at1")
    for name, x in (("a_child0", 0.0), ("a_child_half", 0.5), ("a_child1", 1.0)):
        child = next(s for s in branchy.cells[0] if s.name() == name)
        assert child.parentseg().sec == at_1 and child.parentseg().x == x
        first = _section_chain(system, child)[0]
        assert parent[first] == at_1(x).node_index()
    # at_1(0) is the node at_1 hangs from: soma(1), a zero-area end node of the soma.
    soma = branchy.somas[0]
    assert at_1(0).node_index() == soma(1).node_index()
    assert system.location(soma(1).node_index()) == (soma, 1.0)


def test_every_nseg_kind_is_present(branchy):
    nsegs = {sec.nseg for sec in branchy.sections}
    assert 1 in nsegs and any(n % 2 == 0 for n in nsegs) and any(n % 2 and n > 1 for n in nsegs)


def test_node_map_alone_matches_extract(model):
    system = _extract_initialized()
    nodes = node_map()
    assert np.array_equal(nodes.parent, system.nodes.parent)
    assert np.array_equal(nodes.x, system.nodes.x)
    assert nodes.section == system.nodes.section


def test_pyramid_tree_and_coupling_match_the_committed_data(pyramid):
    """Same parent array and a, b as data/morphologies/pyramid_nodes_1um.npz (Ra 150)."""
    system = _extract_initialized()
    data = np.load(DATA / "pyramid_nodes_1um.npz")
    assert np.array_equal(system.nodes.parent, data["parent"])
    non_root = system.nodes.parent >= 0
    np.testing.assert_array_equal(system.a[non_root], data["a"][non_root])
    np.testing.assert_array_equal(system.b[non_root], data["b"][non_root])


def test_extract_without_sections_raises(clean_neuron):
    with pytest.raises(ValueError, match="no sections"):
        extract()


def test_assemble_false_reads_the_last_fcurrent(branchy):
    h.finitialize(V_INIT)
    advance_to(3.5)
    system = extract()
    again = extract(assemble=False)
    for name in ("a", "b", "d", "rhs"):
        assert np.array_equal(getattr(system, name), getattr(again, name)), name


# ------------------------------------------------------------------------ Δv of one step
def _one_step(model, t: float):
    """Run to t, extract the system, do one fadvance: (system, Δv measured on NEURON)."""
    assert model.quiet_at(t), f"a stimulus edge is within a step of t = {t} ms"
    h.secondorder = 0
    h.dt = DT
    h.finitialize(V_INIT)
    advance_to(t)
    assert abs(h.t - t) < 1e-9
    system = extract()  # h.fcurrent(): the system NEURON's next fadvance solves
    segments = system.nodes.segments()
    before = node_voltages(segments)
    h.fadvance()
    after = node_voltages(segments)
    return system, after - before


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step", range(3), ids=["t0", "t1", "t2"])
def test_solution_is_neurons_voltage_change(model, step, backend):
    t = DV_TIMES[model.name][step]
    system, dv_neuron = _one_step(model, t)
    assert np.max(np.abs(dv_neuron)) > 1e-6  # the step does change the voltages
    dv = np.asarray(system.solve(backend=backend))
    assert dv.shape == dv_neuron.shape
    assert np.max(np.abs(dv - dv_neuron)) <= DV_TOLERANCE_MV


@pytest.mark.parametrize("step", range(3), ids=["t0", "t1", "t2"])
def test_neurons_voltage_change_solves_the_extracted_matrix(model, step):
    """Independent of dhs's solvers: NEURON's Δv satisfies the system in dhs's convention."""
    t = DV_TIMES[model.name][step]
    system, dv_neuron = _one_step(model, t)
    tree = system.tree
    residual = system.d * dv_neuron - system.rhs
    child = np.flatnonzero(tree.parent >= 0)
    residual[child] += system.b[child] * dv_neuron[tree.parent[child]]
    np.add.at(residual, tree.parent[child], system.a[child] * dv_neuron[child])
    # Δv read from NEURON carries one rounding of v (|v| < 128 mV: at most 1.4e-14 mV),
    # so row i's residual is bounded by that times the row's absolute coefficients.
    # Measured: at most 0.25 of this bound (branchy and pyramid, every time here).
    row_sum = np.abs(system.d)
    row_sum[child] += np.abs(system.b[child])
    np.add.at(row_sum, tree.parent[child], np.abs(system.a[child]))
    bound = row_sum * np.spacing(128.0) + 1e-15 * np.abs(system.rhs)
    assert np.all(np.abs(residual) <= bound)
    if tree.n <= 200:
        dense = dhs.to_dense(tree, system.a, system.b, system.d)
        np.testing.assert_allclose(dense @ dv_neuron, system.rhs, rtol=1e-9, atol=1e-12)

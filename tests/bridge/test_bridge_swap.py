"""Tests of ``neuron_bridge.swap`` (``use_dhs``) with the real NEURON (no mocks).

Every run is compared with NEURON's own run of the same model: voltage traces at the
somas and dendrites (one on a reversed section and its zero-area free end), spike
times, and the number of solves. The swap replaces only NEURON's tree solve, and both
the serial and the cpu backend do NEURON's operations in NEURON's order here, so the
runs are identical to the last bit: the differences measured are 0.0, and the main
comparison asserts that on top of the tolerances below (1e-9 mV, 1e-9 ms).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from child_process import last_json_line

pytest.importorskip("neuron")

from neuron import h
from neuron import nonvint_block_supervisor as supervisor

import dhs
from neuron_bridge import DhsSolve, _nrn, check_preconditions, installed, use_dhs
from neuron_models import BACKENDS, DT, V_INIT, advance_to, restore_solve_settings, simulate

TRACE_TOLERANCE_MV = 1e-9
SPIKE_TOLERANCE_MS = 1e-9
# Run lengths: every spike of the pyramid (6.7, 22.1, 36.2 ms) falls in its 50 ms.
TSTOP = {"branchy": 100.0, "pyramid": 50.0}
# Spikes in NEURON's own runs (checked, so that comparing spike times is not vacuous).
SPIKE_COUNTS = {"branchy": {"a_soma": 7, "b_soma": 5}, "pyramid": {"soma": 3}}

# float32 solves (dtype=np.float32; NEURON's arrays stay float64). Measured max |v32 -
# v64| over the recorded traces: branchy (100 ms) 5.1e-3 mV at cell A's soma (5.6e-4
# at B's soma, 3.4e-3 on the reversed dendrite); pyramid (50 and 100 ms) 4.1e-3 mV at
# the soma, 2.4e-3 at a synapse, 3.9e-5 distally; the same for serial and cpu. Spike
# times did not move at all (0.0 ms) in either model; a shift of up to one step is
# allowed. Single-step Δv errors in float32: up to 1.2e-4 mV (|Δv| up to 2.4 mV).
FLOAT32_TRACE_BOUND_MV = 1e-2
FLOAT32_SPIKE_SHIFT_MS = DT


def assert_runs_match(run, reference, trace_tolerance=TRACE_TOLERANCE_MV,
                      spike_tolerance=SPIKE_TOLERANCE_MS) -> dict:  # fmt: skip
    """Same steps, traces within trace_tolerance, same spikes within spike_tolerance."""
    assert run.steps == reference.steps
    np.testing.assert_array_equal(run.t, reference.t)
    differences = {}
    for name, trace in reference.traces.items():
        assert run.traces[name].shape == trace.shape, name
        assert np.all(np.isfinite(run.traces[name])), name
        differences[name] = float(np.max(np.abs(run.traces[name] - trace)))
        assert differences[name] <= trace_tolerance, (name, differences[name])
    for name, times in reference.spikes.items():
        assert run.spikes[name].size == times.size, (name, run.spikes[name], times)
        if times.size:
            assert np.max(np.abs(run.spikes[name] - times)) <= spike_tolerance, name
    return differences


def assert_identical(run, reference) -> None:
    """Bit for bit."""
    assert np.array_equal(run.t, reference.t)
    for name in reference.traces:
        assert np.array_equal(run.traces[name], reference.traces[name]), name
    for name in reference.spikes:
        assert np.array_equal(run.spikes[name], reference.spikes[name]), name


def steps_of(tstop: float) -> int:
    return round(tstop / DT)


# ----------------------------------------------------------------- swap against native
def test_native_runs_spike(model, native_runs):
    """The comparisons below are not vacuous: both cells of branchy and the pyramid fire."""
    reference = native_runs(model, TSTOP[model.name])
    assert reference.steps == steps_of(TSTOP[model.name])
    counts = {name: times.size for name, times in reference.spikes.items()}
    assert counts == SPIKE_COUNTS[model.name]


def test_native_runs_are_reproducible(model, native_runs):
    """A fresh build runs to the same bits as the cached reference (what the cache needs)."""
    tstop = 20.0
    reference = native_runs(model, tstop)
    assert_identical(simulate(model, tstop), reference)


@pytest.mark.parametrize("backend", BACKENDS)
def test_swap_reproduces_native(model, native_runs, backend):
    tstop = TSTOP[model.name]
    reference = native_runs(model, tstop)
    with use_dhs(backend=backend) as swap:
        assert installed() is swap
        run = simulate(model, tstop)
    assert installed() is None
    differences = assert_runs_match(run, reference)
    # Exactly one dhs solve per fadvance and none in finitialize: continuerun(tstop)
    # takes tstop / dt steps (4000 for branchy's 100 ms, 2000 for the pyramid's 50 ms).
    assert swap.stats.solves == run.steps == steps_of(tstop)
    assert swap.stats.native_solves == 0
    assert swap.stats.rebuilds == 1
    assert swap.stats.warnings == []
    if backend in ("serial", "cpu"):
        assert max(differences.values()) == 0.0  # measured: identical runs


@pytest.mark.parametrize("backend", ["serial", "cpu"])
def test_float32_swap_error_is_bounded(model, native_runs, backend):
    tstop = TSTOP[model.name]
    reference = native_runs(model, tstop)
    with use_dhs(backend=backend, dtype=np.float32) as swap:
        run = simulate(model, tstop)
    assert swap.stats.solves == steps_of(tstop)
    differences = assert_runs_match(run, reference, FLOAT32_TRACE_BOUND_MV, FLOAT32_SPIKE_SHIFT_MS)
    assert max(differences.values()) > 0.0  # float32 really was used


@pytest.mark.parametrize("secondorder", [1, 2])
@pytest.mark.parametrize("backend", ["serial", "cpu"])
def test_secondorder_runs_match_native(branchy, native_runs, backend, secondorder):
    h.secondorder = secondorder
    reference = native_runs(branchy, 100.0)
    with use_dhs(backend=backend) as swap:
        run = simulate(branchy, 100.0)
    assert swap.stats.solves == run.steps == steps_of(100.0)
    assert_runs_match(run, reference)
    assert sum(times.size for times in reference.spikes.values()) >= 10


# ------------------------------------------------------------------------------ shadow
def test_shadow_cpu_agrees_with_neuron(model, native_runs):
    tstop = 20.0
    reference = native_runs(model, tstop)
    with use_dhs(backend="cpu", shadow=True) as swap:
        run = simulate(model, tstop)
    assert swap.stats.shadow_solves == swap.stats.solves == steps_of(tstop)
    assert swap.stats.shadow_max_difference_mV < 1e-12
    assert_runs_match(run, reference)


def test_shadow_serial_is_exact(model, native_runs):
    """The serial backend does NEURON's triang/bksub operations in NEURON's order."""
    tstop = 20.0
    reference = native_runs(model, tstop)
    with use_dhs(backend="serial", shadow=True) as swap:
        run = simulate(model, tstop)
    assert swap.stats.shadow_solves == swap.stats.solves == steps_of(tstop)
    assert swap.stats.shadow_max_difference_mV == 0.0
    assert_identical(run, reference)


# ------------------------------------------------------------------------ preconditions
def _cvode(model):
    h.cvode_active(1)


def _two_threads(model):
    h.ParallelContext().nthread(2)


def _extracellular(model):
    section = h.Section(name="ecs_probe")
    section.L, section.diam = 20.0, 1.0
    section.insert("pas")
    section.insert("extracellular")
    section.connect(model.cells[1][1](1))
    model.objects["ecs_probe"] = section


def _linear_mechanism(model):
    c, g = h.Matrix(1, 1, 2), h.Matrix(1, 1, 2)  # 1x1 sparse matrices
    g.setval(0, 0, 1e-3)
    y, b = h.Vector(1), h.Vector(1)
    sections = h.SectionList()
    sections.append(sec=model.somas[1])
    where = h.Vector([0.5])
    mechanism = h.LinearMechanism(c, g, y, b, sections, where)
    model.objects["linear_mechanism"] = (mechanism, c, g, y, b, sections, where)


def _optimize_node_order(model):
    h.ParallelContext().optimize_node_order(1)


PRECONDITIONS = {
    "cvode": (_cvode, r"CVode is active"),
    "threads": (_two_threads, r"NEURON runs 2 threads"),
    "extracellular": (_extracellular, r"extracellular mechanism is inserted in ecs_probe"),
    "linear_mechanism": (_linear_mechanism, r"1 LinearMechanism object"),
    "optimize_node_order": (_optimize_node_order, r"optimize_node_order\(\) is not 0"),
}


def _restore(model):
    """Undo the flags (the fixture's reset does it too, but not before the asserts)."""
    restore_solve_settings()


@pytest.mark.parametrize("name", list(PRECONDITIONS))
def test_install_refuses_when_a_precondition_fails(branchy, name):
    breaks, message = PRECONDITIONS[name]
    breaks(branchy)
    try:
        problems = check_preconditions()
        assert len(problems) == 1 and re.search(message, problems[0])
        swap = use_dhs(backend="serial")
        with pytest.raises(ValueError, match=message):
            swap.install()
        with pytest.raises(ValueError, match=message), use_dhs(backend="serial"):
            pass
        assert installed() is None
        assert not _nrn.hook_pointer().value
        assert swap._block not in supervisor.call
    finally:
        _restore(branchy)


def test_preconditions_hold_for_the_models(model):
    assert check_preconditions() == []


def test_installing_twice_raises(branchy):
    with use_dhs(backend="serial") as swap:
        with pytest.raises(ValueError, match="already installed"):
            use_dhs(backend="serial").install()
        with pytest.raises(ValueError, match="already installed"):
            swap.install()
        assert installed() is swap
    assert installed() is None
    swap.uninstall()  # a second uninstall does nothing
    assert installed() is None and not _nrn.hook_pointer().value


def test_hook_in_use_by_someone_else_is_refused(branchy):
    other = DhsSolve(backend="serial")
    pointer = _nrn.hook_pointer()
    pointer.value = _nrn.cast_hook(other._hook)
    try:
        with pytest.raises(ValueError, match="already in use"):
            use_dhs(backend="serial").install()
    finally:
        pointer.value = None
    assert installed() is None
    with pytest.warns(RuntimeWarning, match="never installed"):
        del other  # its hook was set by hand, but the swap itself never installed


def test_sparse13_stays_on_after_extracellular_is_gone(branchy, native_runs):
    """NEURON 9.0.2 keeps sparse13 after the mechanism that needed it is deleted.

    The swap then refuses (naming sparse13); ``h.CVode().use_mxb(0)`` switches NEURON
    back to its tree solver, and the swap works again.
    """
    reference = native_runs(branchy, 20.0)
    _extracellular(branchy)
    h.finitialize(V_INIT)
    assert _nrn.uses_sparse13()
    h.delete_section(sec=branchy.objects.pop("ecs_probe"))
    h.finitialize(V_INIT)
    assert _nrn.uses_sparse13()
    assert check_preconditions() == ["NEURON is using its sparse13 solver"]
    with pytest.raises(ValueError, match="sparse13"):
        use_dhs(backend="serial").install()
    h.CVode().use_mxb(0)
    assert not _nrn.uses_sparse13()
    with use_dhs(backend="serial") as swap:
        run = simulate(branchy, 20.0)
    assert swap.stats.solves == run.steps
    assert_identical(run, reference)


def test_cuda_without_gpu_is_refused(clean_neuron):
    if dhs.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="GPU"):
        use_dhs(backend="cuda")


# ------------------------------------------------------- preconditions broken mid-session
@pytest.mark.parametrize("name", ["extracellular", "linear_mechanism", "optimize_node_order"])
def test_precondition_broken_after_install_falls_back_with_a_warning(branchy, name):
    breaks, message = PRECONDITIONS[name]
    with pytest.warns(RuntimeWarning) as caught:
        with use_dhs(backend="serial") as swap:
            simulate(branchy, 5.0)
            dhs_solves = swap.stats.solves
            assert dhs_solves == steps_of(5.0)
            breaks(branchy)
            run = simulate(branchy, 30.0)
    messages = [str(warning.message) for warning in caught]
    # At finitialize: "DHS solve not used: <the problem>; NEURON solves instead".
    assert any(re.search(message, text) and "not used" in text for text in messages)
    assert messages == swap.stats.warnings  # each warning once
    assert swap.stats.solves == dhs_solves  # not one solve more by dhs
    assert swap.stats.native_solves == run.steps  # every step solved by NEURON itself
    if name != "optimize_node_order":  # NEURON's own flags show the others mid-run too
        assert any("during the run" in text for text in messages)
    try:
        reference = simulate(branchy, 30.0)  # NEURON alone, same model
    finally:
        _restore(branchy)
    assert_identical(run, reference)


def test_two_threads_after_install_fall_back_with_a_warning(branchy):
    try:
        with pytest.warns(RuntimeWarning, match="threads"):
            with use_dhs(backend="serial") as swap:
                simulate(branchy, 5.0)
                _two_threads(branchy)
                run = simulate(branchy, 20.0)
        # The block steps aside while two threads run, so those steps go uncounted.
        assert swap.stats.native_solves == 0
        reference = simulate(branchy, 20.0)
        assert_identical(run, reference)
    finally:
        _restore(branchy)


_CVODE_SCRIPT = """
import json, sys, warnings
import numpy as np
from neuron import h
h.load_file("stdrun.hoc")
import neuron_models as nm
from neuron_bridge import use_dhs
model = nm.build_branchy()
h.cvode_active(1)
native = nm.simulate(model, 50.0)
h.cvode_active(0)
swap = use_dhs(backend="serial")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with swap:
        nm.simulate(model, 5.0)
        solves = swap.stats.solves
        h.cvode_active(1)
        run = nm.simulate(model, 50.0)
h.cvode_active(0)
same = all(np.array_equal(run.traces[k], native.traces[k]) for k in native.traces)
spikes = all(np.array_equal(run.spikes[k], native.spikes[k]) for k in native.spikes)
print(json.dumps({
    "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning],
    "fixed_step_solves": solves, "solves": swap.stats.solves,
    "native_solves": swap.stats.native_solves, "identical": bool(same and spikes),
    "steps": run.steps, "spikes": int(run.spike_count()),
}))
nm.reset_neuron(model)
"""


def test_cvode_after_install_falls_back_to_neurons_cvode(clean_neuron, run_python):
    """Run in a subprocess: the failure is a crash of the whole interpreter."""
    result = last_json_line(run_python(_CVODE_SCRIPT))
    assert any("CVode" in message for message in result["warnings"])
    assert result["solves"] == result["fixed_step_solves"]  # dhs stopped solving
    assert result["identical"] and result["spikes"] > 0


# ------------------------------------------------------------------ a failing dhs solve
def _poison_a(swap, node: int) -> None:
    """Replace the swap's ``a`` by a copy with a NaN at ``node`` (dhs then raises)."""
    poisoned = swap._a.copy()
    poisoned[node] = np.nan
    swap._a = poisoned


def _node_kind_param(kind):
    return kind


@pytest.mark.parametrize("kind", [_node_kind_param(k) for k in ("root", "interior")])
def test_failed_dhs_solve_hands_the_step_to_neuron(branchy, native_runs, kind, capfd):
    reference = native_runs(branchy, 20.0)
    swap = use_dhs(backend="serial")
    with pytest.raises(RuntimeError, match="NEURON's own solve was used") as failure:
        with swap:
            h.finitialize(V_INIT)
            h.fadvance()  # the first solve builds the solver and reads a and b
            roots = np.flatnonzero(swap._solver.tree.parent < 0)
            node = int(roots[0]) if kind == "root" else int(roots[-1]) + 5
            assert (node in roots) == (kind == "root")
            _poison_a(swap, node)
            run = simulate(branchy, 20.0)
    assert isinstance(failure.value.__cause__, ValueError)
    assert f"a[{node}]" in str(failure.value.__cause__)
    assert swap.stats.solves == 1
    assert swap.stats.native_solves == run.steps == steps_of(20.0)
    # Every step failed the same way; the traceback is printed for the first one only.
    assert capfd.readouterr().err.count("Traceback") == 1
    assert f"{steps_of(20.0)} DHS solve(s) failed" in str(failure.value)
    assert_identical(run, reference)


# ------------------------------------------------------------------------- uninstalling
def test_uninstall_restores_native_bit_for_bit(branchy):
    before = simulate(branchy, 100.0)
    with use_dhs(backend="cpu") as swap:
        assert swap._block in supervisor.call
        during = simulate(branchy, 100.0)
        # The hook is set only for the solve inside a fixed step, never between steps.
        assert _nrn.hook_pointer().value in (None, 0)
        assert swap.stats.solves == during.steps
    assert installed() is None
    assert _nrn.hook_pointer().value in (None, 0)
    assert swap._block not in supervisor.call
    after = simulate(branchy, 100.0)
    assert_identical(after, before)
    assert_identical(during, before)


def test_explicit_install_and_uninstall(branchy, native_runs):
    reference = native_runs(branchy, 20.0)
    swap = use_dhs(backend="serial").install()
    try:
        assert installed() is swap
        run = simulate(branchy, 20.0)
    finally:
        swap.uninstall()
    assert installed() is None and not _nrn.hook_pointer().value
    swap.raise_if_failed()  # nothing failed
    assert_identical(run, reference)


# ---------------------------------------------------------------- topology and geometry
def _find(model, name: str):
    return next(section for section in model.sections if section.name() == name)


def _more_segments(model):
    _find(model, "a_at1").nseg = 9


def _new_section(model):
    section = h.Section(name="b_new")
    section.L, section.diam = 50.0, 1.0
    section.nseg = 5
    section.insert("pas")
    section.connect(_find(model, "b_dend")(0.5))
    model.objects["b_new"] = section


def _thicker(model):
    _find(model, "a_at_half").diam = 3.0


def _higher_ra(model):
    _find(model, "b_dend").Ra = 300.0


CHANGES = {
    "nseg": _more_segments,
    "new_section": _new_section,
    "diam": _thicker,
    "Ra": _higher_ra,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_change_between_runs_is_picked_up(branchy, change):
    with use_dhs(backend="serial") as swap:
        first = simulate(branchy, 30.0)
        assert swap.stats.rebuilds == 1
        a_before, b_before = swap._a.copy(), swap._b.copy()
        CHANGES[change](branchy)
        second = simulate(branchy, 30.0)
        assert swap.stats.rebuilds == 2
        if change in ("diam", "Ra"):  # same nodes, new coupling
            assert swap._a.size == a_before.size
            assert not np.array_equal(swap._a, a_before)
            assert not np.array_equal(swap._b, b_before)
        else:
            assert swap._a.size > a_before.size
    assert swap.stats.solves == first.steps + second.steps
    assert swap.stats.native_solves == 0
    reference = simulate(branchy, 30.0)  # NEURON alone, changed model
    assert not all(
        np.array_equal(first.traces[name], reference.traces[name]) for name in first.traces
    )  # the change matters
    assert_identical(second, reference)


@pytest.mark.parametrize("change", ["diam", "Ra"])
def test_change_during_a_run_is_picked_up(branchy, change):
    changes = [(15.0, lambda: CHANGES[change](branchy))]
    with use_dhs(backend="serial") as swap:
        run = simulate(branchy, 30.0, changes=changes)
    assert swap.stats.rebuilds == 2
    assert swap.stats.solves == run.steps
    branchy_fresh_geometry = {"diam": ("a_at_half", "diam", 1.2), "Ra": ("b_dend", "Ra", 100.0)}
    name, attribute, value = branchy_fresh_geometry[change]
    setattr(_find(branchy, name), attribute, value)  # undo, then NEURON alone
    reference = simulate(branchy, 30.0, changes=changes)
    assert_identical(run, reference)


def test_single_steps_with_fadvance(branchy):
    """Plain h.fadvance() (no stdrun) goes through the swap too."""
    with use_dhs(backend="serial") as swap:
        h.finitialize(V_INIT)
        advance_to(10.0)
    assert swap.stats.solves == steps_of(10.0)

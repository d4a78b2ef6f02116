"""``use_dhs`` and ``extract`` check their arguments at the call and warn when misused.

Against the real NEURON: a bad argument raises before anything touches NEURON; a swap
that is never installed warns once, pointing at the line that made it, and NEURON then
runs exactly as on its own; ``extract`` warns while d and rhs are not valid (before the
first ``finitialize``, or after the model's structure changed since the last one).
"""

from __future__ import annotations

import gc
import re
import sys

import numpy as np
import pytest

pytest.importorskip("neuron")

from neuron import h
from neuron import nonvint_block_supervisor as supervisor

from child_process import last_json_line
from dhs.checks import ArgumentTypeError
from neuron_bridge import DhsSolve, _nrn, extract, installed, use_dhs
from neuron_models import V_INIT, simulate

NEVER_INSTALLED = "the DHS swap created here"
NOT_VALID = "d and rhs are not yet valid"


# ------------------------------------------------------------------------ use_dhs arguments
@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"threads": 0}, ValueError, "threads must be a positive integer, got 0"),
        ({"threads": -4}, ValueError, "threads must be a positive integer, got -4"),
        ({"threads": 2.5}, ArgumentTypeError, "threads must be a positive integer, got 2.5"),
        ({"threads": True}, ArgumentTypeError, "threads must be a positive integer, got True"),
        ({"dtype": np.int32}, ValueError, "dtype must be float64 or float32, got int32"),
        ({"dtype": np.float16}, ValueError, "dtype must be float64 or float32, got float16"),
        ({"dtype": "nonsense"}, ArgumentTypeError, "dtype must be float64 or float32"),
        ({"backend": "gpu"}, ValueError, "backend must be one of ('auto', 'serial', 'cpu', "),
        ({"backend": None}, ValueError, "backend must be one of"),
        ({"shadow": "yes"}, ArgumentTypeError, "shadow must be True or False, got 'yes'"),
        ({"shadow": 1}, ArgumentTypeError, "shadow must be True or False, got 1"),
        ({"workers": 0}, ValueError, "workers must be a positive integer, got 0"),
        ({"tile": 1.5}, ArgumentTypeError, "tile must be a positive integer, got 1.5"),
        ({"tiles": 8}, TypeError, "use_dhs() got unknown option(s) ['tiles']"),
    ],
)
@pytest.mark.parametrize("make", [use_dhs, DhsSolve], ids=["use_dhs", "DhsSolve"])
def test_bad_argument_is_refused_at_the_call(
    branchy, caught_runtime_warnings, make, arguments, error, message
):
    blocks_before = list(supervisor.call)
    with caught_runtime_warnings() as messages:
        with pytest.raises(error, match=re.escape(message)):
            make(**{"backend": "serial", **arguments})
    assert messages == []  # no swap was made, so none warns about not being installed
    assert installed() is None and not _nrn.hook_pointer().value
    assert supervisor.call == blocks_before


def test_good_arguments_are_kept_in_canonical_form(clean_neuron):
    with use_dhs(backend="serial", threads=np.int64(8), dtype="float32", shadow=np.bool_(True),
                 workers=2) as swap:  # fmt: skip
        pass
    assert (swap.threads, swap.dtype, swap.shadow) == (8, np.dtype(np.float32), True)
    assert type(swap.threads) is int and type(swap.shadow) is bool
    assert swap.solver_options == {"workers": 2}


# ------------------------------------------------------------------- never installed
def _line_of(text: str) -> int:
    """The line of this file that holds ``text`` (where a warning must point)."""
    with open(__file__, encoding="utf-8") as handle:
        return next(number for number, line in enumerate(handle, 1) if text in line)


def test_a_bare_use_dhs_call_warns_once_where_it_was_made(
    branchy, native_runs, caught_runtime_warnings
):
    reference = native_runs(branchy, 20.0)
    with pytest.warns(RuntimeWarning, match="was never installed") as caught:
        use_dhs(backend="serial")  # bare call: a user who forgot `with`
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert caught[0].lineno == _line_of('use_dhs(backend="serial")  # bare call')
    assert "with use_dhs(...): h.run()" in str(caught[0].message)
    with caught_runtime_warnings() as messages:
        run = simulate(branchy, 20.0)
    assert messages == []  # said once, not again at the run
    for name, trace in reference.traces.items():  # NEURON solved by itself
        np.testing.assert_array_equal(run.traces[name], trace)


def test_a_kept_but_unused_swap_warns_once_at_the_run(branchy, caught_runtime_warnings):
    with caught_runtime_warnings() as messages:
        swap = use_dhs(backend="serial")  # kept, never installed
        made_at = _line_of('swap = use_dhs(backend="serial")  # kept, never installed')
        assert messages == []  # nothing yet: it may still be installed
    with pytest.warns(RuntimeWarning, match="not installed while h.finitialize") as caught:
        simulate(branchy, 5.0)
    never = [w for w in caught if NEVER_INSTALLED in str(w.message)]
    assert len(never) == 1 and (never[0].filename, never[0].lineno) == (__file__, made_at)
    with caught_runtime_warnings() as messages:
        simulate(branchy, 5.0)
        del swap  # collected: it has warned already
    assert messages == []


@pytest.mark.parametrize("use", ["with", "install", "failed_install"])
def test_a_swap_that_was_installed_never_warns(branchy, caught_runtime_warnings, use):
    with caught_runtime_warnings() as messages:
        if use == "with":
            with use_dhs(backend="serial") as swap:
                simulate(branchy, 2.0)
            assert swap.stats.solves > 0
            del swap
        elif use == "install":
            swap = use_dhs(backend="serial").install()
            simulate(branchy, 2.0)
            swap.uninstall()
            simulate(branchy, 2.0)
            del swap
        else:
            h.cvode_active(1)
            try:
                with pytest.raises(ValueError, match="CVode"):
                    use_dhs(backend="serial").install()  # the error says enough
            finally:
                h.cvode_active(0)
            simulate(branchy, 2.0)
    assert [message for message in messages if NEVER_INSTALLED in message] == []


def test_the_swap_object_is_collected_at_once(branchy):
    """Its callbacks hold it weakly: no reference cycle keeps an unused swap alive."""
    import weakref

    gc.disable()
    try:
        with pytest.warns(RuntimeWarning, match="never installed"):
            reference = weakref.ref(DhsSolve(backend="serial"))
        assert reference() is None  # freed by reference counting, without the collector
    finally:
        gc.enable()
    with use_dhs(backend="serial") as swap:
        simulate(branchy, 1.0)
    assert sys.getrefcount(swap) == 2  # the name and getrefcount's argument


# --------------------------------------------------------------------------- extract
def test_extract_checks_assemble(branchy):
    h.finitialize(V_INIT)
    with pytest.raises(ArgumentTypeError, match="assemble must be True or False, got 'no'"):
        extract(assemble="no")


def test_extract_warns_after_a_structure_change_until_finitialize(branchy, caught_runtime_warnings):
    h.finitialize(V_INIT)
    with caught_runtime_warnings() as messages:
        valid = extract()
    assert messages == []
    dendrite = next(section for section in branchy.sections if section.name() == "a_at1")
    dendrite.nseg += 2
    with pytest.warns(RuntimeWarning, match=re.escape(NOT_VALID)) as caught:
        stale = extract()
    assert "changed since the last h.finitialize()" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert stale.tree.n == valid.tree.n + 2  # the new nodes are there, their states are not
    h.finitialize(V_INIT)
    with caught_runtime_warnings() as messages:
        extract()
        h.fadvance()
        extract()  # time steps do not change the structure
    assert messages == []


_BEFORE_FINITIALIZE = """
import json, warnings
from neuron import h
from neuron_bridge import extract

soma = h.Section(name="soma")
soma.insert("hh")
soma.L = soma.diam = 20.0
messages = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    before = extract()
    messages.append([str(w.message) for w in caught])
    caught.clear()
    h.finitialize(-65.0)
    after = extract()
    messages.append([str(w.message) for w in caught])
print(json.dumps({"messages": messages, "d_before": list(before.d), "d_after": list(after.d)}))
"""


def test_extract_before_the_first_finitialize_warns(run_python):
    """In a fresh process, where NEURON has never initialized (``_ninits`` is 0)."""
    result = last_json_line(run_python(_BEFORE_FINITIALIZE))
    before, after = result["messages"]
    assert len(before) == 1 and NOT_VALID in before[0]
    assert "h.finitialize() has not been called yet" in before[0]
    assert after == []
    # The warning is no formality: hh's gates are set by finitialize, so d changes.
    assert result["d_before"] != result["d_after"]


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"v_init": "x"}, ArgumentTypeError, "v_init must be a finite number of mV, got 'x'"),
        ({"v_init": float("nan")}, ValueError, "v_init must be a finite number of mV, got nan"),
        ({"v_init": True}, ArgumentTypeError, "v_init must be a finite number of mV, got True"),
        ({"t_max": -1.0}, ValueError, "t_max must be a non-negative number of ms, got -1.0"),
    ],
    ids=["text", "nan", "bool", "negative"],
)
def test_export_model_checks_its_arguments_at_the_call(branchy, arguments, error, message):
    from neuron_bridge.export import export_model

    with pytest.raises(error, match=re.escape(message)):
        export_model(**arguments)


def test_export_model_follows_h_v_init_unless_given_one(branchy):
    from neuron_bridge.export import export_model

    h.v_init = -71.5
    try:
        assert export_model().v_init == -71.5
        assert export_model(-60.0).v_init == -60.0
    finally:
        h.v_init = -65.0

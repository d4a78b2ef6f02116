"""Fixtures for the NEURON bridge tests: real NEURON models, reset after every test.

Loaded for the whole suite by ``tests/conftest.py`` (``pytest_plugins``); nothing here is
autouse, so tests that do not ask for these fixtures are not affected. The model builders
and the reset live in ``neuron_models.py``.

Every model fixture depends on :func:`clean_neuron`, which resets NEURON before and after
the test (no swap installed, no sections, no leftover point processes or
LinearMechanisms, fixed step, one thread, ``optimize_node_order(0)``, ``secondorder = 0``,
``dt = 0.025`` ms, sparse13 off), so the tests can run in any order.
"""

from __future__ import annotations

import pytest
from neuron import h

from neuron_bridge import _nrn, installed
from neuron_bridge.compile_mod import load_mod_mechanisms
from neuron_models import (
    Model,
    Run,
    build_branchy,
    build_pyramid,
    mod_compiler_missing,
    reset_neuron,
    simulate,
)

h.load_file("stdrun.hoc")  # once per process (load_file does nothing the second time)


def _assert_clean() -> None:
    assert installed() is None, "a DHS swap is still installed"
    assert not _nrn.hook_pointer().value, "nrn_multisplit_solve_ is still set"
    assert not any(True for _ in h.allsec()), "sections are left"
    assert int(h.List("LinearMechanism").count()) == 0, "a LinearMechanism is left"
    assert not _nrn.uses_sparse13(), "NEURON is still on sparse13"
    assert not _nrn.cvode_active() and _nrn.thread_count() == 1


def _dirty() -> bool:
    return bool(
        installed() is not None
        or any(True for _ in h.allsec())
        or h.List("LinearMechanism").count()
        or h.List("NetCon").count()
        or _nrn.uses_sparse13()
    )


@pytest.fixture
def clean_neuron():
    """NEURON reset to its defaults before and after the test."""
    reset_neuron(collect=_dirty())
    _assert_clean()
    yield
    reset_neuron()
    _assert_clean()


@pytest.fixture(scope="session")
def ampanmda():
    """``dhs/engine/mod`` (the AmpaNmda synapse) compiled and loaded; yields the build
    folder. Skips only without nrnivmodl or a C++ compiler."""
    reason = mod_compiler_missing()
    if reason:
        pytest.skip(reason)
    return load_mod_mechanisms()


@pytest.fixture
def branchy(clean_neuron) -> Model:
    """Two cells with every kind of attachment (``neuron_models.build_branchy``)."""
    model = build_branchy()
    yield model
    model.release()  # clean_neuron's teardown, which runs next, deletes the sections


@pytest.fixture
def pyramid(clean_neuron) -> Model:
    """NEURON's demo pyramid with 1 µm segments (``neuron_models.build_pyramid``)."""
    model = build_pyramid()
    yield model
    model.release()  # clean_neuron's teardown, which runs next, deletes the sections


@pytest.fixture(params=["branchy", "pyramid"])
def model(request, clean_neuron) -> Model:
    """Each model in turn."""
    built = build_branchy() if request.param == "branchy" else build_pyramid()
    yield built
    built.release()


class NativeRuns:
    """NEURON's own runs, cached per (model, tstop, secondorder).

    The builders are deterministic and NEURON's fixed step is too, so a native run of
    a freshly built model gives the same bits every time (checked by
    ``test_uninstall_restores_native_bit_for_bit``). Runs only with no swap installed.
    """

    def __init__(self):
        self._runs: dict[tuple, Run] = {}

    def __call__(self, model: Model, tstop: float) -> Run:
        assert installed() is None, "a native run needs the swap uninstalled"
        key = (model.name, tstop, int(h.secondorder), float(h.dt))
        if key not in self._runs:
            self._runs[key] = simulate(model, tstop)
        return self._runs[key]


@pytest.fixture(scope="session")
def native_runs() -> NativeRuns:
    return NativeRuns()

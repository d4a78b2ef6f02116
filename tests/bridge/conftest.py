"""Factories for the bridge tests (``tests/bridge``).

The NEURON models and the reset between tests (``clean_neuron``, ``branchy``,
``pyramid``, ``model``, ``native_runs``) come from ``tests/support/neuron_fixtures.py``,
loaded for the whole suite by ``tests/conftest.py``.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from neuron import h

import child_process
import pyramid_cells

# =========================================================================================
# Argument checks and warnings of use_dhs and extract (test_bridge_arguments.py,
# test_bridge_swap.py, test_bridge_extract.py), and the cells of test_spines.py
# =========================================================================================


@pytest.fixture
def run_python() -> Callable:
    """``run_python(code, timeout=300)``: the code in a fresh interpreter with this checkout
    importable; returns the finished ``subprocess.CompletedProcess``."""
    return child_process.run_python


@pytest.fixture
def caught_runtime_warnings() -> Callable:
    """``with caught_runtime_warnings() as messages:`` records every RuntimeWarning raised
    inside (also those of objects collected there) as a list of message strings."""

    @contextmanager
    def catch() -> Iterator[list[str]]:
        messages: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                gc.collect()  # a swap left unreferenced warns when it is collected
                messages.extend(
                    str(warning.message) for warning in caught if warning.category is RuntimeWarning
                )

    return catch


@pytest.fixture
def passive_pyramid(clean_neuron) -> Callable:
    """``passive_pyramid(segment_length=None)``: NEURON's demo pyramid, passive everywhere
    (``pyramid_cells.passive_pyramid``), in a NEURON reset before and after the test."""
    return pyramid_cells.passive_pyramid


@pytest.fixture
def active_pyramid(clean_neuron) -> Callable:
    """``active_pyramid(segment_length=40)``: the demo pyramid with an hh soma and passive
    dendrites (``pyramid_cells.active_pyramid``)."""
    return pyramid_cells.active_pyramid


@pytest.fixture
def no_hh_tables(clean_neuron) -> Iterator[None]:
    """``usetable_hh = 0`` for the test (hh's rate tables off), 1 again afterwards."""
    h.usetable_hh = 0
    yield
    h.usetable_hh = 1


# ======================================================================= end of that block

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

import child_process

# =========================================================================================
# Argument checks and warnings of use_dhs and extract (test_bridge_arguments.py,
# test_bridge_swap.py, test_bridge_extract.py)
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


# ======================================================================= end of that block

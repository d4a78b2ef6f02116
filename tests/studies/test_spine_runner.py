"""The runner of the spine study (``studies.spines.runner``).

A tiny experiment (``TINY_SETUP`` and ``TINY_PROTOCOL`` of ``conftest.py``: the pyramid
with 40 µm segments, 0.3 spines per µm, hh in the soma and weak hh in the proximal
dendrites, AmpaNmda synapses on spine heads, Poisson background) run on the engine, one
instance per trial, and natively in NEURON trial by trial with only that trial's
synapses (few-spine: only that trial's explicit spines): the same spikes in every
trial, and somatic potentials within 1e-6 mV. For the few-spine model this checks that
the pool's unused spines, made membrane-less in the engine, are invisible.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from paths import ROOT
from studies.spines.statistics import spiked_in_window

V_TOLERANCE = 1e-6  # mV
SPIKE_TOLERANCE = 1e-3  # ms


@pytest.mark.parametrize("model", ["few", "full"])
def test_engine_matches_neuron_trial_by_trial(make_experiment, model):
    """Three trials of 4, 12 and 40 distributed synapses and three of 4, 12 and 40
    clustered ones: the engine (one instance per trial, all trials on one pool model)
    and NEURON (one model per trial) give the same somatic spikes, and potentials within
    1e-6 mV. Both outcomes occur."""
    experiment = make_experiment()
    outcomes = []
    for pattern in ("distributed", "clustered"):
        active = [experiment.active_sites(pattern, n, 1)[0] for n in (4, 12, 40)]
        run = experiment.run_count(model, pattern, 40, 3, backend="cpu", active=active)
        result, inputs = run["result"], run["inputs"]
        assert run["backend"] == "cpu"
        if model == "few":
            assert run["n_synapses"] == inputs.n_synapses < len(experiment.sites)
        for trial in range(3):
            native = experiment.run_native(model, inputs, trial)
            engine_spikes = result.spikes[trial]
            assert engine_spikes.size == native.spikes.size, (pattern, trial)
            assert np.abs(engine_spikes - native.spikes).max(initial=0.0) < SPIKE_TOLERANCE
            sampled = native.soma_v[:: experiment.protocol.record_every]
            difference = np.abs(result.v[trial, 0] - sampled).max()
            assert difference <= V_TOLERANCE, (pattern, trial, difference)
            outcomes.append(bool(spiked_in_window([native.spikes], 8.0, 25.0)[0]))
    assert any(outcomes) and not all(outcomes), outcomes


def test_the_bridge_holds_no_study_code():
    """``neuron_bridge`` neither imports nor re-exports the study (a fresh process)."""
    code = (
        "import sys, neuron_bridge; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'studies'], 'studies imported'; "
        "from pathlib import Path; "
        "assert not (Path(neuron_bridge.__file__).parent / 'spine_experiment.py').exists(); "
        "assert not hasattr(neuron_bridge, 'SpineExperiment')"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

"""The runner of the spine study (``studies.spines.runner``).

A tiny experiment (``TINY_SETUP`` and ``TINY_PROTOCOL`` of ``conftest.py``: the pyramid
with 40 µm segments, 0.3 spines per µm, hh in the soma and weak hh in the proximal
dendrites, AmpaNmda synapses on spine heads, Poisson background) run on the engine
(full-spine: one instance per trial on the model with a spine everywhere and the
synapses of its group of trials; few-spine: one single-instance engine per trial, on the
model with a spine at every site without the spines the trial does not use, both
``CellModel.subset``) and natively in NEURON trial by trial with only that
trial's synapses (few-spine: only that trial's explicit spines): the same spikes and the
same somatic potentials, bit for bit, in every trial. ``run_condition`` runs every count
of a condition in one ``Batch`` and gives each trial what ``run_count`` gives it alone.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from paths import ROOT
from studies.spines import runner
from studies.spines.statistics import spiked_in_window


@pytest.mark.parametrize("model", ["few", "full"])
def test_engine_matches_neuron_trial_by_trial(make_experiment, model, monkeypatch):
    """Three trials of 4, 12 and 40 distributed synapses and three of 4, 12 and 40
    clustered ones: the engine (run together in one Batch; full-spine in groups of two
    trials, each engine with its group's synapses only) and NEURON (one model per trial)
    give the same somatic spikes and potentials, bit for bit. Both outcomes occur."""
    monkeypatch.setattr(runner, "FULL_SPINE_GROUP", 2)
    experiment = make_experiment()
    outcomes = []
    for pattern in ("distributed", "clustered"):
        active = [experiment.active_sites(pattern, n, 1)[0] for n in (4, 12, 40)]
        run = experiment.run_count(model, pattern, 40, 3, backend="cpu", active=active)
        inputs = run["inputs"]
        assert run["backend"] == "cpu"
        n_background = experiment.protocol.n_background
        if model == "few":
            used = [n_background + a.size for a in active]
            assert run["n_synapses"].tolist() == used
            assert np.all(np.diff(run["n_nodes"]) == 4 * np.diff(used))  # 4 rows a spine
        else:  # trials 0 and 1 share an engine, trial 2 has one of its own
            assert run["n_synapses"].tolist() == [
                np.union1d(np.union1d(*inputs.active[:2]), inputs.background).size
            ] * 2 + [n_background + active[2].size]
        for trial in range(3):
            native = experiment.run_native(model, inputs, trial)
            assert native.n_nodes == run["n_nodes"][trial]
            assert np.array_equal(run["spikes"][trial], native.spikes), (pattern, trial)
            sampled = native.soma_v[:: experiment.protocol.record_every]
            difference = np.abs(run["v"][trial, 0] - sampled).max()
            assert difference == 0.0, (pattern, trial, difference)
            outcomes.append(bool(spiked_in_window([native.spikes], 8.0, 25.0)[0]))
    assert any(outcomes) and not all(outcomes), outcomes


@pytest.mark.parametrize("model", ["few", "full"])
def test_condition_in_one_batch_equals_counts_alone(make_experiment, model):
    """``run_condition`` (both counts in one Batch) gives every trial the potentials
    and spikes ``run_count`` gives it alone; the result's shapes and its summary."""
    experiment = make_experiment()
    counts, trials = [4, 12], 2
    condition = experiment.run_condition(model, "distributed", counts, trials, backend="cpu")
    assert condition.soma_v.shape[:2] == (2, trials)
    assert condition.n_nodes.shape == condition.n_synapses.shape == (2, trials)
    assert condition.build_seconds.shape == (2,) and condition.run_seconds > 0
    for row, count in enumerate(counts):
        alone = experiment.run_count(model, "distributed", count, trials, backend="cpu")
        assert np.array_equal(condition.soma_v[row], alone["v"][:, 0])
        assert np.array_equal(condition.n_nodes[row], alone["n_nodes"])
        spiked = spiked_in_window(alone["spikes"], 8.0, 25.0)
        assert np.array_equal(condition.spiked[row], spiked)
    summary = condition.summary()
    assert summary["n_nodes"] == condition.n_nodes.tolist()
    assert summary["engine_run_seconds"] == condition.run_seconds


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

"""The spine experiment (``neuron_bridge.spine_experiment``).

* The analysis on known data: the 50 % threshold of a logistic curve and of a clean
  step, Wilson intervals, spikes in a window.
* The input patterns of the experiment: counts, no repeats, no background sites,
  clusters within their length, reproducible from the seed.
* A tiny experiment (the pyramid with 40 µm segments, 0.3 spines per µm, hh in the soma
  and weak hh in the proximal dendrites, AmpaNmda synapses on spine heads, Poisson
  background) run on the engine, one instance per trial, and natively in NEURON trial
  by trial with only that trial's synapses (few-spine: only that trial's explicit
  spines): the same spikes in every trial, and somatic potentials within 1e-6 mV. For
  the few-spine model this checks that the pool's unused spines, made membrane-less in
  the engine, are invisible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuron_bridge.spine_experiment import (
    CellSetup,
    Protocol,
    SpineExperiment,
    build_cell,
    draw_active,
    paired_comparison,
    site_coordinates,
    spiked_in_window,
    threshold_50,
    threshold_interval,
    wilson_interval,
)
from neuron_bridge.spines import SpineParameters, spine_sites

V_TOLERANCE = 1e-6  # mV
SPIKE_TOLERANCE = 1e-3  # ms


# ----------------------------------------------------------------------- analysis
def test_threshold_of_a_logistic_curve():
    """Exact logistic proportions (n50 = 117, scale 12) give back n50; with binomial
    noise on 400 trials per count the estimate lies within a few synapses and inside
    its bootstrap interval."""
    counts = np.arange(40, 241, 20)
    p = 1 / (1 + np.exp(-(counts - 117.0) / 12.0))
    n = 10**6
    assert threshold_50(counts, p * n, n) == pytest.approx(117.0, abs=0.05)
    k = np.random.default_rng(5).binomial(400, p)
    estimate = threshold_50(counts, k, 400)
    assert abs(estimate - 117.0) < 3.0
    low, high = threshold_interval(counts, k, 400, resamples=100)
    assert low < estimate < high and high - low < 10.0


def test_threshold_of_a_step_and_of_no_crossing():
    """A clean step from none to all: the midpoint of the step; also when it starts at
    the first count. No spike at all, or spikes in every trial: nan."""
    counts = [20, 40, 60, 80]
    assert threshold_50(counts, [0, 0, 10, 10], 10) == 50.0
    assert threshold_50(counts, [10, 10, 10, 10], 10) != threshold_50(counts, [0, 10, 10, 10], 10)
    assert threshold_50(counts, [0, 10, 10, 10], 10) == 30.0
    assert math.isnan(threshold_50(counts, [0, 0, 0, 0], 10))
    assert math.isnan(threshold_50(counts, [10, 10, 10, 10], 10))
    # a step with a dip is not clean: the logistic fit, between the extremes
    assert 30.0 < threshold_50(counts, [0, 10, 0, 10], 10) < 80.0
    with pytest.raises(ValueError, match="increase"):
        threshold_50([40, 20], [0, 1], 1)
    with pytest.raises(ValueError, match="k <= n"):
        threshold_50([20, 40], [0, 3], 2)


def test_wilson_interval_and_spike_window():
    low, high = wilson_interval([0, 5, 10], 10)
    assert low[0] == 0.0 and high[0] == pytest.approx(0.2775, abs=1e-4)
    assert (low[1], high[1]) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert high[2] == pytest.approx(1.0) and low[2] == pytest.approx(0.7225, abs=1e-4)
    spikes = [np.array([]), np.array([10.0]), np.array([30.0 + 1e-10]), np.array([5.0, 56.0])]
    assert spiked_in_window(spikes, 30.0, 55.0).tolist() == [False, False, True, False]
    assert spiked_in_window(spikes, -math.inf, 30.0).tolist() == [False, True, False, True]


def test_paired_comparison():
    """Discordant trials counted each way; the exact sign test: 9 against 1 gives
    p = 22/1024 (two-sided), no discordant trial gives 1."""
    a = np.array([[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0]], dtype=bool)
    b = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]], dtype=bool)
    result = paired_comparison(a, b)
    assert (result["only_a"], result["only_b"]) == (9, 1)
    assert result["p_value"] == pytest.approx(22 / 1024)
    assert paired_comparison(a, a) == {"only_a": 0, "only_b": 0, "p_value": 1.0}
    with pytest.raises(ValueError, match="shape"):
        paired_comparison(a, b[:, :3])


def test_settings_are_checked():
    with pytest.raises(ValueError, match="spike_window"):
        Protocol(spike_window=0.0)
    with pytest.raises(ValueError, match="cluster_size"):
        Protocol(cluster_size=0)
    with pytest.raises(ValueError, match="activation_weight"):
        Protocol(activation_weight=-1e-3)
    with pytest.raises(ValueError, match="dendritic_hh"):
        CellSetup(dendritic_hh=-0.1)
    assert Protocol(activation_time=30.0, spike_window=25.0).tstop == 55.0
    assert Protocol(activation_weight=2e-4).weight_background == 2e-4


# ----------------------------------------------------------------------- patterns
def test_draw_active(clean_neuron):
    """Distributed and clustered draws: counts, distinct candidate sites, clusters of
    cluster_size (and one remainder) each within cluster_length, reproducible."""
    cell = build_cell(CellSetup(segment_length=40.0))
    sites = spine_sites(cell, seed=2)
    candidates = np.arange(0, len(sites), 2)
    for pattern in ("distributed", "clustered"):
        draws = draw_active(
            sites,
            pattern,
            45,
            3,
            np.random.default_rng(8),
            candidates=candidates,
            cluster_size=20,
            cluster_length=20.0,
        )
        again = draw_active(
            sites,
            pattern,
            45,
            3,
            np.random.default_rng(8),
            candidates=candidates,
            cluster_size=20,
            cluster_length=20.0,
        )
        for chosen, same in zip(draws, again, strict=True):
            assert np.array_equal(chosen, same)
            assert chosen.size == 45 and np.unique(chosen).size == 45
            assert np.isin(chosen, candidates).all()
    # every site of a clustered draw is within 20 µm of at least 19 others (its cluster)
    for chosen in draws:
        near = [
            int(np.count_nonzero(sites.subset(chosen).distance_from(int(s), float(x)) <= 20.0))
            for s, x in zip(sites.section[chosen], sites.x[chosen], strict=True)
        ]
        assert min(near) >= 5  # the remainder cluster has 5 sites
        assert sorted(near)[-40] >= 20
    xyz = site_coordinates(cell, sites.subset(draws[0]))
    assert xyz.shape == (45, 3) and np.isfinite(xyz).all()
    with pytest.raises(ValueError, match="pattern"):
        draw_active(sites, "random", 5, 1, np.random.default_rng(0))
    cell.delete()


# ----------------------------------------------------------------------- engine vs NEURON
@pytest.fixture
def tiny_experiment(clean_neuron, ampanmda):
    setup = CellSetup(
        segment_length=40.0,
        dendritic_hh=0.3,
        dendritic_hh_distance=150.0,
        spines=SpineParameters(density=0.3),
    )
    protocol = Protocol(
        activation_weight=0.002,
        nmda_ratio=1.5,
        n_background=20,
        background_rate_hz=40.0,
        activation_time=8.0,
        spike_window=17.0,
        cluster_size=4,
        cluster_length=30.0,
        seed=3,
    )
    experiment = SpineExperiment(setup, protocol)
    yield experiment
    experiment.delete()


@pytest.mark.parametrize("model", ["few", "full"])
def test_engine_matches_neuron_trial_by_trial(tiny_experiment, model):
    """Three trials of 4, 12 and 40 distributed synapses and three of 4, 12 and 40
    clustered ones: the engine (one instance per trial, all trials on one pool model)
    and NEURON (one model per trial) give the same somatic spikes, and potentials within
    1e-6 mV. Both outcomes occur."""
    experiment = tiny_experiment
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

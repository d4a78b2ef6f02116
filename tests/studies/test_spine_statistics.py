"""Statistics of the spine study (``studies.spines.statistics``) on known data: the 50 %
threshold of a logistic curve and of a clean step, Wilson intervals, spikes in a window,
the exact sign test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from studies.spines.statistics import (
    paired_comparison,
    spiked_in_window,
    threshold_50,
    threshold_interval,
    wilson_interval,
)


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

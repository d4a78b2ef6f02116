"""Sampling of the spine study (``studies.spines.sampling``): the activated sites of
distributed and clustered trials (counts, no repeats, only candidate sites, clusters
within their length, reproducible from the seed) and the background sites."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_bridge.spines import spine_sites
from studies.spines.sampling import draw_active, draw_background


def test_draw_active(make_cell):
    """Distributed and clustered draws: counts, distinct candidate sites, clusters of
    cluster_size (and one remainder) each within cluster_length, reproducible."""
    cell = make_cell(segment_length=40.0)
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
    with pytest.raises(ValueError, match="pattern"):
        draw_active(sites, "random", 5, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="candidate sites"):
        draw_active(sites, "distributed", 5, 1, np.random.default_rng(0), candidates=[1, 2])


def test_background_sites(make_experiment):
    """Distinct, sorted, reproducible from the seed, and never candidates for
    activation: background and candidates split the experiment's sites."""
    experiment = make_experiment()
    background = experiment.background
    n_sites = len(experiment.sites)
    assert background.size == experiment.protocol.n_background
    assert np.all(np.diff(background) > 0) and 0 <= background[0] and background[-1] < n_sites
    assert np.array_equal(background, draw_background(n_sites, background.size, seed=3))
    assert not np.array_equal(background, draw_background(n_sites, background.size, seed=4))
    together = np.sort(np.concatenate([background, experiment.candidates]))
    assert np.array_equal(together, np.arange(n_sites))
    for pattern in ("distributed", "clustered"):
        for chosen in experiment.active_sites(pattern, 12, 3):
            assert not np.isin(chosen, background).any()

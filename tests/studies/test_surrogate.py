"""The surrogate-data recipe (``studies/surrogate``): a Zarr dataset of random synaptic
input patterns on a detailed cell, checked against NEURON itself."""

from __future__ import annotations

import numpy as np


def test_surrogate_dataset_matches_neuron(tmp_path, clean_neuron):
    """studies/surrogate: 1,000 trials of random input on NEURON's demo pyramid (50 µm
    segments, 10 ExpSyn at 20 Hz, 50 ms) into a Zarr dataset; four trials re-run in
    NEURON with the same trains through NetCon.event give the same trace (0.0 mV) and
    spikes, and the stored trains are the ones the trials got."""
    from studies.surrogate import (
        SurrogateSettings,
        build_cell,
        input_raster,
        make_dataset,
        neuron_trial,
        open_dataset,
    )
    from studies.surrogate.recipe import input_pattern

    settings = SurrogateSettings(segment_length=50.0, n_synapses=10, tstop=50.0, weight=0.01,
                                 rate_hz=20.0, max_spikes=20)  # fmt: skip
    cell = build_cell(settings)
    try:
        store = str(tmp_path / "surrogate.zarr")
        _, seconds = make_dataset(store, 1000, settings, cell=cell, progress=False)
        assert seconds < 60.0
        view = open_dataset(store)
        assert dict(view.sizes) == {"trial": 1000, "time": 501, "spike": 20, "synapse": 10,
                                    "input_spike": settings.input_capacity}  # fmt: skip
        assert bool(view["finished"].all())
        counts = view["spike_count"].values
        assert 0.1 < (counts > 0).mean() < 0.9  # some trials spike, some do not
        assert view.attrs["surrogate"]["synapse_rows"] == list(cell.rows)
        pattern = input_pattern(cell)
        for trial in (0, 1, 500, 999):
            v, spikes = neuron_trial(cell, trial)
            assert np.abs(view["soma_v"][trial].values - v).max() == 0.0
            assert np.array_equal(view["spike_times"][trial, : counts[trial]].values, spikes)
            stored = view["input_times"][trial].values
            for s, train in enumerate(pattern.trains(trial)):
                assert view["input_count"][trial, s] == train.size
                assert np.array_equal(stored[s, : train.size], train)
        raster = input_raster(view["input_times"][:5].values, settings.tstop, 1.0)
        assert raster.shape == (5, 10, 50)
        assert raster.sum(axis=-1).tolist() == view["input_count"][:5].values.tolist()
    finally:
        cell.delete()

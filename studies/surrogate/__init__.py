"""Surrogate training data: many random synaptic input patterns on NEURON's demo pyramid,
run by :func:`dhs.engine.sweep` into a Zarr dataset of (input trains, somatic voltage,
spikes); ``README.md`` describes the recipe, the layout and the measured times.

* :mod:`~studies.surrogate.recipe`: the settings, the cell, the inputs, the dataset and
  its xarray view, one trial in NEURON;
* :mod:`~studies.surrogate.scheduler_timing`: the in-process loop against a local Dask
  cluster (the measurement behind the sweep's default).
"""

from .recipe import (
    InputPattern,
    SurrogateCell,
    SurrogateSettings,
    build_cell,
    input_raster,
    make_dataset,
    neuron_trial,
    open_dataset,
)

__all__ = [
    "InputPattern",
    "SurrogateCell",
    "SurrogateSettings",
    "build_cell",
    "input_raster",
    "make_dataset",
    "neuron_trial",
    "open_dataset",
]

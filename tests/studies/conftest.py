"""Factories for the study tests (``studies/``).

``make_cell`` builds the spine study's cell, ``make_experiment`` a
:class:`studies.spines.SpineExperiment` (the tiny one of :data:`TINY_SETUP` and
:data:`TINY_PROTOCOL` unless told otherwise); both delete what they built after the
test, before :func:`clean_neuron` checks that NEURON is clean.
"""

from __future__ import annotations

import pytest

from neuron_bridge.morphology import Cell
from neuron_bridge.spines import SpineParameters
from studies.spines import CellSetup, Protocol, SpineExperiment, build_cell

# The pyramid with 40 µm segments, 0.3 spines per µm, hh in the soma and weak hh in the
# proximal dendrites: a few hundred spine sites, runs in seconds.
TINY_SETUP = {
    "segment_length": 40.0,
    "dendritic_hh": 0.3,
    "dendritic_hh_distance": 150.0,
    "spines": SpineParameters(density=0.3),
}
# Strong synapses and a dense background, so that both outcomes occur in a few trials.
TINY_PROTOCOL = {
    "activation_weight": 0.002,
    "nmda_ratio": 1.5,
    "n_background": 20,
    "background_rate_hz": 40.0,
    "activation_time": 8.0,
    "spike_window": 17.0,
    "cluster_size": 4,
    "cluster_length": 30.0,
    "seed": 3,
}


@pytest.fixture
def make_cell(clean_neuron):
    """``make_cell(**settings)``: :func:`studies.spines.build_cell` of
    ``CellSetup(**settings)``."""
    made: list[Cell] = []

    def make(**settings) -> Cell:
        cell = build_cell(CellSetup(**settings))
        made.append(cell)
        return cell

    yield make
    for cell in made:
        cell.delete()


@pytest.fixture
def make_experiment(clean_neuron, ampanmda):
    """``make_experiment(setup=None, protocol=None)``: a :class:`SpineExperiment` with
    :data:`TINY_SETUP` and :data:`TINY_PROTOCOL`, updated by the given dicts."""
    made: list[SpineExperiment] = []

    def make(setup: dict | None = None, protocol: dict | None = None) -> SpineExperiment:
        experiment = SpineExperiment(
            CellSetup(**{**TINY_SETUP, **(setup or {})}),
            Protocol(**{**TINY_PROTOCOL, **(protocol or {})}),
        )
        made.append(experiment)
        return experiment

    yield make
    for experiment in made:
        experiment.delete()

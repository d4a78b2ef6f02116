"""neuron_bridge: NEURON models on the DHS solver.

* :func:`load_morphology` and :func:`discretize` build a cell from SWC, Neurolucida
  ASC or hoc files (by default the pyramidal cell that ships with NEURON);
* :func:`extract` reads NEURON's Hines matrix for the current model;
* :func:`use_dhs` swaps NEURON's fixed-step tree solve for :class:`dhs.Solver`.

This package depends on :mod:`dhs`; :mod:`dhs` never imports it.
"""

from .export import export_model, netstim_spike_times
from .extract import HinesSystem, NodeMap, extract, node_map
from .morphology import (
    Cell,
    default_morphology_path,
    discretize,
    lambda_f,
    load_morphology,
    node_count,
)
from .swap import DhsSolve, SolveStats, check_preconditions, installed, use_dhs

__all__ = [
    "Cell",
    "DhsSolve",
    "HinesSystem",
    "NodeMap",
    "SolveStats",
    "check_preconditions",
    "default_morphology_path",
    "discretize",
    "export_model",
    "extract",
    "installed",
    "lambda_f",
    "load_morphology",
    "netstim_spike_times",
    "node_count",
    "node_map",
    "use_dhs",
]

"""neuron_bridge: NEURON models on the DHS solver.

* :func:`load_morphology` and :func:`discretize` build a cell from SWC, Neurolucida
  ASC or hoc files (by default the pyramidal cell that ships with NEURON);
* :func:`extract` reads NEURON's Hines matrix for the current model;
* :func:`use_dhs` swaps NEURON's fixed-step tree solve for :class:`dhs.Solver`;
* :mod:`neuron_bridge.spines` adds explicit dendritic spines (or the F-factor) to any
  cell, and :mod:`neuron_bridge.patterns` draws clustered and distributed synapse sites
  and the per-trial input that the engine and NEURON both receive.

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
from .patterns import (
    NeuronEvents,
    SectionTree,
    Sites,
    TrialInputs,
    clustered,
    distributed,
    synapse_rows,
    trial_inputs,
)
from .spines import (
    FFactor,
    SpineParameters,
    Spines,
    add_spines,
    add_spines_at,
    apply_f_factor,
    area_matched_f_factor,
    qualifying_length,
    section_tree,
    spine_sites,
    spine_synapses,
)
from .swap import DhsSolve, SolveStats, check_preconditions, installed, use_dhs

__all__ = [
    "Cell",
    "DhsSolve",
    "EngineEvaluator",
    "FFactor",
    "HinesSystem",
    "NeuronEvents",
    "NodeMap",
    "SectionTree",
    "Sites",
    "SolveStats",
    "SpineParameters",
    "Spines",
    "TrialInputs",
    "add_spines",
    "add_spines_at",
    "apply_f_factor",
    "area_matched_f_factor",
    "check_preconditions",
    "clustered",
    "default_morphology_path",
    "discretize",
    "distributed",
    "export_model",
    "extract",
    "installed",
    "lambda_f",
    "load_morphology",
    "netstim_spike_times",
    "node_count",
    "node_map",
    "qualifying_length",
    "section_tree",
    "spine_sites",
    "spine_synapses",
    "synapse_rows",
    "trial_inputs",
    "use_dhs",
]


def __getattr__(name: str):
    """:class:`EngineEvaluator` on first use: it needs BluePyOpt (the ``fit`` extra), which
    importing this package does not."""
    if name == "EngineEvaluator":
        from .fit import EngineEvaluator

        return EngineEvaluator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The spine study: DeepDendrite's spine experiment (Zhang et al. 2023, Fig. 5) on any
cell, on the batched engine; ``notebooks/spine_input_patterns.ipynb`` drives it and
``DESIGN.md`` describes it.

* :mod:`~studies.spines.settings`: the cell and trial settings (:class:`CellSetup`,
  :class:`Protocol`);
* :mod:`~studies.spines.cell`: the cell with its membrane (:func:`build_cell`);
* :mod:`~studies.spines.sampling`: activated and background sites, seeds;
* :mod:`~studies.spines.runner`: :class:`SpineExperiment`, the trials on the engine
  and in NEURON;
* :mod:`~studies.spines.statistics`: spike probability, thresholds, paired tests;
* :mod:`~studies.spines.plots`: the morphology with its spine sites.

Its general tools (spines, input sites and patterns) are in :mod:`neuron_bridge`.
"""

from .cell import build_cell, set_membrane
from .plots import draw_morphology, site_coordinates
from .runner import ConditionResult, NativeTrial, SpineExperiment
from .sampling import draw_active, draw_background, pattern_stream
from .settings import MODELS, PATTERNS, CellSetup, Protocol, protocol_dict
from .statistics import (
    paired_comparison,
    spiked_in_window,
    threshold_50,
    threshold_interval,
    wilson_interval,
)

__all__ = [
    "MODELS",
    "PATTERNS",
    "CellSetup",
    "ConditionResult",
    "NativeTrial",
    "Protocol",
    "SpineExperiment",
    "build_cell",
    "draw_active",
    "draw_background",
    "draw_morphology",
    "paired_comparison",
    "pattern_stream",
    "protocol_dict",
    "set_membrane",
    "site_coordinates",
    "spiked_in_window",
    "threshold_50",
    "threshold_interval",
    "wilson_interval",
]

"""dhs: Dendritic Hierarchical Scheduling for exact Hines solves on CPU and GPU.

The matrix convention (NEURON's) is documented once, in :mod:`dhs.matrix`.
"""

from .backends import gpu_available, resolve_backend
from .layout import Layout, dhs_layout
from .matrix import to_dense
from .schedule import Schedule, breadth_first_level_steps, lower_bound, schedule
from .solver import Solver, solve
from .tree import Tree

__all__ = [
    "Layout",
    "Schedule",
    "Solver",
    "Tree",
    "breadth_first_level_steps",
    "dhs_layout",
    "gpu_available",
    "lower_bound",
    "resolve_backend",
    "schedule",
    "solve",
    "to_dense",
]

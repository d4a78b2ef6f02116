"""dhs.engine: many instances of one cell model with NEURON's exact fixed step.

* :class:`CellModel` (:mod:`dhs.engine.model`): a NEURON-free description of a model
  (topology, NEURON's matrix coefficients, pas/hh/IClamp/ExpSyn/Exp2Syn and the
  AmpaNmda of ``neuron_bridge/mod``, synaptic events), savable with ``np.savez``.
  ``neuron_bridge.export.export_model()`` makes one from a live NEURON session.
* :class:`Engine` (:mod:`dhs.engine.integrate`): runs ``n_instances`` copies, each with
  its own parameters and synaptic events, on the CPU with Numba, node-major and parallel
  over instances, reproducing NEURON's voltage traces to round-off.
* :func:`sweep` (:mod:`dhs.engine.sweep`): a parameter sweep run in chunks sized to the
  memory, each chunk written to disk, so an interrupted sweep resumes where it stopped;
  :func:`load_sweep` assembles the results.

This subpackage does not import NEURON.
"""

from .integrate import Engine, RunResult, time_grid
from .model import MECHANISMS, SYNAPSES, CellModel, MechanismTable, SynapticEvents, load_model
from .sweep import SweepResult, estimate_bytes_per_instance, load_sweep, sweep

__all__ = [
    "MECHANISMS",
    "SYNAPSES",
    "CellModel",
    "Engine",
    "MechanismTable",
    "RunResult",
    "SweepResult",
    "SynapticEvents",
    "estimate_bytes_per_instance",
    "load_model",
    "load_sweep",
    "sweep",
    "time_grid",
]

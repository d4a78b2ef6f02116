"""dhs.engine: many instances of one cell model with NEURON's exact fixed step.

* :class:`CellModel` (:mod:`dhs.engine.model`): a NEURON-free description of a model
  (topology, NEURON's matrix coefficients, its mechanisms as ``.mod`` texts with their
  parameters, ions, synaptic events), savable with ``np.savez``.
  ``neuron_bridge.export.export_model()`` makes one from a live NEURON session.
* :class:`Mechanism` (:mod:`dhs.engine.mechanism`): one ``.mod`` file translated to
  scalar functions (:mod:`dhs.engine.nmodl`), the one description everything else is
  derived from.
* :class:`Engine` (:mod:`dhs.engine.integrate`): runs ``n_instances`` copies, each with
  its own parameters and synaptic events, with a time loop generated for the model's
  mechanisms (:mod:`dhs.engine.kernel`), on the CPU or on CUDA.
* :func:`sweep` (:mod:`dhs.engine.sweep`): a parameter sweep run in chunks sized to the
  memory, in this process or as Dask tasks on any cluster, each chunk written to a Zarr
  store (:mod:`dhs.engine.sweep_store`) as it finishes, so an interrupted sweep resumes
  where it stopped; :func:`load_sweep` reads it, and so do plain Zarr and xarray.

Design notes: ``dhs/engine/DESIGN.md``; sweeps: ``dhs/engine/SWEEPS.md``.
"""

from .integrate import Batch, Engine, RunResult, time_grid
from .mechanism import Mechanism, builtin, from_source
from .model import CellModel, IonTable, MechanismTable, SynapticEvents, load_model
from .nmodl.parse import NmodlError
from .options import RunOptions
from .sweep import (
    ExtraArray,
    SweepResult,
    estimate_bytes_per_instance,
    finished_chunks,
    load_sweep,
    sweep,
)

__all__ = [
    "Batch",
    "CellModel",
    "Engine",
    "ExtraArray",
    "IonTable",
    "Mechanism",
    "MechanismTable",
    "NmodlError",
    "RunOptions",
    "RunResult",
    "SweepResult",
    "SynapticEvents",
    "builtin",
    "estimate_bytes_per_instance",
    "finished_chunks",
    "from_source",
    "load_model",
    "load_sweep",
    "sweep",
    "time_grid",
]

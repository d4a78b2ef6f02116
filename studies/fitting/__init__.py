"""Fitting study: BluePyOpt's L5PC optimisation with :class:`neuron_bridge.fit.EngineEvaluator`
as the simulator (``README.md``).

* :mod:`~studies.fitting.l5pc`: the L5PC problem, built by BluePyOpt's own example code
  (:func:`l5pc_problem`);
* ``l5pc_optimisation.py``: the optimisation (DEAPOptimisation, one engine run per protocol
  and generation);
* ``benchmark.py``: a population evaluated by BluePyOpt's NEURON evaluator on a process
  pool and by the engine, side by side.
"""

from .l5pc import L5pcProblem, example_folder, l5pc_problem, shortened_protocols

__all__ = ["L5pcProblem", "example_folder", "l5pc_problem", "shortened_protocols"]

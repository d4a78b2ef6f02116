"""Benchmarks and demos of dhs and neuron_bridge: scripts, not library code.

Nothing under ``dhs/`` or ``neuron_bridge/`` imports this package. Run them with
``python3 tasks.py demo|bench|gpu`` or the ``dhs-bench`` command (``dhs-bench --help``).
Results go to ``data/benchmarks/`` as JSON with machine and device information.
"""

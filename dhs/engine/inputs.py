"""Seeded synaptic input: Poisson spike trains that NEURON and the engine both receive.

The times depend only on ``(seed, instance)`` and the number of synapses, never on how
many instances run together, the chunking or the backend, so a trial can be re-run on
its own (in the engine or in NEURON, e.g. with ``NetCon.event``) and gets the very same
input.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["poisson_times"]


def poisson_times(
    rate_hz: float,
    start: float,
    stop: float,
    *,
    seed: int,
    instance: int,
    n_synapses: int,
) -> list[np.ndarray]:
    """Independent homogeneous Poisson spike trains, one per synapse.

    Parameters
    ----------
    rate_hz : float
        Mean rate of each train in Hz (spikes per second).
    start, stop : float
        The trains cover ``[start, stop)`` in ms.
    seed : int
        Seed of the experiment (non-negative).
    instance : int
        Instance (trial) index; together with ``seed`` it seeds one generator
        (``numpy.random.default_rng([seed, instance])``).
    n_synapses : int
        Number of trains.

    Returns
    -------
    list of ndarray
        ``n_synapses`` sorted arrays of times in ms.

    Notes
    -----
    Each train has a Poisson-distributed count with mean ``rate_hz * (stop - start) /
    1000`` and its times uniform on ``[start, stop)``, which is a homogeneous Poisson
    process on that interval.
    """
    for name, value in (("rate_hz", rate_hz), ("start", start), ("stop", stop)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if rate_hz < 0:
        raise ValueError(f"rate_hz must be >= 0, got {rate_hz}")
    if stop < start:
        raise ValueError(f"stop ({stop} ms) must not be before start ({start} ms)")
    for name, value in (("seed", seed), ("instance", instance), ("n_synapses", n_synapses)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    rng = np.random.default_rng([int(seed), int(instance)])
    counts = rng.poisson(rate_hz * (stop - start) / 1000.0, size=int(n_synapses))
    times = rng.uniform(start, stop, size=int(counts.sum()))
    bounds = np.concatenate(([0], np.cumsum(counts)))
    return [np.sort(times[bounds[s] : bounds[s + 1]]) for s in range(int(n_synapses))]

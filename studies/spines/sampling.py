"""Sampling of the spine study: which spine sites a trial activates, which are the
background sites, and the seeds of every draw (``DESIGN.md``, Random numbers)."""

from __future__ import annotations

import numpy as np

from neuron_bridge.patterns import Sites, clustered

from .settings import PATTERNS

__all__ = ["BACKGROUND_STREAM", "draw_active", "draw_background", "pattern_stream"]

BACKGROUND_STREAM = 1_000_003  # seeds the background sites: [seed, this]


def pattern_stream(seed: int, pattern: str, count: int) -> list[int]:
    """The seed (a :class:`numpy.random.SeedSequence` entropy) of the activated sites
    and background trains of one (pattern, count)."""
    return [seed, PATTERNS.index(pattern), int(count)]


def draw_background(n_sites: int, n_background: int, seed: int) -> np.ndarray:
    """``n_background`` distinct site indices out of ``n_sites``, sorted (int64): the
    background sites, the same in every trial and condition."""
    rng = np.random.default_rng([seed, BACKGROUND_STREAM])
    return np.sort(rng.choice(n_sites, size=n_background, replace=False)).astype(np.int64)


def draw_active(
    sites: Sites,
    pattern: str,
    count: int,
    trials: int,
    rng: np.random.Generator,
    *,
    candidates=None,
    cluster_size: int = 20,
    cluster_length: float = 20.0,
) -> list[np.ndarray]:
    """The activated sites of each trial.

    Parameters
    ----------
    sites : Sites
        Every spine site.
    pattern : {"distributed", "clustered"}
    count : int
        Sites per trial.
    trials : int
    rng : numpy Generator
    candidates : array_like of int, optional
        Indices into ``sites`` that may be activated (default all).
    cluster_size, cluster_length : int, float
        Clustered pattern: ``count // cluster_size`` clusters of ``cluster_size`` sites
        and one of ``count % cluster_size``, each within ``cluster_length`` µm around a
        random centre (:func:`neuron_bridge.patterns.clustered`), without shared sites.

    Returns
    -------
    list of ndarray of int64
        Per trial, sorted indices into ``sites``.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    candidates = np.arange(len(sites)) if candidates is None else np.asarray(candidates)
    candidates = np.unique(candidates.astype(np.int64))
    if count > candidates.size:
        raise ValueError(f"count = {count} is more than the {candidates.size} candidate sites")
    result = []
    for _ in range(int(trials)):
        if pattern == "distributed":
            chosen = rng.choice(candidates, size=int(count), replace=False)
        else:
            free = candidates
            parts = []
            sizes = [cluster_size] * (count // cluster_size)
            if count % cluster_size:
                sizes.append(count % cluster_size)
            for size in sizes:
                local = clustered(sites.subset(free), size, cluster_length, rng=rng)
                parts.append(free[local])
                free = np.setdiff1d(free, free[local], assume_unique=True)
            chosen = np.concatenate([*parts, np.zeros(0, np.int64)])
        result.append(np.sort(chosen).astype(np.int64))
    return result

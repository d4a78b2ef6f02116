"""Statistics of the spine study: spikes in a window, binomial intervals, the 50 %
threshold of a spike-probability curve and the paired comparison of two conditions."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "paired_comparison",
    "spiked_in_window",
    "threshold_50",
    "threshold_interval",
    "wilson_interval",
]


def spiked_in_window(spikes, start: float, stop: float) -> np.ndarray:
    """Whether each trial has a spike time in ``(start, stop]`` (ms).

    ``spikes`` is a list of arrays of spike times, one per trial."""
    return np.array([bool(np.any((s > start) & (s <= stop))) for s in spikes], dtype=bool)


def wilson_interval(k, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``k / n`` (arrays broadcast)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    p = k / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _logistic_fit(counts, k, n) -> tuple[float, float]:
    """Maximum-likelihood ``(n50, scale)`` of ``p = 1 / (1 + exp(-(count - n50) / scale))``."""
    from scipy.optimize import minimize

    counts = np.asarray(counts, dtype=np.float64)
    span = max(float(np.ptp(counts)), 1.0)

    def negative_log_likelihood(theta):
        n50, log_scale = theta
        z = (counts - n50) / np.exp(log_scale)
        # log p = -log(1 + e^-z), log(1 - p) = -log(1 + e^z)
        return float(np.sum(k * np.logaddexp(0, -z) + (n - k) * np.logaddexp(0, z)))

    p = k / n
    start = float(np.interp(0.5, p, counts)) if np.all(np.diff(p) >= 0) else counts.mean()
    bounds = [(counts.min() - span, counts.max() + span), (math.log(1e-3 * span), math.log(span))]
    best = minimize(
        negative_log_likelihood, [start, math.log(0.1 * span)], method="L-BFGS-B", bounds=bounds
    )
    return float(best.x[0]), float(np.exp(best.x[1]))


def threshold_50(counts, k, n) -> float:
    """Number of activated synapses at 50 % spike probability.

    A logistic curve in the count is fitted by maximum likelihood to ``k`` spiking
    trials out of ``n`` at each count. Where the data are a clean step (every count all
    or nothing, all-nothing below all-all), the fit is undetermined inside the step and
    the midpoint of the step is returned.

    Parameters
    ----------
    counts : array_like, shape (m,)
        Activated synapses, increasing.
    k, n : array_like of int, shape (m,)
        Spiking trials and trials at each count.

    Returns
    -------
    float
        The count at p = 0.5; ``nan`` when no trial or every trial spiked (the threshold
        lies outside the grid), and it may lie outside the grid when the curve is
        shallow.
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), k.shape)
    if counts.shape != k.shape or counts.ndim != 1 or counts.size == 0:
        raise ValueError("counts, k and n must be 1-d arrays of one length")
    if np.any(np.diff(counts) <= 0) or np.any(k < 0) or np.any(k > n) or np.any(n <= 0):
        raise ValueError("counts must increase, and 0 <= k <= n, n > 0")
    if k.sum() == 0 or k.sum() == n.sum():
        return math.nan
    none, every = k == 0, k == n
    if np.all(none | every):
        last_none = counts[none].max() if none.any() else -math.inf
        first_every = counts[every].min()
        if last_none < first_every:
            return 0.5 * (last_none + first_every) if none.any() else float(first_every)
    return _logistic_fit(counts, k, n)[0]


def paired_comparison(spiked_a, spiked_b) -> dict:
    """Trial-by-trial comparison of two conditions run on the same trials.

    Parameters
    ----------
    spiked_a, spiked_b : array_like of bool, same shape
        Outcomes of the same trials (same inputs) in conditions a and b.

    Returns
    -------
    dict
        ``only_a`` and ``only_b``: trials that spiked in one condition only;
        ``p_value``: two-sided exact sign test (McNemar) of ``only_a`` against
        ``only_b`` (1.0 when no trial differs).
    """
    from scipy.stats import binomtest

    a = np.asarray(spiked_a, dtype=bool)
    b = np.asarray(spiked_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the outcomes differ in shape: {a.shape} and {b.shape}")
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(b & ~a))
    n = only_a + only_b
    p_value = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p_value}


def threshold_interval(
    counts, k, n, *, resamples: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Bootstrap interval of :func:`threshold_50`: ``k`` is redrawn binomially from the
    observed proportions ``resamples`` times; the central ``level`` of the finite
    estimates is returned (nan, nan when fewer than half are finite)."""
    counts = np.asarray(counts, dtype=np.float64)
    k = np.asarray(k)
    n = np.broadcast_to(np.asarray(n), k.shape)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(int(resamples)):
        estimates.append(threshold_50(counts, rng.binomial(n, k / n), n))
    estimates = np.array(estimates)
    finite = estimates[np.isfinite(estimates)]
    if finite.size < 0.5 * resamples:
        return math.nan, math.nan
    tail = 50 * (1 - level)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)

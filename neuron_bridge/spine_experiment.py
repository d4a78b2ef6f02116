"""The spine experiment of DeepDendrite (Zhang et al. 2023, Fig. 5) on any cell.

Somatic spike probability against the number of synapses activated together, for two
spine models crossed with two input patterns, many trials per condition, run on the
batched engine (:class:`dhs.engine.Engine`); the notebook
``notebooks/spine_input_patterns.ipynb`` drives it.

The cell (:func:`build_cell`)
    A morphology (NEURON's demo pyramid by default, or any SWC/ASC/hoc file) with the
    membrane of :func:`benchmarks.models.pyramid_model` (Ra 150 Ω·cm, cm 1 µF/cm²,
    ``hh`` in the soma and the axon, if any, pas 5e-5 S/cm² at -65 mV in the
    dendrites), ``nseg`` from a longest segment length, and optionally a weak ``hh``
    (a fraction of its default Na and K densities, no extra leak) in the dendritic
    segments within a path distance of the soma (:class:`CellSetup`).

The two spine models (:mod:`neuron_bridge.spines`)
    ``"full"``: an explicit spine (neck and head, passive) at every site of the density
    rule (1.3 per µm beyond 60 µm from the soma). ``"few"``: the F-factor (1.9) beyond
    60 µm and explicit spines only where synapses are: at the background sites and at
    the sites the trial activates. Since the explicit spines are passive, the F-factor
    scales ``cm`` and ``pas.g`` only, not the dendritic ``hh`` (unless
    ``CellSetup.f_factor_active``). Both models use the same sites (the same
    ``spine_seed``), so a synapse sits on the same spine head in both.

The two input patterns (:mod:`neuron_bridge.patterns`)
    ``"distributed"``: ``count`` sites drawn uniformly over the spiny dendrite.
    ``"clustered"``: clusters of ``cluster_size`` sites, each within
    ``cluster_length`` µm of dendrite around a random centre (the last cluster is
    smaller when ``count`` is not a multiple of ``cluster_size``); clusters do not
    share sites. Activated sites are never background sites.

One trial
    AMPA+NMDA synapses (``AmpaNmda``) on spine heads: the activated ones each get one
    event of ``activation_weight`` at ``activation_time``; ``n_background`` background
    synapses (the same sites in every trial and condition) get Poisson trains at
    ``background_rate_hz`` with weight ``background_weight`` from 0 ms to ``tstop``. A
    trial *spikes* when the somatic potential crosses ``spike_threshold`` upwards in
    ``(activation_time, activation_time + spike_window]``.

Trials on the engine
    The engine runs N instances of one model, so all trials of one (model, pattern,
    count) share one model: it has a synapse at every site any of its trials uses (the
    *pool*, :func:`neuron_bridge.patterns.trial_inputs`), and a trial is a set of
    events. In the full-spine model the unused synapses only sit there (no events, no
    current). In the few-spine model the pool's explicit spines that a trial does not
    use are made electrically invisible in that trial's instance: their two nodes get
    ``cm = 0`` and ``pas.g = 0``. A spine without membrane draws no current (its nodes
    follow the dendrite's potential exactly), so the instance is the few-spine model of
    that trial, up to round-off; :meth:`SpineExperiment.run_native` builds that model literally in
    NEURON (spines only at the trial's sites), and the tests check that both give the
    same spikes trial by trial. The hidden spines still cost compute in the engine.

Random numbers
    Everything follows from ``Protocol.seed``: the background sites, the activated sites
    of each (pattern, count, trial) and the background trains (seeded per (pattern,
    count) and trial). The full- and few-spine models get the *same* trials (a paired
    comparison).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from neuron import h

from .export import export_model
from .morphology import Cell, discretize, load_morphology, node_count
from .patterns import NeuronEvents, Sites, TrialInputs, clustered, synapse_rows, trial_inputs
from .spines import (
    FFactor,
    SpineParameters,
    Spines,
    add_spines,
    add_spines_at,
    apply_f_factor,
    spine_sites,
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
    "draw_morphology",
    "paired_comparison",
    "protocol_dict",
    "set_membrane",
    "site_coordinates",
    "spiked_in_window",
    "threshold_50",
    "threshold_interval",
    "wilson_interval",
]

MODELS = ("full", "few")
PATTERNS = ("distributed", "clustered")
_BACKGROUND_STREAM = 1_000_003  # seeds the background sites: [seed, this]


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class CellSetup:
    """The cell: morphology, discretisation, passive and active membrane, spines.

    Attributes
    ----------
    morphology : str or Path or None
        SWC, Neurolucida ASC or hoc file; None: NEURON's demo pyramid.
    segment_length : float, default 5
        Longest segment in µm (``nseg`` = smallest odd number >= L / segment_length).
    ra : float, default 150
        Axial resistivity, Ω·cm (spines too).
    cm : float, default 1
        µF/cm².
    g_pas, e_pas : float
        Leak of the dendrites (and spines), S/cm² and mV.
    v_init : float, default -65
        mV.
    dendritic_hh : float, default 0
        ``hh`` in the dendrites, as a fraction of its default ``gnabar`` (0.12 S/cm²) and
        ``gkbar`` (0.036 S/cm²), with ``gl = 0`` (``pas`` is the leak); 0: passive
        dendrites.
    dendritic_hh_distance : float, default inf
        Only in dendritic segments whose centre is within this path distance (µm) of
        soma(0.5) (proximal dendrites); the other dendritic segments stay passive.
    f_factor_active : bool, default False
        Few-spine model: whether the F-factor also scales the active conductances
        (``hh``). False scales ``cm`` and ``pas.g`` only, which matches the explicit
        spines of the full-spine model (passive, :mod:`neuron_bridge.spines`).
    spines : SpineParameters
        Spine geometry, density (1.3 /µm), distance (60 µm) and the F-factor (1.9).
    spine_seed : int, default 0
        Seed of the spine positions (:func:`neuron_bridge.spines.spine_sites`).
    """

    morphology: str | Path | None = None
    segment_length: float = 5.0
    ra: float = 150.0
    cm: float = 1.0
    g_pas: float = 5e-5
    e_pas: float = -65.0
    v_init: float = -65.0
    dendritic_hh: float = 0.0
    dendritic_hh_distance: float = math.inf
    f_factor_active: bool = False
    spines: SpineParameters = field(default_factory=SpineParameters)
    spine_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("segment_length", "ra", "cm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("g_pas", "dendritic_hh"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not self.dendritic_hh_distance >= 0:
            raise ValueError("dendritic_hh_distance must be >= 0")


@dataclass(frozen=True)
class Protocol:
    """Inputs, timing and spike detection of one trial.

    Attributes
    ----------
    activation_weight : float, default 0.00025
        µS per activated synapse: the AMPA peak conductance (NMDA peaks at
        ``nmda_ratio`` times it before the Mg²⁺ block).
    background_weight : float or None
        µS per background event; None: ``activation_weight``.
    nmda_ratio : float, default 1.5
        NMDA peak conductance per unit of AMPA peak conductance (``AmpaNmda.nmda_ratio``;
        Eyal et al. 2018 estimated 0.88 nS AMPA and 1.31 nS NMDA per contact).
    n_background : int, default 400
        Background synapses.
    background_rate_hz : float, default 1
        Rate of each background train.
    activation_time : float, default 30
        ms.
    spike_window : float, default 25
        ms after ``activation_time`` in which a somatic spike counts.
    dt : float, default 0.025
        ms.
    cluster_size : int, default 20
        Synapses per cluster.
    cluster_length : float, default 20
        µm of dendrite a cluster spans at most.
    spike_threshold : float, default -20
        mV, at soma(0.5).
    seed : int, default 1
        Seed of every random draw (module docstring).
    record_every : int, default 4
        Steps between recorded samples of the somatic potential.
    """

    activation_weight: float = 0.00025
    background_weight: float | None = None
    nmda_ratio: float = 1.5
    n_background: int = 400
    background_rate_hz: float = 1.0
    activation_time: float = 30.0
    spike_window: float = 25.0
    dt: float = 0.025
    cluster_size: int = 20
    cluster_length: float = 20.0
    spike_threshold: float = -20.0
    seed: int = 1
    record_every: int = 4

    def __post_init__(self) -> None:
        for name in ("activation_weight", "nmda_ratio", "background_rate_hz", "activation_time"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        for name in ("spike_window", "dt", "cluster_length"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name, low in (
            ("n_background", 0),
            ("cluster_size", 1),
            ("seed", 0),
            ("record_every", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    @property
    def tstop(self) -> float:
        """End of a trial in ms: ``activation_time + spike_window``."""
        return self.activation_time + self.spike_window

    @property
    def weight_background(self) -> float:
        """µS per background event."""
        if self.background_weight is None:
            return self.activation_weight
        return self.background_weight


# ---------------------------------------------------------------------------------- cell
def build_cell(setup: CellSetup | None = None, *, name: str = "cell") -> Cell:
    """Load the morphology and give it the membrane of :class:`CellSetup`.

    ``hh`` (NEURON's defaults) in the soma and axon sections, ``pas`` in the dendrites
    (plus the weak ``hh`` of ``setup.dendritic_hh``), ``Ra`` and ``cm`` everywhere;
    sections without 3-D points get them from ``h.define_shape()`` (for drawing) before
    any spine exists.
    """
    setup = CellSetup() if setup is None else setup
    h.load_file("stdrun.hoc")
    cell = load_morphology(setup.morphology, name=name)
    if any(section.n3d() == 0 for section in cell.sections):
        h.define_shape()
    for section in cell.sections:
        section.Ra = setup.ra
        section.cm = setup.cm
    set_membrane(cell, setup)
    return cell


def set_membrane(cell: Cell, setup: CellSetup) -> None:
    """Discretise the cell (``setup.segment_length``) and insert and set its channels:
    ``hh`` in the soma and axon, ``pas`` (and the weak ``hh`` of
    ``setup.dendritic_hh``) in the dendrites. Call it again after a change of
    ``nseg``, since NEURON carries range values over segment by segment."""
    discretize(cell, segment_length=setup.segment_length)
    dendrites = set(cell.dendrites)
    for section in cell.sections:
        if section in dendrites:
            section.insert("pas")
            for segment in section:
                segment.pas.g = setup.g_pas
                segment.pas.e = setup.e_pas
        else:
            section.insert("hh")
    if setup.dendritic_hh > 0:
        origin = cell.soma[0](0.5)
        for section in cell.dendrites:
            inside = [h.distance(origin, seg) <= setup.dendritic_hh_distance for seg in section]
            if not any(inside) and not h.ismembrane("hh", sec=section):
                continue
            section.insert("hh")
            for segment, near in zip(section, inside, strict=True):
                factor = setup.dendritic_hh if near else 0.0
                segment.hh.gnabar = 0.12 * factor
                segment.hh.gkbar = 0.036 * factor
                segment.hh.gl = 0.0


# ------------------------------------------------------------------------------ patterns
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


# ----------------------------------------------------------------------------- analysis
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


# -------------------------------------------------------------------------------- drawing
def site_coordinates(cell: Cell, sites: Sites) -> np.ndarray:
    """3-D coordinates (µm) of ``sites`` on ``cell``, interpolated along each section's
    3-D points by arc length; shape ``(len(sites), 3)``."""
    sections = list(cell.sections)
    out = np.zeros((len(sites), 3))
    for s in np.unique(sites.section).tolist():
        section = sections[s]
        n = int(section.n3d())
        if n == 0:
            raise ValueError(f"{section.name()} has no 3-D points (call h.define_shape())")
        arc = np.array([section.arc3d(i) for i in range(n)])
        xyz = np.array([[section.x3d(i), section.y3d(i), section.z3d(i)] for i in range(n)])
        mine = np.flatnonzero(sites.section == s)
        where = sites.x[mine] * arc[-1]
        for axis in range(3):
            out[mine, axis] = np.interp(where, arc, xyz[:, axis])
    return out


def draw_morphology(
    ax,
    cell: Cell,
    sites: Sites | None = None,
    marks=(),
    *,
    plane: str = "xy",
    spine_size: float = 0.4,
) -> None:
    """Draw ``cell`` with matplotlib from its sections' 3-D points (no ``h.PlotShape``).

    Parameters
    ----------
    ax : matplotlib Axes
    cell : Cell
        Its own sections are drawn (spine sections are not: they are drawn as dots).
    sites : Sites, optional
        Spine sites, drawn as small grey dots.
    marks : sequence of (Sites, dict)
        More sites drawn on top, each with matplotlib ``scatter`` keywords (``color``,
        ``s``, ``label``).
    plane : {"xy", "xz", "yz"}
        The projection.
    spine_size : float
        Marker size of the spine dots.
    """
    axes = ["xyz".index(c) for c in plane]
    for section in cell.sections:
        n = int(section.n3d())
        if n < 2:
            continue
        xyz = np.array([[section.x3d(i), section.y3d(i), section.z3d(i)] for i in range(n)])
        width = float(np.clip(np.mean([section.diam3d(i) for i in range(n)]), 0.3, 6.0))
        ax.plot(
            xyz[:, axes[0]],
            xyz[:, axes[1]],
            color="0.35",
            linewidth=width * 0.6,
            solid_capstyle="round",
        )
    if sites is not None and len(sites):
        where = site_coordinates(cell, sites)
        ax.scatter(
            where[:, axes[0]],
            where[:, axes[1]],
            s=spine_size,
            color="0.65",
            linewidths=0,
            label=f"spines ({len(sites)})",
        )
    for marked, style in marks:
        where = site_coordinates(cell, marked)
        ax.scatter(where[:, axes[0]], where[:, axes[1]], linewidths=0, **style)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{plane[0]} (µm)")
    ax.set_ylabel(f"{plane[1]} (µm)")


# --------------------------------------------------------------------------------- results
@dataclass
class ConditionResult:
    """The trials of one (model, pattern) on the engine.

    Attributes
    ----------
    model, pattern : str
    counts : ndarray of int64, shape (m,)
    spiked : ndarray of bool, shape (m, trials)
        A spike in the window after the activation.
    early : ndarray of bool, shape (m, trials)
        A spike before the activation (background alone).
    first_spike : ndarray, shape (m, trials)
        ms after the activation of the first spike in the window (nan without).
    t : ndarray
        Sample times of ``soma_v`` in ms.
    soma_v : ndarray, shape (m, trials, n_times)
        mV at soma(0.5).
    run_seconds, build_seconds : ndarray, shape (m,)
        Wall time of :meth:`Engine.run` per count, and of building and exporting the
        model, drawing the inputs and setting up the engine.
    n_nodes, n_synapses : ndarray of int64, shape (m,)
        Size of the engine model per count (matrix rows, AmpaNmda synapses).
    backend : str
        The engine backend that ran (``"cpu"`` or ``"cuda"``).
    """

    model: str
    pattern: str
    counts: np.ndarray
    spiked: np.ndarray
    early: np.ndarray
    first_spike: np.ndarray
    t: np.ndarray
    soma_v: np.ndarray
    run_seconds: np.ndarray
    build_seconds: np.ndarray
    n_nodes: np.ndarray
    n_synapses: np.ndarray
    backend: str

    @property
    def name(self) -> str:
        return f"{self.model}-spine {self.pattern}"

    @property
    def trials(self) -> int:
        return int(self.spiked.shape[1])

    @property
    def probability(self) -> np.ndarray:
        """Spike probability per count."""
        return self.spiked.mean(axis=1)

    def threshold(self) -> float:
        """:func:`threshold_50` of this condition."""
        return threshold_50(self.counts, self.spiked.sum(axis=1), self.trials)

    def summary(self) -> dict:
        """JSON-ready numbers (no traces)."""
        k = self.spiked.sum(axis=1)
        low, high = threshold_interval(self.counts, k, self.trials)
        return {
            "model": self.model,
            "pattern": self.pattern,
            "counts": self.counts.tolist(),
            "trials": self.trials,
            "spiking_trials": k.tolist(),
            "probability": self.probability.tolist(),
            "early_spike_trials": self.early.sum(axis=1).tolist(),
            "spiked_per_trial": self.spiked.astype(int).tolist(),
            "threshold_50": _json_float(self.threshold()),
            "threshold_95ci": [_json_float(low), _json_float(high)],
            "engine_run_seconds": float(self.run_seconds.sum()),
            "build_seconds": float(self.build_seconds.sum()),
            "run_seconds_per_count": self.run_seconds.tolist(),
            "n_nodes": self.n_nodes.tolist(),
            "n_synapses": self.n_synapses.tolist(),
            "backend": self.backend,
        }


def _json_float(value: float):
    return None if not math.isfinite(value) else float(value)


@dataclass
class NativeTrial:
    """One trial run natively by NEURON (:meth:`SpineExperiment.run_native`).

    Attributes
    ----------
    seconds : float
        Wall time of ``finitialize`` + ``continuerun``.
    spikes : ndarray
        Somatic spike times in ms.
    t, soma_v : ndarray
        The somatic potential (every step).
    n_nodes : int
        Matrix rows of the NEURON model of this trial.
    """

    seconds: float
    spikes: np.ndarray
    t: np.ndarray
    soma_v: np.ndarray
    n_nodes: int


# ------------------------------------------------------------------------------ experiment
class SpineExperiment:
    """The cell, its spine sites, the background sites, and the runs.

    Parameters
    ----------
    setup : CellSetup, optional
    protocol : Protocol, optional
    cell : Cell, optional
        An already built cell (default: :func:`build_cell` of ``setup``). Its membrane
        is used as it is; ``setup`` still gives the spines and ``v_init``.

    Notes
    -----
    NEURON holds one model per process: at most one spine model exists at a time (the
    full-spine spines are kept between calls until a few-spine model is needed), and
    :meth:`delete` removes everything.
    """

    def __init__(
        self,
        setup: CellSetup | None = None,
        protocol: Protocol | None = None,
        cell: Cell | None = None,
    ):
        from .compile_mod import load_mod_mechanisms

        load_mod_mechanisms()
        self.setup = CellSetup() if setup is None else setup
        self.protocol = Protocol() if protocol is None else protocol
        self.cell = build_cell(self.setup) if cell is None else cell
        self.soma = self.cell.soma[0]
        self.sites = spine_sites(self.cell, self.setup.spines, seed=self.setup.spine_seed)
        if len(self.sites) < self.protocol.n_background:
            raise ValueError(
                f"the cell has {len(self.sites)} spine sites, fewer than n_background = "
                f"{self.protocol.n_background}"
            )
        rng = np.random.default_rng([self.protocol.seed, _BACKGROUND_STREAM])
        self.background = np.sort(
            rng.choice(len(self.sites), size=self.protocol.n_background, replace=False)
        ).astype(np.int64)
        self.candidates = np.setdiff1d(np.arange(len(self.sites)), self.background)
        self._spines: _SpineModel | None = None

    # -------------------------------------------------------------- inputs
    def _stream(self, pattern: str, count: int) -> list[int]:
        return [self.protocol.seed, PATTERNS.index(pattern), int(count)]

    def active_sites(self, pattern: str, count: int, trials: int) -> list[np.ndarray]:
        """Activated sites (indices into :attr:`sites`) of trials ``0 .. trials - 1`` at
        ``count``; the first trials do not depend on how many are drawn."""
        rng = np.random.default_rng(self._stream(pattern, count))
        p = self.protocol
        return draw_active(
            self.sites,
            pattern,
            count,
            trials,
            rng,
            candidates=self.candidates,
            cluster_size=p.cluster_size,
            cluster_length=p.cluster_length,
        )

    def inputs(self, pattern: str, count: int, trials: int, active=None) -> TrialInputs:
        """The :class:`~neuron_bridge.patterns.TrialInputs` of ``trials`` trials (or of
        the given ``active`` site lists) at ``count``."""
        p = self.protocol
        if active is None:
            active = self.active_sites(pattern, count, trials)
        seed = int(np.random.SeedSequence(self._stream(pattern, count)).generate_state(1)[0])
        return trial_inputs(
            self.sites,
            active,
            self.background,
            activation_time=p.activation_time,
            activation_weight=p.activation_weight,
            background_rate_hz=p.background_rate_hz,
            background_weight=p.weight_background,
            seed=seed,
            background_stop=p.tstop,
        )

    # -------------------------------------------------------------- models
    def _release_spines(self) -> None:
        if self._spines is not None:
            self._spines.delete()
            self._spines = None

    def _full_spines(self) -> _SpineModel:
        if self._spines is None or self._spines.mode != "full":
            self._release_spines()
            spines = add_spines(self.cell, self.setup.spines, seed=self.setup.spine_seed)
            self._spines = _SpineModel("full", spines, spines.explicit.copy(), None)
        return self._spines

    def _few_spines(self, at) -> _SpineModel:
        """The F-factor, then explicit spines at the sites ``at`` (indices into
        :attr:`sites`), with the membrane the dendrite had before the F-factor."""
        self._release_spines()
        params = self.setup.spines
        at = np.asarray(at, dtype=np.int64)
        passive_only = None if self.setup.f_factor_active else {"hh": []}
        record = apply_f_factor(
            self.cell, params.f_factor, params.min_distance, conductances=passive_only
        )
        spines = add_spines_at(self.cell, self.sites.subset(at), params, f_factor=record)
        return _SpineModel("few", spines, at, record)

    def rediscretize(self, segment_length: float) -> None:
        """Set a new longest segment length (µm) and the membrane again
        (:func:`set_membrane`); the spine sites, background and patterns stay."""
        self._release_spines()
        self.setup = replace(self.setup, segment_length=segment_length)
        set_membrane(self.cell, self.setup)

    def delete(self) -> None:
        """Delete the spines and the cell's sections."""
        self._release_spines()
        self.cell.delete()

    # -------------------------------------------------------------- engine
    def run_count(
        self,
        model: str,
        pattern: str,
        count: int,
        trials: int,
        *,
        backend: str = "auto",
        record_nodes=(),
        active=None,
    ) -> dict:
        """Run ``trials`` trials at one count on the engine (one instance per trial).

        Parameters
        ----------
        model : {"full", "few"}
        pattern : {"distributed", "clustered"}
        count, trials : int
        backend : str, default "auto"
            :class:`dhs.engine.Engine` backend.
        record_nodes : sequence of (section, x)
            Extra points to record besides soma(0.5).
        active : list of array_like of int, optional
            The activated sites of each trial (default :meth:`active_sites`).

        Returns
        -------
        dict
            ``result`` (:class:`dhs.engine.RunResult`, soma first among the records),
            ``inputs``, ``backend``, ``run_seconds``, ``build_seconds``, ``n_nodes``,
            ``n_synapses``.
        """
        from dhs.engine import Engine

        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        start = time.perf_counter()
        p = self.protocol
        inputs = self.inputs(pattern, count, trials, active)
        spines = self._full_spines() if model == "full" else self._few_spines(inputs.site_index)
        synapses = spines.synapses(inputs.site_index, nmda_ratio=p.nmda_ratio)
        try:
            points = [self.soma(0.5)] + [section(x) for section, x in record_nodes]
            record = [point.node_index() for point in points]
            cell_model = export_model(self.setup.v_init)
            engine = Engine(cell_model, n_instances=inputs.n_trials, backend=backend)
            inputs.to_engine(engine, synapse_rows(synapses))
            if model == "few":
                _hide_unused_spines(engine, spines, inputs)
            build = time.perf_counter() - start
            start = time.perf_counter()
            result = engine.run(
                p.tstop,
                p.dt,
                record_nodes=record,
                record_every=p.record_every,
                spike_node=record[0],
                spike_threshold=p.spike_threshold,
            )
            seconds = time.perf_counter() - start
        finally:
            synapses.clear()
            if model == "few":
                spines.delete()
        return {
            "result": result,
            "inputs": inputs,
            "backend": engine.backend,
            "run_seconds": seconds,
            "build_seconds": build,
            "n_nodes": cell_model.n,
            "n_synapses": inputs.n_synapses,
        }

    def run_condition(
        self, model: str, pattern: str, counts, trials: int, *, backend: str = "auto", progress=None
    ) -> ConditionResult:
        """All counts of one (model, pattern): :meth:`run_count` for each.

        ``progress``: a function called with a line of text after each count."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 1 or counts.size == 0 or np.any(np.diff(counts) <= 0):
            raise ValueError("counts must be a non-empty increasing sequence")
        p = self.protocol
        rows = []
        for count in counts.tolist():
            rows.append(self.run_count(model, pattern, count, trials, backend=backend))
            if progress is not None:
                r = rows[-1]
                outcome = spiked_in_window(r["result"].spikes, p.activation_time, p.tstop)
                progress(
                    f"{model}-spine {pattern:11s} count {count:4d}: p = {outcome.mean():.2f}"
                    f"  ({r['n_nodes']} rows, {r['n_synapses']} synapses, engine "
                    f"{r['run_seconds']:.1f} s on {r['backend']})"
                )
        spiked, early, first = [], [], []
        for r in rows:
            spikes = r["result"].spikes
            spiked.append(spiked_in_window(spikes, p.activation_time, p.tstop))
            early.append(spiked_in_window(spikes, -math.inf, p.activation_time))
            first.append(
                [
                    float(s[(s > p.activation_time) & (s <= p.tstop)][0] - p.activation_time)
                    if np.any((s > p.activation_time) & (s <= p.tstop))
                    else math.nan
                    for s in spikes
                ]
            )
        return ConditionResult(
            model=model,
            pattern=pattern,
            counts=counts,
            spiked=np.array(spiked),
            early=np.array(early),
            first_spike=np.array(first),
            t=rows[0]["result"].t,
            soma_v=np.stack([r["result"].v[:, 0, :] for r in rows]),
            run_seconds=np.array([r["run_seconds"] for r in rows]),
            build_seconds=np.array([r["build_seconds"] for r in rows]),
            n_nodes=np.array([r["n_nodes"] for r in rows], dtype=np.int64),
            n_synapses=np.array([r["n_synapses"] for r in rows], dtype=np.int64),
            backend=rows[0]["backend"],
        )

    # -------------------------------------------------------------- NEURON
    def run_native(
        self, model: str, inputs: TrialInputs, trial: int, record_nodes=()
    ) -> NativeTrial:
        """One trial in NEURON itself, with only that trial's synapses.

        Full-spine: every spine, synapses at the trial's activated and background sites.
        Few-spine: the F-factor and explicit spines at exactly those sites. The events
        are the trial's (:meth:`TrialInputs.events`), so the engine's instance of this
        trial gets the same input.

        ``record_nodes``: extra (section, x) points, recorded into
        :attr:`NativeTrial.soma_v` after the soma (shape ``(1 + len, n_times)``) when
        given.
        """
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        p = self.protocol
        used = np.union1d(inputs.active[trial], inputs.background).astype(np.int64)
        sites = inputs.site_index[used]
        spines = self._full_spines() if model == "full" else self._few_spines(sites)
        made = spines.synapses(sites, nmda_ratio=p.nmda_ratio)
        synapses: list = [None] * inputs.n_synapses
        for k, synapse in zip(used.tolist(), made, strict=True):
            synapses[k] = synapse
        events = NeuronEvents(synapses, *inputs.events(trial))
        h.dt = p.dt
        h.steps_per_ms = 1.0 / p.dt
        t = h.Vector().record(h._ref_t)
        points = [self.soma(0.5)] + [section(x) for section, x in record_nodes]
        traces = [h.Vector().record(point._ref_v) for point in points]
        detector = h.NetCon(self.soma(0.5)._ref_v, None, sec=self.soma)
        detector.threshold = p.spike_threshold
        spikes = h.Vector()
        detector.record(spikes)
        rows = node_count()
        try:
            start = time.perf_counter()
            h.finitialize(self.setup.v_init)
            h.continuerun(p.tstop)
            seconds = time.perf_counter() - start
            v = np.array([trace.as_numpy() for trace in traces])
            native = NativeTrial(
                seconds=seconds,
                spikes=spikes.as_numpy().copy(),
                t=t.as_numpy().copy(),
                soma_v=v if record_nodes else v[0],
                n_nodes=rows,
            )
        finally:
            events.release()
            del detector, traces, t
            made.clear()
            synapses.clear()
            if model == "few":
                spines.delete()
        return native


@dataclass(eq=False)
class _SpineModel:
    """Spines built on the cell: explicit spine ``k`` sits at ``site[k]`` (an index
    into the experiment's sites); ``f_factor`` is undone with the spines."""

    mode: str
    spines: Spines
    site: np.ndarray
    f_factor: FFactor | None

    def spine_of(self, sites) -> list[int]:
        """Explicit spine numbers of site indices."""
        lookup = {int(site): k for k, site in enumerate(self.site.tolist())}
        return [lookup[int(site)] for site in np.asarray(sites).tolist()]

    def synapses(self, sites, **attributes) -> list:
        """An ``AmpaNmda`` at ``head(0.5)`` of the spine of each site, in order."""
        made = []
        for k in self.spine_of(sites):
            synapse = h.AmpaNmda(self.spines.heads[k](0.5))
            for name, value in attributes.items():
                setattr(synapse, name, value)
            made.append(synapse)
        return made

    def delete(self) -> None:
        self.spines.delete()
        if self.f_factor is not None:
            self.f_factor.undo()


def _hide_unused_spines(engine, spines: _SpineModel, inputs: TrialInputs) -> None:
    """Few-spine model on a pool: in each instance (trial), ``cm = 0`` and ``pas.g = 0``
    at the neck and head nodes of every explicit spine whose site the trial neither
    activates nor uses for background (the module docstring says why this is exact)."""
    model = engine.model
    n_instances = engine.n_instances
    necks, heads = spines.spines.necks, spines.spines.heads
    nodes = np.array(
        [
            [necks[k](0.5).node_index(), heads[k](0.5).node_index()]
            for k in spines.spine_of(inputs.site_index)
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    cm = engine.get("cm")
    pas_node = model.mechanisms["pas"].node
    g = np.zeros((n_instances, model.n))
    g[:, pas_node] = engine.get("pas.g")
    for q in range(n_instances):
        unused = np.ones(inputs.n_synapses, dtype=bool)
        unused[inputs.active[q]] = False
        unused[inputs.background] = False
        hidden = nodes[unused].ravel()
        cm[q, hidden] = 0.0
        g[q, hidden] = 0.0
    engine.set("cm", cm)
    engine.set("pas.g", g)


def protocol_dict(setup: CellSetup, protocol: Protocol) -> dict:
    """Both settings as one JSON-ready dict."""
    cell = asdict(setup)
    cell["morphology"] = None if setup.morphology is None else str(setup.morphology)
    return {"cell": cell, "protocol": {**asdict(protocol), "tstop": protocol.tstop}}

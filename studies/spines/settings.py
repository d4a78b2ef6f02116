"""The settings of the spine study: the cell (:class:`CellSetup`) and one trial's
inputs, timing and spike detection (:class:`Protocol`). ``DESIGN.md`` describes the
protocol."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from neuron_bridge.spines import SpineParameters

__all__ = ["MODELS", "PATTERNS", "CellSetup", "Protocol", "protocol_dict"]

MODELS = ("full", "few")
PATTERNS = ("distributed", "clustered")


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
        Seed of every random draw (``DESIGN.md``, Random numbers).
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


def protocol_dict(setup: CellSetup, protocol: Protocol) -> dict:
    """Both settings as one JSON-ready dict."""
    cell = asdict(setup)
    cell["morphology"] = None if setup.morphology is None else str(setup.morphology)
    return {"cell": cell, "protocol": {**asdict(protocol), "tstop": protocol.tstop}}

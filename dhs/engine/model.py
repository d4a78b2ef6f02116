"""A plain description of one cell model, for the engine: no NEURON needed.

Everything is numpy arrays in NEURON's node order (node i is row i of NEURON's matrix,
``seg.node_index()``), so a model exported from NEURON by
:func:`neuron_bridge.export.export_model` runs here with NEURON's exact numerics.

Units
-----
=============  ==============================================================
voltage        mV
time           ms
area           µm² (NEURON's internal node area; 100 at zero-area nodes)
cm             µF/cm² (0 at zero-area nodes: they have no capacitance)
a, b           NEURON's matrix coefficients (:mod:`dhs.matrix`): mS/cm² in
               segment rows, µS in zero-area rows
pas.g, hh.g*   S/cm²
IClamp.amp     nA
synaptic weight µS (``NetCon.weight[0]``)
celsius        °C
=============  ==============================================================

Zero-area nodes
---------------
A section's free end (x = 1, or x = 0 of a reversed section) and a cell's root node
(x = 0 of the root section) have no membrane. NEURON stores 100 as their area, "in
dimensionless units", so that a point process there contributes ``i * 100 / area = i``
nA directly (``treeset.cpp``: ``sec->pnode[j]->area() = 1.e2``). :class:`CellModel`
keeps the same convention; ``seg.area()`` returns 0 for them.

Mechanisms
----------
=========  =======  =====================================  ===========================
name       kind     parameters                             state
=========  =======  =====================================  ===========================
pas        density  g, e                                   --
hh         density  gnabar, gkbar, gl, el, ena, ek         m, h, n
IClamp     point    del, dur, amp                          --
ExpSyn     point    tau, e                                 g
Exp2Syn    point    tau1, tau2, e                          A, B (and factor)
AmpaNmda   point    tau1_ampa, tau2_ampa, tau1_nmda,       A_ampa, B_ampa, A_nmda,
                    tau2_nmda, e, nmda_ratio, mg           B_nmda (and two factors)
=========  =======  =====================================  ===========================

AmpaNmda is not built into NEURON: it is ``neuron_bridge/mod/ampanmda.mod`` (AMPA and
NMDA double exponentials, the NMDA one scaled by ``nmda_ratio`` and blocked by Mg²⁺ as in
Jahr & Stevens 1990; ``mg`` in mM), compiled and loaded by
``neuron_bridge.compile_mod.load_mod_mechanisms``.

``ena`` and ``ek`` of hh are the segment's ion parameters (``seg.ena``, ``seg.ek``).
Synaptic input is a list of event arrival times and weights per synapse
(:class:`SynapticEvents`): for a NetStim with ``noise = 0`` driving a synapse through a
NetCon, the NetStim's spike times plus ``NetCon.delay``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DENSITY_MECHANISMS",
    "MECHANISMS",
    "POINT_PROCESSES",
    "SYNAPSES",
    "CellModel",
    "MechanismTable",
    "SynapticEvents",
    "load_model",
]

#: Parameters of each supported mechanism, in the order the engine stores them.
MECHANISMS: dict[str, tuple[str, ...]] = {
    "pas": ("g", "e"),
    "hh": ("gnabar", "gkbar", "gl", "el", "ena", "ek"),
    "IClamp": ("del", "dur", "amp"),
    "ExpSyn": ("tau", "e"),
    "Exp2Syn": ("tau1", "tau2", "e"),
    "AmpaNmda": ("tau1_ampa", "tau2_ampa", "tau1_nmda", "tau2_nmda", "e", "nmda_ratio", "mg"),
}
DENSITY_MECHANISMS = ("pas", "hh")
POINT_PROCESSES = ("IClamp", "ExpSyn", "Exp2Syn", "AmpaNmda")
#: Point processes that receive events (NET_RECEIVE).
SYNAPSES = ("ExpSyn", "Exp2Syn", "AmpaNmda")


def _float_array(name: str, value, shape=None) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=np.float64)
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains non-finite values")
    return array


def _index_array(name: str, value, n: int) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ValueError(f"{name} has node indices outside 0..{n - 1}")
    return array


@dataclass
class MechanismTable:
    """All instances of one mechanism: where they are and their parameters.

    Attributes
    ----------
    name : str
        One of :data:`MECHANISMS`.
    node : ndarray of int64, shape (m,)
        Node of each instance (several point processes may share a node; a density
        mechanism has at most one instance per node).
    params : dict of str to ndarray of float64, shape (m,)
        One array per parameter of :data:`MECHANISMS` ``[name]`` (units: module doc).
    """

    name: str
    node: np.ndarray
    params: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return int(self.node.size)

    @classmethod
    def empty(cls, name: str) -> MechanismTable:
        return cls(name, np.zeros(0, np.int64), {p: np.zeros(0) for p in MECHANISMS[name]})

    def check(self, n: int) -> MechanismTable:
        """A validated copy (shapes, node range, finiteness); raises ValueError."""
        if self.name not in MECHANISMS:
            raise ValueError(f"unknown mechanism {self.name!r}; supported: {list(MECHANISMS)}")
        node = _index_array(f"{self.name}.node", self.node, n)
        expected = set(MECHANISMS[self.name])
        if set(self.params) != expected:
            raise ValueError(
                f"{self.name} needs parameters {sorted(expected)}, got {sorted(self.params)}"
            )
        params = {
            p: _float_array(f"{self.name}.{p}", self.params[p], node.shape)
            for p in MECHANISMS[self.name]
        }
        if self.name in DENSITY_MECHANISMS and np.unique(node).size != node.size:
            raise ValueError(f"{self.name} (a density mechanism) appears twice at one node")
        return MechanismTable(self.name, node, params)


@dataclass
class SynapticEvents:
    """Incoming events of every synapse of one kind (one of :data:`SYNAPSES`).

    Attributes
    ----------
    synapse : ndarray of int64, shape (E,)
        Index of the target synapse in its :class:`MechanismTable`.
    time : ndarray of float64, shape (E,)
        Arrival time in ms (the source's spike time plus ``NetCon.delay``).
    weight : ndarray of float64, shape (E,)
        ``NetCon.weight[0]`` in µS.
    """

    synapse: np.ndarray
    time: np.ndarray
    weight: np.ndarray

    @classmethod
    def empty(cls) -> SynapticEvents:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    def check(self, name: str, n_synapses: int) -> SynapticEvents:
        synapse = _index_array(f"events[{name!r}].synapse", self.synapse, max(n_synapses, 1))
        if n_synapses == 0 and synapse.size:
            raise ValueError(f"events for {name} given, but the model has no {name}")
        time = _float_array(f"events[{name!r}].time", self.time, synapse.shape)
        weight = _float_array(f"events[{name!r}].weight", self.weight, synapse.shape)
        order = np.lexsort((synapse, time))  # by time, stable per synapse
        return SynapticEvents(synapse[order], time[order], weight[order])

    def of(self, synapse: int) -> tuple[np.ndarray, np.ndarray]:
        """``(time, weight)`` of one synapse's events."""
        chosen = self.synapse == synapse
        return self.time[chosen], self.weight[chosen]


@dataclass
class CellModel:
    """One cell model (or several cells solved together), NEURON-free.

    Attributes
    ----------
    parent : ndarray of int64, shape (n,)
        Parent of every node in NEURON's order, -1 for a cell's root node. Parents come
        before their children (``parent[i] < i``), as in NEURON.
    area : ndarray of float64, shape (n,)
        NEURON's internal node area in µm²; 100 at zero-area nodes (module doc).
    cm : ndarray of float64, shape (n,)
        Specific capacitance in µF/cm²; 0 at zero-area nodes.
    a, b : ndarray of float64, shape (n,)
        NEURON's constant matrix coefficients (:mod:`dhs.matrix`); 0 for roots.
    mechanisms : dict of str to MechanismTable
        One table per name of :data:`MECHANISMS` (empty tables are allowed).
    events : dict of str to SynapticEvents
        One entry per name of :data:`SYNAPSES`.
    v_init : float
        Initial membrane potential in mV (``h.finitialize(v_init)``).
    celsius : float
        Temperature in °C (hh's rates depend on it; NEURON's default is 6.3).
    hh_tables : bool
        True when hh's rates come from NEURON's lookup tables (``h.usetable_hh = 1``,
        NEURON's default): 201 points from -100 to 100 mV, linearly interpolated.
        False evaluates the rate functions exactly (``h.usetable_hh = 0``).
    node_names : tuple of str
        A label per node, such as ``"soma(0.5)"`` (optional; for look-ups and messages).
    """

    parent: np.ndarray
    area: np.ndarray
    cm: np.ndarray
    a: np.ndarray
    b: np.ndarray
    mechanisms: dict[str, MechanismTable] = field(default_factory=dict)
    events: dict[str, SynapticEvents] = field(default_factory=dict)
    v_init: float = -65.0
    celsius: float = 6.3
    hh_tables: bool = False
    node_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parent = np.ascontiguousarray(self.parent, dtype=np.int64)
        if parent.ndim != 1 or parent.size == 0:
            raise ValueError(f"parent must be a non-empty 1-D array, got shape {parent.shape}")
        n = parent.size
        index = np.arange(n)
        if not np.all((parent == -1) | ((parent >= 0) & (parent < index))):
            bad = int(np.flatnonzero(~((parent == -1) | ((parent >= 0) & (parent < index))))[0])
            raise ValueError(
                f"parent[{bad}] = {int(parent[bad])}: every node's parent must come before "
                "it (parent[i] < i) or be -1, as in NEURON's node order"
            )
        self.parent = parent
        self.area = _float_array("area", self.area, (n,))
        self.cm = _float_array("cm", self.cm, (n,))
        self.a = _float_array("a", self.a, (n,))
        self.b = _float_array("b", self.b, (n,))
        if np.any(self.area <= 0):
            raise ValueError("area must be positive (use 100 for zero-area nodes, as NEURON)")
        unknown = set(self.mechanisms) - set(MECHANISMS)
        if unknown:
            raise ValueError(
                f"unsupported mechanisms {sorted(unknown)}; supported: {list(MECHANISMS)}"
            )
        self.mechanisms = {
            name: self.mechanisms.get(name, MechanismTable.empty(name)).check(n)
            for name in MECHANISMS
        }
        unknown = set(self.events) - set(SYNAPSES)
        if unknown:
            raise ValueError(f"events for {sorted(unknown)}; only {list(SYNAPSES)} take events")
        self.events = {
            name: self.events.get(name, SynapticEvents.empty()).check(
                name, self.mechanisms[name].count
            )
            for name in SYNAPSES
        }
        self.v_init = float(self.v_init)
        self.celsius = float(self.celsius)
        self.hh_tables = bool(self.hh_tables)
        self.node_names = tuple(str(name) for name in self.node_names)
        if self.node_names and len(self.node_names) != n:
            raise ValueError(f"node_names has {len(self.node_names)} entries for {n} nodes")

    @property
    def n(self) -> int:
        """Number of nodes (matrix rows)."""
        return int(self.parent.size)

    def node(self, name: str | int) -> int:
        """The node index of a label from :attr:`node_names` (an int is returned as is)."""
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < self.n:
                raise ValueError(f"node {int(name)} is outside 0..{self.n - 1}")
            return int(name)
        try:
            return self.node_names.index(name)
        except ValueError:
            raise ValueError(f"no node named {name!r} in this model") from None

    # ------------------------------------------------------------------ save / load
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{key: array}`` for ``np.savez`` (see :meth:`save`)."""
        arrays = {
            "parent": self.parent,
            "area": self.area,
            "cm": self.cm,
            "a": self.a,
            "b": self.b,
            "v_init": np.float64(self.v_init),
            "celsius": np.float64(self.celsius),
            "hh_tables": np.bool_(self.hh_tables),
            "node_names": np.array(self.node_names, dtype=np.str_),
        }
        for name, table in self.mechanisms.items():
            arrays[f"mechanism.{name}.node"] = table.node
            for p, values in table.params.items():
                arrays[f"mechanism.{name}.{p}"] = values
        for name, events in self.events.items():
            arrays[f"events.{name}.synapse"] = events.synapse
            arrays[f"events.{name}.time"] = events.time
            arrays[f"events.{name}.weight"] = events.weight
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> CellModel:
        """Inverse of :meth:`to_arrays` (accepts an ``np.load`` result)."""
        mechanisms = {
            name: MechanismTable(
                name,
                np.asarray(arrays[f"mechanism.{name}.node"]),
                {p: np.asarray(arrays[f"mechanism.{name}.{p}"]) for p in params},
            )
            for name, params in MECHANISMS.items()
            if f"mechanism.{name}.node" in arrays
        }
        events = {
            name: SynapticEvents(
                *(
                    np.asarray(arrays[f"events.{name}.{key}"])
                    for key in ("synapse", "time", "weight")
                )
            )
            for name in SYNAPSES
            if f"events.{name}.synapse" in arrays
        }
        return cls(
            parent=np.asarray(arrays["parent"]),
            area=np.asarray(arrays["area"]),
            cm=np.asarray(arrays["cm"]),
            a=np.asarray(arrays["a"]),
            b=np.asarray(arrays["b"]),
            mechanisms=mechanisms,
            events=events,
            v_init=float(arrays["v_init"]),
            celsius=float(arrays["celsius"]),
            hh_tables=bool(arrays["hh_tables"]),
            node_names=tuple(str(s) for s in np.asarray(arrays["node_names"]).tolist()),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to an ``.npz`` file (``np.savez``)."""
        np.savez(path, **self.to_arrays())

    def summary(self) -> str:
        counts = ", ".join(
            f"{table.count} {name}" for name, table in self.mechanisms.items() if table.count
        )
        n_events = sum(events.time.size for events in self.events.values())
        return (
            f"CellModel: {self.n} nodes, {int((self.parent < 0).sum())} cell(s); "
            f"{counts or 'no mechanisms'}; {n_events} synaptic events"
        )


def load_model(path: str | os.PathLike) -> CellModel:
    """Read a model written by :meth:`CellModel.save`."""
    with np.load(path, allow_pickle=False) as arrays:
        return CellModel.from_arrays(arrays)

"""A plain description of one cell model, for the engine: no NEURON needed.

Everything is numpy arrays in NEURON's node order (node i is row i of NEURON's matrix,
``seg.node_index()``), so a model exported from NEURON by
:func:`neuron_bridge.export.export_model` runs here with NEURON's exact numerics.
The mechanisms are their ``.mod`` texts (:mod:`dhs.engine.mechanism`), so a saved
model is complete on its own.

Units: voltage mV, time ms, area µm² (NEURON's internal node area, 100 at zero-area
nodes), diam µm, cm µF/cm² (0 at zero-area nodes), ``a``/``b`` NEURON's matrix
coefficients (:mod:`dhs.matrix`), concentrations mM, temperature °C; mechanism
variables in the units of their ``.mod`` file. The design note is
``dhs/engine/DESIGN.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .mechanism import Mechanism, builtin, from_source

__all__ = ["CellModel", "IonTable", "MechanismTable", "SynapticEvents", "load_model"]


def _float_array(name: str, value, shape=None) -> np.ndarray:
    array = np.array(value, dtype=np.float64)  # a copy: the caller's arrays stay theirs
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array.ravel()))[0]
        raise ValueError(f"{name}[{bad}] is {array.ravel()[bad]}: values must be finite")
    return array


def _index_array(name: str, value, n: int, what: str = "node") -> np.ndarray:
    array = np.array(value, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= n):
        bad = int(array[(array < 0) | (array >= n)][0])
        raise ValueError(f"{name} holds {what} {bad}, outside 0..{n - 1}")
    return array


@dataclass
class MechanismTable:
    """All instances of one mechanism: where they are and their parameters.

    Attributes
    ----------
    name : str
        The mechanism's SUFFIX or POINT_PROCESS name.
    node : ndarray of int64, shape (m,)
        Node of each instance (several point processes may share a node; a density
        mechanism has at most one instance per node, and its rows are kept in node
        order). For point processes, the order of NEURON's list of that type (the order
        it sums their currents in).
    params : dict of str to ndarray of float64, shape (m,)
        One array per parameter of the mechanism (:attr:`Mechanism.parameters`);
        missing ones take the ``.mod`` file's default.
    globals : dict of str to float
        GLOBAL values (missing ones: the ``.mod`` file's default).
    source : str
        The ``.mod`` text; empty for a built-in (:func:`dhs.engine.mechanism.builtin`).
    labels : tuple of str
        A name per instance, such as ``"IClamp[1]"`` (optional; for look-ups).
    """

    name: str
    node: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)
    globals: dict[str, float] = field(default_factory=dict)
    source: str = ""
    labels: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return int(np.asarray(self.node).size)

    @property
    def mechanism(self) -> Mechanism:
        """The translated ``.mod`` file."""
        return from_source(self.source, f"<{self.name}.mod>") if self.source else builtin(self.name)

    def check(self, n: int) -> MechanismTable:
        """A validated copy (names, shapes, node range, finiteness); raises ValueError."""
        mechanism = self.mechanism
        if mechanism.name != self.name:
            raise ValueError(f"table {self.name!r} holds the .mod file of {mechanism.name!r}")
        node = _index_array(f"{self.name}.node", self.node, n)
        unknown = set(self.params) - set(mechanism.parameters)
        if unknown:
            raise ValueError(
                f"{self.name} has no parameter {sorted(unknown)[0]!r}; its "
                f"parameters: {list(mechanism.parameters)}"
            )
        defaults = mechanism.defaults
        params = {
            p: _float_array(
                f"{self.name}.{p}",
                self.params[p] if p in self.params else np.full(node.size, defaults[p]),
                node.shape,
            )
            for p in mechanism.parameters
        }
        unknown = set(self.globals) - set(mechanism.globals)
        if unknown:
            raise ValueError(
                f"{self.name} has no GLOBAL {sorted(unknown)[0]!r}; its GLOBALs: "
                f"{list(mechanism.globals)}"
            )
        globals_ = {g: float(self.globals.get(g, defaults[g])) for g in mechanism.globals}
        if not mechanism.is_point_process:
            if np.unique(node).size != node.size:
                raise ValueError(f"{self.name} (a density mechanism) appears twice at one node")
            # rows in node order (the engine works through the tree block by block)
            order = np.argsort(node, kind="stable")
            node = node[order]
            params = {p: values[order] for p, values in params.items()}
        labels = tuple(str(label) for label in self.labels)
        if labels and len(labels) != node.size:
            raise ValueError(f"{self.name}.labels has {len(labels)} entries for {node.size}")
        return MechanismTable(self.name, node, params, globals_, self.source, labels)


#: NEURON's defaults for the ions it knows (``eion.cpp``, ``ion_register``):
#: reversal potential (mV), inside and outside concentration (mM), valence.
ION_DEFAULTS = {
    "na": (50.0, 10.0, 140.0, 1.0),
    "k": (-77.0, 54.4, 2.5, 1.0),
    "ca": (132.4579341637009, 5e-05, 2.0, 2.0),
}


@dataclass
class IonTable:
    """One ion species at the nodes that have it.

    Attributes
    ----------
    name : str
        The species (``"na"``, ``"k"``, ``"ca"``, or any USEION name).
    node : ndarray of int64, shape (n_ion,)
        The nodes that have the ion (its rows are kept in node order).
    e, ci, co : ndarray of float64, shape (n_ion,)
        Reversal potential (mV) and concentrations (mM) before ``finitialize``.
    style : ndarray of int64, shape (n_ion,)
        NEURON's ion style per node (``ion_style``): bit 0o4 sets ci, co to ci0, co0 at
        initialisation, 0o40 computes e by Nernst then, 0o100 at every step.
    valence : float
    ci0, co0 : float
        Initial concentrations (mM) for the style's bit 0o4 (``cai0_ca_ion``, ...).
    """

    name: str
    node: np.ndarray
    e: np.ndarray
    ci: np.ndarray
    co: np.ndarray
    style: np.ndarray
    valence: float
    ci0: float
    co0: float

    @classmethod
    def default(cls, name: str, node, style: int) -> IonTable:
        """NEURON's default values of a known ion at ``node``."""
        if name not in ION_DEFAULTS:
            raise ValueError(f"ion {name!r} has no default values; give an IonTable for it")
        e, ci, co, valence = ION_DEFAULTS[name]
        node = np.asarray(node, dtype=np.int64)
        full = np.ones(node.size)
        return cls(
            name,
            node,
            e * full,
            ci * full,
            co * full,
            np.full(node.size, style, np.int64),
            valence,
            ci,
            co,
        )

    def check(self, n: int) -> IonTable:
        node = _index_array(f"ion {self.name}.node", self.node, n)
        if np.unique(node).size != node.size:
            raise ValueError(f"ion {self.name} appears twice at one node")
        values = {
            key: _float_array(f"ion {self.name}.{key}", getattr(self, key), node.shape)
            for key in ("e", "ci", "co")
        }
        style = np.array(self.style, dtype=np.int64)
        if style.shape != node.shape:
            raise ValueError(
                f"ion {self.name}.style has shape {style.shape}, expected {node.shape}"
            )
        valence = float(self.valence)
        if not np.isfinite(valence) or valence == 0.0:
            raise ValueError(f"ion {self.name}: valence must be a non-zero number, got {valence}")
        order = np.argsort(node, kind="stable")  # rows in node order
        return IonTable(
            self.name,
            node[order],
            values["e"][order],
            values["ci"][order],
            values["co"][order],
            style[order],
            valence,
            float(self.ci0),
            float(self.co0),
        )


@dataclass
class SynapticEvents:
    """Incoming events of every instance of one point process that receives events.

    Attributes
    ----------
    synapse : ndarray of int64, shape (E,)
        The target's row in its :class:`MechanismTable`.
    time : ndarray of float64, shape (E,)
        Arrival time in ms (the source's spike time plus ``NetCon.delay``).
    weight : ndarray of float64, shape (E,) or (E, n_arguments)
        ``NetCon.weight``: the NET_RECEIVE arguments (a 1-D array is the first one; the
        others are 0).
    """

    synapse: np.ndarray
    time: np.ndarray
    weight: np.ndarray

    @classmethod
    def empty(cls, n_arguments: int = 1) -> SynapticEvents:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, n_arguments)))

    def check(self, name: str, n_synapses: int, n_arguments: int) -> SynapticEvents:
        synapse = _index_array(f"events[{name!r}].synapse", self.synapse, max(n_synapses, 1))
        if n_synapses == 0 and synapse.size:
            raise ValueError(f"events for {name} given, but the model has no {name}")
        time = _float_array(f"events[{name!r}].time", self.time, synapse.shape)
        weight = np.array(self.weight, dtype=np.float64)
        if weight.ndim == 1:
            full = np.zeros((weight.size, n_arguments))
            full[:, 0] = weight
            weight = full
        weight = _float_array(f"events[{name!r}].weight", weight, (synapse.size, n_arguments))
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
        Parent of every node in NEURON's order, -1 for a cell's root node; parents come
        before their children (``parent[i] < i``), as in NEURON.
    area : ndarray of float64, shape (n,)
        NEURON's internal node area in µm²; 100 at zero-area nodes.
    cm : ndarray of float64, shape (n,)
        Specific capacitance in µF/cm²; 0 at zero-area nodes.
    a, b : ndarray of float64, shape (n,)
        NEURON's constant matrix coefficients (:mod:`dhs.matrix`); 0 for roots.
    mechanisms : dict of str to MechanismTable
        In NEURON's mechanism type order (the order it sums currents and advances
        states in): for built-ins pas, IClamp, ExpSyn, Exp2Syn, hh, then the
        ``nrnivmodl`` ones in their load order.
    ions : dict of str to IonTable
        Every ion a mechanism uses; missing known ions get NEURON's defaults at the
        nodes of their users.
    events : dict of str to SynapticEvents
        Incoming events per point process name that has a NET_RECEIVE.
    v_init : float
        Initial membrane potential in mV (``h.finitialize(v_init)``).
    celsius : float
        Temperature in °C (NEURON's default 6.3).
    diam : ndarray of float64, shape (n,), optional
        Segment diameter in µm (0 at zero-area nodes), for mechanisms that read diam.
    node_names : tuple of str
        A label per node, such as ``"soma(0.5)"`` (optional; for look-ups and messages).
    """

    parent: np.ndarray
    area: np.ndarray
    cm: np.ndarray
    a: np.ndarray
    b: np.ndarray
    mechanisms: dict[str, MechanismTable] = field(default_factory=dict)
    ions: dict[str, IonTable] = field(default_factory=dict)
    events: dict[str, SynapticEvents] = field(default_factory=dict)
    v_init: float = -65.0
    celsius: float = 6.3
    diam: np.ndarray | None = None
    node_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parent = np.array(self.parent, dtype=np.int64)
        if parent.ndim != 1 or parent.size == 0:
            raise ValueError(f"parent must be a non-empty 1-D array, got shape {parent.shape}")
        n = parent.size
        index = np.arange(n)
        bad = ~((parent == -1) | ((parent >= 0) & (parent < index)))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"parent[{first}] = {int(parent[first])}: every node's parent must come "
                "before it (parent[i] < i) or be -1, as in NEURON's node order"
            )
        self.parent = parent
        self.area = _float_array("area", self.area, (n,))
        self.cm = _float_array("cm", self.cm, (n,))
        self.a = _float_array("a", self.a, (n,))
        self.b = _float_array("b", self.b, (n,))
        self.diam = _float_array("diam", np.zeros(n) if self.diam is None else self.diam, (n,))
        if np.any(self.area <= 0):
            raise ValueError("area must be positive (use 100 for zero-area nodes, as NEURON)")
        tables = {}
        for name, table in self.mechanisms.items():
            if not isinstance(table, MechanismTable):
                raise ValueError(f"mechanisms[{name!r}] must be a MechanismTable")
            if table.name != name:
                raise ValueError(f"mechanisms[{name!r}] holds the table of {table.name!r}")
            tables[name] = table.check(n)
        self.mechanisms = tables
        self.ions = self._checked_ions(n)
        receivers = {name: t for name, t in tables.items() if t.mechanism.receives_events}
        unknown = set(self.events) - set(receivers)
        if unknown:
            raise ValueError(
                f"events for {sorted(unknown)}: only the point processes with a "
                f"NET_RECEIVE take events: {sorted(receivers)}"
            )
        self.events = {
            name: self.events.get(name, SynapticEvents.empty()).check(
                name, table.count, max(1, len(table.mechanism.net_receive_arguments))
            )
            for name, table in receivers.items()
        }
        self.v_init = float(self.v_init)
        self.celsius = float(self.celsius)
        self.node_names = tuple(str(name) for name in self.node_names)
        if self.node_names and len(self.node_names) != n:
            raise ValueError(f"node_names has {len(self.node_names)} entries for {n} nodes")

    def _checked_ions(self, n: int) -> dict[str, IonTable]:
        users: dict[str, list[np.ndarray]] = {}
        writers: set[str] = set()
        for table in self.mechanisms.values():
            mechanism = table.mechanism
            for use in mechanism.ions:
                users.setdefault(use.ion, []).append(table.node)
            writers |= set(mechanism.writes_concentration)
        ions = {}
        for name, table in self.ions.items():
            if not isinstance(table, IonTable) or table.name != name:
                raise ValueError(f"ions[{name!r}] must be the IonTable of {name!r}")
            ions[name] = table.check(n)
        for name, nodes in users.items():
            needed = np.unique(np.concatenate(nodes))
            if name not in ions:
                # NEURON's styles: a written concentration is a state, initialised to
                # ci0/co0, with e by Nernst at initialisation and at every step.
                style = 0o144 if name in writers else 0
                ions[name] = IonTable.default(name, needed, style).check(n)
            missing = np.setdiff1d(needed, ions[name].node)
            if missing.size:
                raise ValueError(
                    f"ion {name} is used at node {int(missing[0])} but its "
                    "IonTable has no entry there"
                )
        return ions

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

    def point_process(self, label: str) -> tuple[str, int]:
        """``(mechanism, row)`` of a point process by its label, such as ``"IClamp[1]"``."""
        for name, table in self.mechanisms.items():
            if label in table.labels:
                return name, table.labels.index(label)
        known = [label for t in self.mechanisms.values() for label in t.labels]
        raise ValueError(f"no point process {label!r} in this model; it has {known[:20]}")

    # ------------------------------------------------------------------ parts
    def subset(self, nodes=None, *, point_processes=None) -> CellModel:
        """The model made of some of its nodes only, such as a cell without some of its
        spines, or without some of its point processes.

        Parameters
        ----------
        nodes : array_like of int or of bool, optional
            The nodes to keep: increasing node indices, or a boolean mask of shape
            ``(n,)``. Every kept node's parent must be kept too, or the node must be a
            root (``parent == -1``). Default: every node.
        point_processes : dict, optional
            ``{mechanism name: rows to keep}`` (increasing rows of its table, or a
            boolean mask of its ``count``) for point processes of which only some stay;
            those at dropped nodes go in any case. A point process without events or
            other input that is dropped this way is one NEURON's model simply does not
            have.

        Returns
        -------
        CellModel
            The kept nodes, renumbered in their order (kept node ``nodes[j]`` becomes
            node ``j``), with their rows of every per-node array (``area``, ``cm``,
            ``a``, ``b``, ``diam``, ``node_names``), of every density mechanism and ion
            (in the same order), and the point processes at kept nodes (in the same
            order, labels kept; a table may become empty but stays). Events of dropped
            point processes are dropped, the others point to their new rows. Units,
            ``v_init``, ``celsius`` and GLOBALs are unchanged.

        Raises
        ------
        ValueError
            For indices out of range, repeated or not increasing, a mask of the wrong
            length, no node kept, a kept node whose parent is dropped (the first such
            node is named), or ``point_processes`` naming a mechanism that is not a
            point process of the model.

        Notes
        -----
        NEURON's matrix row of a node depends only on its own section and on its
        parent's node (``a``, ``b``: the axial resistance between them and the two
        areas), never on the node's children. Dropping whole sections (and whatever
        hangs off them) therefore leaves every other row as NEURON builds it for the
        model without those sections; and since the kept nodes, mechanism rows and
        point processes keep their relative order, every sum is taken in the same
        order: the subset runs bit for bit like that model, when NEURON numbers its
        nodes in the same relative order (it does for sections removed from its tree,
        as in the spine study, ``studies/spines/DESIGN.md``).
        """
        keep = self._kept_nodes(np.ones(self.n, dtype=bool) if nodes is None else nodes)
        kept_points = self._kept_point_processes(point_processes)
        new_index = np.cumsum(keep) - 1  # of every old node; meaningful where kept
        kept = np.flatnonzero(keep)
        parent = self.parent[kept]
        orphan = (parent >= 0) & ~keep[np.maximum(parent, 0)]
        if orphan.any():
            first = int(kept[np.flatnonzero(orphan)[0]])
            raise ValueError(
                f"node {first}{self._label(first)} is kept but its parent "
                f"{int(self.parent[first])}{self._label(int(self.parent[first]))} is not: "
                "the kept nodes must be closed under parents"
            )
        parent = np.where(parent >= 0, new_index[np.maximum(parent, 0)], -1)
        mechanisms = {}
        kept_rows = {}
        for name, table in self.mechanisms.items():
            chosen = keep[table.node]
            if name in kept_points:
                chosen &= kept_points[name]
            rows = np.flatnonzero(chosen)
            kept_rows[name] = rows
            mechanisms[name] = MechanismTable(
                name,
                new_index[table.node[rows]],
                {p: values[rows] for p, values in table.params.items()},
                dict(table.globals),
                table.source,
                tuple(table.labels[r] for r in rows.tolist()) if table.labels else (),
            )
        ions = {}
        for name, ion in self.ions.items():
            rows = np.flatnonzero(keep[ion.node])
            ions[name] = IonTable(
                name,
                new_index[ion.node[rows]],
                ion.e[rows],
                ion.ci[rows],
                ion.co[rows],
                ion.style[rows],
                ion.valence,
                ion.ci0,
                ion.co0,
            )
        events = {}
        for name, received in self.events.items():
            rows = kept_rows[name]
            new_row = np.full(self.mechanisms[name].count, -1, np.int64)
            new_row[rows] = np.arange(rows.size)
            chosen = new_row[received.synapse] >= 0
            events[name] = SynapticEvents(
                new_row[received.synapse[chosen]], received.time[chosen], received.weight[chosen]
            )
        return CellModel(
            parent=parent,
            area=self.area[kept],
            cm=self.cm[kept],
            a=self.a[kept],
            b=self.b[kept],
            mechanisms=mechanisms,
            ions=ions,
            events=events,
            v_init=self.v_init,
            celsius=self.celsius,
            diam=self.diam[kept],
            node_names=tuple(self.node_names[i] for i in kept.tolist()) if self.node_names else (),
        )

    def _kept_nodes(self, nodes) -> np.ndarray:
        """The boolean mask of :meth:`subset`'s ``nodes``, checked."""
        nodes = np.asarray(nodes)
        if nodes.dtype == bool:
            if nodes.shape != (self.n,):
                raise ValueError(
                    f"a boolean mask of nodes must have shape ({self.n},), got {nodes.shape}"
                )
            keep = nodes.copy()
        else:
            if nodes.size and nodes.dtype.kind not in "iu":
                raise ValueError(f"nodes must be node indices or a boolean mask, got {nodes.dtype}")
            index = _index_array("nodes", nodes, self.n)
            if np.any(np.diff(index) <= 0):
                bad = int(np.flatnonzero(np.diff(index) <= 0)[0])
                raise ValueError(
                    f"nodes must be increasing without repeats: nodes[{bad + 1}] = "
                    f"{int(index[bad + 1])} follows {int(index[bad])}"
                )
            keep = np.zeros(self.n, dtype=bool)
            keep[index] = True
        if not keep.any():
            raise ValueError("a subset needs at least one node")
        return keep

    def _kept_point_processes(self, point_processes) -> dict[str, np.ndarray]:
        """The boolean row masks of :meth:`subset`'s ``point_processes``, checked."""
        if point_processes is None:
            return {}
        if not isinstance(point_processes, dict):
            raise ValueError("point_processes must be a dict {mechanism name: rows to keep}")
        masks = {}
        for name, rows in point_processes.items():
            table = self.mechanisms.get(name)
            if table is None or not table.mechanism.is_point_process:
                points = [n for n, t in self.mechanisms.items() if t.mechanism.is_point_process]
                raise ValueError(
                    f"point_processes[{name!r}]: the model has no such point process "
                    f"(it has {points})"
                )
            rows = np.asarray(rows)
            if rows.dtype == bool:
                if rows.shape != (table.count,):
                    raise ValueError(
                        f"point_processes[{name!r}]: a boolean mask must have shape "
                        f"({table.count},), got {rows.shape}"
                    )
                masks[name] = rows.copy()
                continue
            if rows.size and rows.dtype.kind not in "iu":
                raise ValueError(
                    f"point_processes[{name!r}] must be rows or a boolean mask, got {rows.dtype}"
                )
            index = _index_array(f"point_processes[{name!r}]", rows, table.count, "row")
            if np.any(np.diff(index) <= 0):
                raise ValueError(f"point_processes[{name!r}] must be increasing without repeats")
            mask = np.zeros(table.count, dtype=bool)
            mask[index] = True
            masks[name] = mask
        return masks

    def _label(self, node: int) -> str:
        """`` (name)`` of a node for messages, empty without :attr:`node_names`."""
        return f" ({self.node_names[node]})" if self.node_names else ""

    # ------------------------------------------------------------------ save / load
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{key: array}`` for ``np.savez`` (see :meth:`save`)."""
        arrays = {
            "parent": self.parent,
            "area": self.area,
            "cm": self.cm,
            "a": self.a,
            "b": self.b,
            "diam": self.diam,
            "v_init": np.float64(self.v_init),
            "celsius": np.float64(self.celsius),
            "node_names": np.array(self.node_names, dtype=np.str_),
            "mechanism_order": np.array(list(self.mechanisms), dtype=np.str_),
            "ion_order": np.array(list(self.ions), dtype=np.str_),
        }
        for name, table in self.mechanisms.items():
            key = f"mechanism.{name}"
            arrays[f"{key}.node"] = table.node
            arrays[f"{key}.source"] = np.array(table.source)
            arrays[f"{key}.labels"] = np.array(table.labels, dtype=np.str_)
            for p, values in table.params.items():
                arrays[f"{key}.param.{p}"] = values
            for g, value in table.globals.items():
                arrays[f"{key}.global.{g}"] = np.float64(value)
        for name, ion in self.ions.items():
            for key in ("node", "e", "ci", "co", "style", "valence", "ci0", "co0"):
                arrays[f"ion.{name}.{key}"] = np.asarray(getattr(ion, key))
        for name, events in self.events.items():
            for key in ("synapse", "time", "weight"):
                arrays[f"events.{name}.{key}"] = getattr(events, key)
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> CellModel:
        """Inverse of :meth:`to_arrays` (accepts an ``np.load`` result)."""
        keys = list(arrays.keys())
        mechanisms = {}
        for name in np.asarray(arrays["mechanism_order"]).tolist():
            key = f"mechanism.{name}"
            params = {
                k[len(key) + 7 :]: np.asarray(arrays[k])
                for k in keys
                if k.startswith(f"{key}.param.")
            }
            globals_ = {
                k[len(key) + 8 :]: float(arrays[k]) for k in keys if k.startswith(f"{key}.global.")
            }
            mechanisms[name] = MechanismTable(
                name,
                np.asarray(arrays[f"{key}.node"]),
                params,
                globals_,
                str(arrays[f"{key}.source"]),
                tuple(str(s) for s in np.asarray(arrays[f"{key}.labels"]).tolist()),
            )
        ions = {}
        for name in np.asarray(arrays["ion_order"]).tolist():
            values = {
                key: np.asarray(arrays[f"ion.{name}.{key}"])
                for key in ("node", "e", "ci", "co", "style")
            }
            scalars = {key: float(arrays[f"ion.{name}.{key}"]) for key in ("valence", "ci0", "co0")}
            ions[name] = IonTable(name, **values, **scalars)
        events = {}
        for name in mechanisms:
            if f"events.{name}.synapse" in keys:
                events[name] = SynapticEvents(
                    *(
                        np.asarray(arrays[f"events.{name}.{key}"])
                        for key in ("synapse", "time", "weight")
                    )
                )
        return cls(
            parent=np.asarray(arrays["parent"]),
            area=np.asarray(arrays["area"]),
            cm=np.asarray(arrays["cm"]),
            a=np.asarray(arrays["a"]),
            b=np.asarray(arrays["b"]),
            mechanisms=mechanisms,
            ions=ions,
            events=events,
            v_init=float(arrays["v_init"]),
            celsius=float(arrays["celsius"]),
            diam=np.asarray(arrays["diam"]),
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
            f"{counts or 'no mechanisms'}; ions {', '.join(self.ions) or 'none'}; "
            f"{n_events} synaptic events"
        )


def load_model(path: str | os.PathLike) -> CellModel:
    """Read a model written by :meth:`CellModel.save`."""
    with np.load(path, allow_pickle=False) as arrays:
        return CellModel.from_arrays(arrays)

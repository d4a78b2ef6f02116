"""Export the live NEURON model as a NEURON-free :class:`dhs.engine.CellModel`.

:func:`export_model` reads the current NEURON session: the tree and NEURON's matrix
coefficients (:func:`neuron_bridge.extract.node_map`, ``h.fmatrix``), node areas and
capacitance, the supported mechanisms (``pas``, ``hh``, ``IClamp``, ``ExpSyn``,
``Exp2Syn``, and ``AmpaNmda`` once :func:`neuron_bridge.compile_mod.load_mod_mechanisms`
has loaded it) with their parameters, and the synaptic events that deterministic
NetStims send through NetCons. The result runs in :class:`dhs.engine.Engine` with NEURON's
fixed-step numerics and no NEURON at run time.

Anything the engine cannot reproduce raises ``ValueError`` naming all of it at once:
every unsupported density mechanism with the sections that have it, every unsupported
point process with its location, and unsupported settings (CVode, ``secondorder``,
threads, noisy NetStims, NetCons driven by a membrane potential, ...).

Node conventions are those of :mod:`dhs.engine.model`: zero-area nodes (section ends and
root nodes) have area 100 and no capacitance, as inside NEURON.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from neuron import h

from dhs.engine.model import (
    DENSITY_MECHANISMS,
    MECHANISMS,
    POINT_PROCESSES,
    SYNAPSES,
    CellModel,
    MechanismTable,
    SynapticEvents,
)

from . import _nrn
from .compile_mod import mechanism_type
from .extract import node_map, read_coupling

__all__ = ["export_model", "netstim_spike_times", "point_process_order"]

SUPPORTED_IONS = ("na", "k")  # written by hh; their e_ion are hh parameters
ZERO_AREA = 100.0  # NEURON's internal area of a zero-area node (treeset.cpp)
MAX_NETSTIM_SPIKES = 1_000_000

# ion_style bits: c_style + 4*e_style + 16*einit + 32*eadvance + 64*cinit
_EINIT, _EADVANCE = 16, 32
#: The order in which the engine adds the mechanisms' currents: NEURON's, by internal
#: type number (AmpaNmda, loaded from a .mod file, comes after every built-in type).
ENGINE_ORDER = ("pas", "IClamp", "ExpSyn", "Exp2Syn", "hh", "AmpaNmda")


def netstim_spike_times(
    start: float, interval: float, number: float, noise: float = 0.0, t_max: float = math.inf
) -> np.ndarray:
    """The spike times (ms) of a NetStim with ``noise = 0``, as ``netstim.mod`` makes them.

    The first spike is at ``start + interval - interval * (1 - noise)`` (computed in that
    order, so with its round-off), each next one ``interval`` later (accumulated);
    ``ceil(number)`` spikes (at least one when ``number > 0``), none when ``start < 0``
    or ``number <= 0``. Spikes after ``t_max`` are left out.
    """
    if noise != 0:
        raise ValueError("only deterministic NetStims (noise = 0) have fixed spike times")
    if not (start >= 0 and number > 0):
        return np.zeros(0)
    mean = interval if interval > 0.0 else 0.01  # invl(): a mean <= 0 becomes 0.01 ms
    event = start + mean - interval * (1.0 - noise)
    event = max(event, 0.0)
    count = max(1, math.ceil(number))
    if not math.isfinite(t_max) and count > MAX_NETSTIM_SPIKES:
        raise ValueError(
            f"a NetStim sends {count} spikes; pass t_max to export_model to bound them"
        )
    times = []
    t = 0.0 + event
    for _ in range(count):
        if t > t_max:
            break
        times.append(t)
        t = t + mean
    return np.array(times, dtype=np.float64)


def _segment_name(segment) -> str:
    return f"{segment.sec.name()}({segment.x:g})"


def _point_process_types() -> list[tuple[str, bool]]:
    """Every point-process type NEURON knows, with whether it is an artificial cell."""
    types = h.MechanismType(1)
    name = h.ref("")
    found = []
    for i in range(int(types.count())):
        types.select(i)
        types.selected(name)
        found.append((name[0], bool(types.is_artificial(i))))
    return found


def _objects(type_name: str) -> list:
    """Every object of a type; none when NEURON does not know the type (AmpaNmda before
    its mechanisms are loaded)."""
    if not hasattr(h, type_name):
        return []
    objects = h.List(type_name)
    return [objects.o(i) for i in range(int(objects.count()))]


def _neuron_order(located: list, node: list[int]) -> list:
    """``located`` (``h.List`` order) with the point processes that share a node put in
    the order NEURON adds their currents.

    NEURON keeps a mechanism's instances sorted by node, and at one node in the order of
    the node's property list (``seg.point_processes()``: the newest first, or the one
    placed there last). Only the order at a shared node changes the sums, so only those
    instances swap places among themselves; every other one keeps its ``h.List`` row.
    """
    slots: dict[int, list[int]] = defaultdict(list)
    for k, i in enumerate(node):
        slots[i].append(k)
    ordered = list(located)
    for rows in slots.values():
        if len(rows) < 2:
            continue
        members = [located[k] for k in rows]
        rank = {p.hname(): r for r, p in enumerate(members[0].get_segment().point_processes())}
        members.sort(key=lambda obj: rank.get(obj.hname(), len(rank)))
        for k, obj in zip(rows, members, strict=True):
            ordered[k] = obj
    return ordered


def point_process_order(type_name: str) -> list:
    """The located point processes of one type in the order of their rows in
    :func:`export_model`'s table: ``h.List`` order, except at shared nodes (see
    :func:`_neuron_order`). Use it to find a NEURON object's row for
    :meth:`dhs.engine.Engine.set` (``index``) and :meth:`~dhs.engine.Engine.set_events`."""
    _nrn.set_up_nodes()  # node_index() is 0 everywhere until NEURON numbers the nodes
    located = [obj for obj in _objects(type_name) if obj.has_loc()]
    return _neuron_order(located, [obj.get_segment().node_index() for obj in located])


def _netcon_source_is_voltage(netcon) -> bool:
    """True when the NetCon watches a range variable (``NetCon(seg._ref_v, ...)``)."""
    if netcon.pre() is not None:
        return False
    x = netcon.preloc()  # pushes the section when the source is a range variable
    if x >= 0:
        h.pop_section()
        return True
    return False


def _check_supported(point_types: list[tuple[str, bool]]) -> None:
    """Raise ValueError naming every unsupported mechanism and setting of the model."""
    mechanisms: dict[str, list[str]] = defaultdict(list)
    features: list[str] = []
    for section in h.allsec():
        info = section.psection()
        for name in info["density_mechs"]:
            if name not in DENSITY_MECHANISMS:
                mechanisms[name].append(section.name())
        for ion in info["ions"]:
            if ion not in SUPPORTED_IONS:
                mechanisms[f"{ion}_ion"].append(section.name())
            elif int(h.ion_style(f"{ion}_ion", sec=section)) & (_EINIT | _EADVANCE):
                features.append(
                    f"{ion}_ion in {section.name()} computes e{ion} from concentrations "
                    "(ion_style einit/eadvance)"
                )
    problems = [f"{name} in {', '.join(where)}" for name, where in mechanisms.items()]
    for type_name, artificial in point_types:
        if type_name in POINT_PROCESSES or type_name == "NetStim":
            continue
        objects = _objects(type_name)
        if not objects:
            continue
        if artificial:
            problems.append(f"{type_name} (artificial cell) x{len(objects)}")
            continue
        places = []
        for obj in objects:
            places.append(_segment_name(obj.get_segment()) if obj.has_loc() else "nowhere")
        problems.append(f"{type_name} (point process) in {', '.join(places)}")

    numbers = []
    for name in ENGINE_ORDER:
        try:
            numbers.append((mechanism_type(name), name))
        except ValueError:  # not loaded (AmpaNmda): none can be in the model
            continue
    if numbers != sorted(numbers):
        features.append(
            "NEURON's mechanism type numbers "
            + ", ".join(f"{name} {number}" for number, name in numbers)
            + " are not in the engine's order"
        )
    if h.CVode().active():
        features.append("the variable time step (CVode) is active")
    if int(h.secondorder) != 0:
        features.append(f"secondorder = {int(h.secondorder)} (only 0 is supported)")
    if _nrn.thread_count() > 1:
        features.append(f"{_nrn.thread_count()} threads (only 1 is supported)")
    if int(h.List("LinearMechanism").count()):
        features.append("LinearMechanism")
    synapses_exist = any(_objects(name) for name in SYNAPSES)
    if synapses_exist and getattr(h, "nrn_netrec_state_adjust", 0):
        features.append("nrn_netrec_state_adjust is set")
    for netcon in _objects("NetCon"):
        target = netcon.syn()
        if target is None:
            continue  # a spike recorder: it changes nothing in the simulation
        target_type = target.hname().split("[", 1)[0]
        if target_type == "NetStim":
            features.append(f"a NetCon drives {target.hname()}")
            continue
        if target_type not in SYNAPSES:
            continue  # already reported as an unsupported point process
        source = netcon.pre()
        if source is None:
            if _netcon_source_is_voltage(netcon):
                features.append(
                    f"a NetCon from a membrane potential drives {target.hname()} "
                    "(threshold-triggered synapses)"
                )
            continue
        source_type = source.hname().split("[", 1)[0]
        if source_type == "NetStim" and source.noise != 0:
            features.append(f"{source.hname()} has noise = {source.noise:g} (only 0)")
    lines = []
    if problems:
        lines.append("unsupported mechanisms: " + "; ".join(problems))
    if features:
        lines.append("unsupported features: " + "; ".join(features))
    if lines:
        raise ValueError("cannot export this NEURON model. " + "\n".join(lines))


def export_model(v_init: float = -65.0, *, t_max: float = math.inf) -> CellModel:
    """The current NEURON model as a :class:`dhs.engine.CellModel`.

    Parameters
    ----------
    v_init : float, default -65
        Initial potential in mV (the argument of ``h.finitialize``).
    t_max : float, optional
        NetStim spikes after ``t_max`` ms are left out (needed only for NetStims with a
        huge ``number``).

    Returns
    -------
    CellModel
        Node order, a and b are NEURON's; point processes appear in ``h.List`` order,
        except that those of one type at one node are in NEURON's order among
        themselves (the order in which NEURON sums their currents there; newest first).

    Raises
    ------
    ValueError
        When the model has no sections, or uses anything the engine does not support;
        the message lists every unsupported mechanism (with its sections or location)
        and every unsupported setting.
    """
    if not any(True for _ in h.allsec()):
        raise ValueError("the NEURON model has no sections")
    point_types = _point_process_types()
    _check_supported(point_types)

    nodes = node_map()
    a, b = read_coupling(nodes)
    n = nodes.n
    area = np.full(n, ZERO_AREA)
    cm = np.zeros(n)
    names = []
    for i, (section, x) in enumerate(zip(nodes.section, nodes.x, strict=True)):
        names.append(f"{section.name()}({x:g})")
        if 0.0 < x < 1.0:
            segment = section(x)
            area[i] = segment.area()
            cm[i] = segment.cm

    density: dict[str, dict[str, list]] = {name: defaultdict(list) for name in DENSITY_MECHANISMS}
    for section in h.allsec():
        for segment in section:
            node = segment.node_index()
            for mechanism in segment:
                name = mechanism.name()
                if name not in DENSITY_MECHANISMS:
                    continue  # ions
                values = density[name]
                values["node"].append(node)
                for p in MECHANISMS[name]:
                    if name == "hh" and p in ("ena", "ek"):
                        values[p].append(getattr(segment, p))
                    else:
                        values[p].append(getattr(mechanism, p))
    tables = {}
    for name, values in density.items():
        order = np.argsort(np.array(values["node"], dtype=np.int64), kind="stable")
        tables[name] = MechanismTable(
            name,
            np.array(values["node"], dtype=np.int64)[order],
            {p: np.array(values[p], dtype=np.float64)[order] for p in MECHANISMS[name]},
        )

    index_of: dict[str, tuple[str, int]] = {}
    for name in POINT_PROCESSES:
        located = point_process_order(name)
        node = [obj.get_segment().node_index() for obj in located]
        params = {p: [getattr(obj, p) for obj in located] for p in MECHANISMS[name]}
        tables[name] = MechanismTable(
            name,
            np.array(node, dtype=np.int64),
            {p: np.array(v, dtype=np.float64) for p, v in params.items()},
        )
        for k, obj in enumerate(located):
            index_of[obj.hname()] = (name, k)

    events: dict[str, list] = {name: [] for name in SYNAPSES}
    for netcon in _objects("NetCon"):
        target = netcon.syn()
        source = netcon.pre()
        if target is None or source is None or not netcon.active():
            continue
        if source.hname().split("[", 1)[0] != "NetStim" or target.hname() not in index_of:
            continue
        kind, synapse = index_of[target.hname()]
        spikes = netstim_spike_times(
            source.start, source.interval, source.number, source.noise, t_max
        )
        arrival = spikes + netcon.delay
        events[kind].append(
            (np.full(arrival.size, synapse), arrival, np.full(arrival.size, netcon.weight[0]))
        )
    event_tables = {}
    for kind, parts in events.items():
        if parts:
            synapse, time, weight = (np.concatenate([p[k] for p in parts]) for k in range(3))
            event_tables[kind] = SynapticEvents(synapse.astype(np.int64), time, weight)

    return CellModel(
        parent=nodes.parent,
        area=area,
        cm=cm,
        a=a,
        b=b,
        mechanisms=tables,
        events=event_tables,
        v_init=v_init,
        celsius=float(h.celsius),
        hh_tables=bool(getattr(h, "usetable_hh", 0)),
        node_names=tuple(names),
    )

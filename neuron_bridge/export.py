"""Export the live NEURON model as a NEURON-free :class:`dhs.engine.CellModel`.

:func:`export_model` reads the current NEURON session: the tree and NEURON's matrix
coefficients (:func:`neuron_bridge.extract.node_map`, ``h.fmatrix``), node areas,
diameters and capacitance; every mechanism in the model with the ``.mod`` text NEURON
compiled it from (``MechanismType.code()``), every parameter of every instance, the
GLOBALs, the ions (values per node, style, valence, ci0/co0); the point processes, each
with its hoc name; celsius and v_init; and the synaptic events that deterministic
NetStims send through NetCons. The result runs in :class:`dhs.engine.Engine` with NEURON's
fixed-step numerics and no NEURON at run time.

Anything the engine cannot reproduce raises one ``ValueError`` that starts with a short
summary (each mechanism, in how many sections or objects, and what the engine
supports) followed by the details: every unsupported construct of every ``.mod`` file
with its file and line, and unsupported settings (CVode, ``secondorder``, threads,
noisy NetStims, NetCons driven by a membrane potential, ...).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from neuron import h

from dhs import checks
from dhs.engine.mechanism import from_source
from dhs.engine.model import CellModel, IonTable, MechanismTable, SynapticEvents
from dhs.engine.nmodl.parse import NmodlError

from . import _nrn
from .extract import node_map, read_coupling

__all__ = ["SUPPORTED", "export_model", "netstim_spike_times", "point_process_order"]

ZERO_AREA = 100.0  # NEURON's internal area of a zero-area node (treeset.cpp)
MAX_NETSTIM_SPIKES = 1_000_000
#: What the engine runs, for messages.
SUPPORTED = (
    "density mechanisms and point processes from .mod files (SUFFIX, POINT_PROCESS, "
    "USEION READ/WRITE, NONSPECIFIC_CURRENT, ELECTRODE_CURRENT, RANGE, GLOBAL, "
    "PARAMETER, ASSIGNED, STATE, INITIAL, FUNCTION, PROCEDURE, TABLE, "
    "SOLVE ... METHOD cnexp, NET_RECEIVE); NetStims with noise = 0 driving synapses "
    "through NetCons; the fixed step with secondorder = 0 and one thread"
)


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


def _segment_name(segment) -> str:
    return f"{segment.sec.name()}({segment.x:g})"


def _types(kind: int) -> list[tuple[str, int, bool]]:
    """``(name, internal type, artificial)`` of every mechanism of a kind (0 density,
    1 point process) that NEURON knows."""
    types = h.MechanismType(kind)
    name = h.ref("")
    found = []
    for i in range(int(types.count())):
        types.select(i)
        types.selected(name)
        artificial = bool(types.is_artificial(i)) if kind == 1 else False
        found.append((name[0], int(types.internal_type()), artificial))
    return found


def memb_order(names, type_number, writers: set[str], extracellular: int) -> list[str]:
    """NEURON's order of mechanisms (``memb_order_``), which its thread lists follow: the
    order INITIAL blocks run, currents are summed and states advance.

    It is the type order, except that ``nrn_writes_conc`` (called for a mechanism that
    WRITEs a concentration, and for each ion) inserts the mechanism just after the ions
    registered so far, in front of the concentration writers registered before it. So
    the types up to ``extracellular`` come first, then the concentration writers, the
    most recently registered first, then all others in type order.
    """

    def key(name: str) -> tuple[int, int]:
        number = type_number(name)
        if number <= extracellular:
            return (0, number)
        if name in writers:
            return (1, -number)
        return (2, number)

    return sorted(names, key=key)


def _source(kind: int, name: str) -> tuple[str, str]:
    """The ``.mod`` text NEURON compiled a mechanism from, and its file name."""
    types = h.MechanismType(kind)
    types.select(name)
    return str(types.code() or ""), str(types.file() or f"<{name}.mod>")


def _settings_problems(receivers: set[str]) -> list[str]:
    problems = []
    if h.CVode().active():
        problems.append("the variable time step (CVode) is active: use the fixed step")
    if int(h.secondorder) != 0:
        problems.append(f"secondorder = {int(h.secondorder)} (only 0 is supported)")
    if _nrn.thread_count() > 1:
        problems.append(f"{_nrn.thread_count()} threads (export with nthread(1))")
    if hasattr(h, "LinearMechanism") and int(h.List("LinearMechanism").count()):
        problems.append("LinearMechanism")
    if receivers and getattr(h, "nrn_netrec_state_adjust", 0):
        problems.append("nrn_netrec_state_adjust is set")
    for netcon in _objects("NetCon"):
        target = netcon.syn()
        if target is None:
            continue  # a spike recorder changes nothing in the simulation
        target_type = target.hname().split("[", 1)[0]
        source = netcon.pre()
        if source is None:
            if _netcon_source_is_voltage(netcon):
                problems.append(
                    f"a NetCon from a membrane potential drives {target.hname()} "
                    "(threshold-triggered synapses)"
                )
            continue
        source_type = source.hname().split("[", 1)[0]
        if source_type != "NetStim":
            problems.append(f"{target.hname()} is driven by {source.hname()} (only NetStims)")
        elif source.noise != 0:
            problems.append(f"{source.hname()} has noise = {source.noise:g} (only 0)")
        if target_type == "NetStim":
            problems.append(f"a NetCon drives {target.hname()}")
    return problems


def _places(names: list[str], shown: int = 4) -> str:
    """A short list of places: the first few, then how many in all."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])}, ... ({len(names)} in all)"


def _first_problem(error: NmodlError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _fail(summary: list[str], details: list[str]) -> None:
    text = ["cannot export this NEURON model:"] + [f"  {line}" for line in summary]
    text.append(f"The engine runs {SUPPORTED}.")
    if details:
        text.append("Details:")
        text += [f"  {line}" for line in details]
    raise ValueError("\n".join(text))


def export_model(v_init: float | None = None, *, t_max: float = math.inf) -> CellModel:
    """The current NEURON model as a :class:`dhs.engine.CellModel`.

    Parameters
    ----------
    v_init : float, optional
        Initial potential in mV (the argument of ``h.finitialize``); default
        ``h.v_init`` (-65 mV when the standard run library is not loaded).
    t_max : float, optional
        NetStim spikes after ``t_max`` ms are left out (needed only for NetStims with a
        huge ``number``).

    Returns
    -------
    CellModel
        Node order, a and b are NEURON's; mechanisms in NEURON's order (``memb_order_``); point
        processes of a type in the order NEURON sums their currents
        (:func:`point_process_order`), each labelled with its hoc name.

    Raises
    ------
    ValueError
        When the model has no sections, or uses anything the engine does not run; the
        message starts with a summary and lists everything at once.
    """
    if v_init is not None:
        v_init = checks.finite_number("v_init", v_init, unit="mV")
    t_max = float(t_max) if t_max == math.inf else checks.stop_time("t_max", t_max)
    if not any(True for _ in h.allsec()):
        raise ValueError("the NEURON model has no sections")
    if v_init is None:
        v_init = float(h.v_init) if hasattr(h, "v_init") else -65.0
    _nrn.set_up_nodes()
    nodes = node_map()
    n = nodes.n
    # ---- which mechanisms the model uses
    used_density: dict[str, list[str]] = defaultdict(list)
    ions_used: set[str] = set()
    for section in h.allsec():
        info = section.psection()
        for name in info["density_mechs"]:
            used_density[name].append(section.name())
        ions_used |= set(info["ions"])
    density_types = {name: number for name, number, _ in _types(0)}
    point_types = {name: (number, artificial) for name, number, artificial in _types(1)}
    used_point = {name: _objects(name) for name in point_types if name != "NetStim"}
    used_point = {name: objects for name, objects in used_point.items() if objects}
    summary: list[str] = []
    details: list[str] = []
    mechanisms = {}
    for name, sections in used_density.items():
        where = _places(sections)
        try:
            text, path = _source(0, name)
            if not text:
                summary.append(
                    f"{name} in {where} (density mechanism): built into NEURON "
                    "without a .mod file; the engine cannot run it"
                )
                continue
            mechanisms[name] = from_source(text, path)
        except NmodlError as error:
            summary.append(f"{name} in {where} (density mechanism): {_first_problem(error)}")
            details.append(f"{name} is in {len(sections)} section(s): {', '.join(sections)}")
            details.append(str(error))
    for name, objects in used_point.items():
        where = _places(
            [_segment_name(o.get_segment()) if o.has_loc() else "nowhere" for o in objects]
        )
        if point_types[name][1]:
            summary.append(f"{name} (artificial cell) x{len(objects)}: not supported")
            continue
        try:
            text, path = _source(1, name)
            if not text:
                summary.append(
                    f"{name} (point process) in {where}: built into NEURON "
                    "without a .mod file; the engine cannot run it"
                )
                continue
            mechanisms[name] = from_source(text, path)
        except NmodlError as error:
            summary.append(f"{name} (point process) in {where}: {_first_problem(error)}")
            details.append(str(error))
        unplaced = [obj.hname() for obj in objects if not obj.has_loc()]
        if unplaced:
            details.append(f"{name}: {', '.join(unplaced)} are not placed in a section (ignored)")
    receivers = {name for name, m in mechanisms.items() if m.receives_events}
    settings = _settings_problems(receivers)
    if settings:
        summary.append("settings: " + "; ".join(settings))
    if summary:
        _fail(summary, details)
    # ---- the tree and the nodes
    a, b = read_coupling(nodes)
    area = np.full(n, ZERO_AREA)
    cm = np.zeros(n)
    diam = np.zeros(n)
    names = []
    for i, (section, x) in enumerate(zip(nodes.section, nodes.x, strict=True)):
        names.append(f"{section.name()}({x:g})")
        if 0.0 < x < 1.0:
            segment = section(x)
            area[i] = segment.area()
            cm[i] = segment.cm
            diam[i] = segment.diam

    def type_number(name: str) -> int:
        return density_types[name] if name in density_types else point_types[name][0]

    order = memb_order(
        mechanisms,
        type_number,
        {name for name, m in mechanisms.items() if m.writes_concentration},
        density_types["extracellular"],
    )
    tables = {}
    for name in order:
        mechanism = mechanisms[name]
        globals_ = {g: float(getattr(h, f"{g}_{name}")) for g in mechanism.globals}
        # GLOBALs that a block assigns are per-instance copies in the engine
        written_globals = set(mechanism.translation.global_copies)
        if mechanism.is_point_process:
            located = point_process_order(name)
            node = [obj.get_segment().node_index() for obj in located]
            params = {
                p: [
                    float(getattr(h, f"{p}_{name}"))
                    if p in written_globals
                    else float(getattr(obj, p))
                    for obj in located
                ]
                for p in mechanism.parameters
            }
            labels = tuple(obj.hname() for obj in located)
        else:
            node, labels = [], ()
            params = {p: [] for p in mechanism.parameters}
            for section in h.allsec():
                if not section.has_membrane(name):
                    continue
                for segment in section:
                    node.append(segment.node_index())
                    instance = getattr(segment, name)
                    for p in mechanism.parameters:
                        value = (
                            getattr(h, f"{p}_{name}")
                            if p in written_globals
                            else getattr(instance, p)
                        )
                        params[p].append(float(value))
            ranks = np.argsort(np.array(node, dtype=np.int64), kind="stable")
            node = list(np.array(node, dtype=np.int64)[ranks])
            params = {p: list(np.array(v)[ranks]) for p, v in params.items()}
        tables[name] = MechanismTable(
            name,
            np.array(node, dtype=np.int64),
            {p: np.array(v, dtype=np.float64) for p, v in params.items()},
            globals_,
            mechanism.source,
            labels,
        )
    ions = {}
    for species in sorted(ions_used):
        species = species.removesuffix("_ion")
        ion = f"{species}_ion"
        node, e, ci, co, style = [], [], [], [], []
        for section in h.allsec():
            if not section.has_membrane(ion):
                continue
            section_style = int(h.ion_style(ion, sec=section))
            for segment in section:
                node.append(segment.node_index())
                e.append(getattr(segment, f"e{species}"))
                ci.append(getattr(segment, f"{species}i"))
                co.append(getattr(segment, f"{species}o"))
                style.append(section_style)
        ranks = np.argsort(np.array(node, dtype=np.int64), kind="stable")
        ions[species] = IonTable(
            species,
            np.array(node, dtype=np.int64)[ranks],
            np.array(e)[ranks],
            np.array(ci)[ranks],
            np.array(co)[ranks],
            np.array(style, dtype=np.int64)[ranks],
            float(h.ion_charge(ion)),
            float(getattr(h, f"{species}i0_{ion}")),
            float(getattr(h, f"{species}o0_{ion}")),
        )
    # ---- events from deterministic NetStims
    index_of = {
        label: (name, k) for name, table in tables.items() for k, label in enumerate(table.labels)
    }
    events: dict[str, list] = defaultdict(list)
    for netcon in _objects("NetCon"):
        target = netcon.syn()
        source = netcon.pre()
        if target is None or source is None or not netcon.active():
            continue
        if target.hname() not in index_of:
            continue
        kind, synapse = index_of[target.hname()]
        spikes = netstim_spike_times(
            source.start, source.interval, source.number, source.noise, t_max
        )
        arrival = spikes + netcon.delay
        n_arguments = max(1, len(mechanisms[kind].net_receive_arguments))
        weight = np.array([netcon.weight[w] for w in range(n_arguments)])
        events[kind].append(
            (np.full(arrival.size, synapse), arrival, np.tile(weight, (arrival.size, 1)))
        )
    event_tables = {}
    for kind, parts in events.items():
        synapse, time, weight = (np.concatenate([p[k] for p in parts]) for k in range(3))
        event_tables[kind] = SynapticEvents(synapse.astype(np.int64), time, weight)
    return CellModel(
        parent=nodes.parent,
        area=area,
        cm=cm,
        a=a,
        b=b,
        mechanisms=tables,
        ions=ions,
        events=event_tables,
        v_init=v_init,
        celsius=float(h.celsius),
        diam=diam,
        node_names=tuple(names),
    )

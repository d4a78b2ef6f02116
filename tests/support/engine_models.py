"""Small engine models built by hand (no NEURON): shared by the engine's tests.

:data:`CASES` are sets of real ``.mod`` files (NEURON's built-ins and AmpaNmda, hh's
table, the BluePyOpt L5PC's 12 mechanisms, the neuron wheel's release mechanisms, the
Newton-solved schemes); :func:`model_of` puts one on a random branched cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dhs.engine import CellModel, MechanismTable, RunOptions, SynapticEvents

__all__ = ["CASES", "EngineCase", "model_of", "options_of", "random_tree", "table"]


def table(name: str, node, **params) -> MechanismTable:
    """A built-in mechanism's table with one value per parameter (broadcast to every
    instance); hh evaluates its rates exactly (``usetable = 0``)."""
    node = np.atleast_1d(np.asarray(node, dtype=np.int64))
    return MechanismTable(
        name, node, {p: np.broadcast_to(np.asarray(v, float), node.shape).copy()
                     for p, v in params.items()},
        {"usetable": 0.0} if name == "hh" else {},
    )  # fmt: skip


def random_tree(n: int, seed: int, reach: int) -> dict:
    """A branched tree in parent-before-child order with NEURON-like coefficients: the
    ``parent, area, cm, a, b`` of a :class:`CellModel` (node 0 a root without membrane)."""
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(max(0, i - reach), i)) for i in range(1, n)])
    area = rng.uniform(50.0, 500.0, n)
    area[0] = 100.0
    cm = np.where(np.arange(n) == 0, 0.0, 1.0)
    a = -rng.uniform(0.5, 5.0, n)
    b = -rng.uniform(0.5, 5.0, n)
    a[0] = b[0] = 0.0
    return {"parent": parent, "area": area, "cm": cm, "a": a, "b": b}


RELEASE = "share/nrn/demo/release"
L5PC_MECHANISMS = "examples/l5pc/mechanisms"
THALAMOCORTICAL_MECHANISMS = "examples/thalamocortical-cell/mechanisms"
L5PC_NAMES = ("Ca_HVA", "Ca_LVAst", "CaDynamics_E2", "Ih", "Im", "K_Pst", "K_Tst", "Nap_Et2",
              "NaTa_t", "NaTs2_t", "SK_E2", "SKv3_1")  # fmt: skip

#: A three-state Markov channel with CONSERVE (KINETIC, METHOD sparse).
MARKOV_SODIUM = """
NEURON { SUFFIX na3s_check USEION na READ ena WRITE ina RANGE gbar }
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER { gbar = 0.12 (S/cm2) }
ASSIGNED { v (mV) ena (mV) ina (mA/cm2) a1 (/ms) b1 (/ms) a2 (/ms) b2 (/ms) }
STATE { C I O }
BREAKPOINT { SOLVE scheme METHOD sparse ina = gbar*O*(v - ena) }
INITIAL { rates(v) C = 1 O = 0 I = 0 }
KINETIC scheme {
    rates(v)
    ~ C <-> O (a1, b1)
    ~ O <-> I (a2, b2)
    ~ I <-> C (0.02, 0.001)
    CONSERVE C + O + I = 1
}
PROCEDURE rates(v (mV)) {
    a1 = 0.5*exp((v + 40)/10)
    b1 = 0.2*exp(-(v + 40)/20)
    a2 = 0.3*exp((v + 40)/15)
    b2 = 0.01
}
"""


@dataclass(frozen=True)
class EngineCase:
    """One set of mechanisms on a small cell.

    Attributes
    ----------
    sources : tuple of (str, str)
        ``(where, file name)`` of each ``.mod`` file after the built-ins: ``where`` is
        ``"neuron"`` (the neuron wheel, ``share/nrn/demo/release``), ``"l5pc"`` or
        ``"thalamocortical"`` (BluePyOpt's sdist, fetched into the test cache), or
        ``"text"`` (a module constant here).
    builtins : tuple of str
        Built-in mechanisms (NEURON's ``share/modfile`` and ``dhs/engine/mod``).
    parameters : dict of str to float
        ``"mechanism.parameter"`` values at every node.
    globals : dict of str to dict of str to float
    records : tuple of str
        Ion or mechanism variables recorded at node 1 (``"cai"``, ``"hh.m"``).
    """

    sources: tuple[tuple[str, str], ...] = ()
    builtins: tuple[str, ...] = ("pas", "IClamp")
    parameters: dict[str, float] = field(default_factory=dict)
    globals: dict[str, dict[str, float]] = field(default_factory=dict)
    records: tuple[str, ...] = ()
    amp: float = 0.3
    celsius: float = 6.3
    synapses: bool = False


CASES = {
    "passive": EngineCase(),
    "builtins": EngineCase(
        builtins=("pas", "IClamp", "ExpSyn", "Exp2Syn", "hh", "AmpaNmda"),
        globals={"hh": {"usetable": 0.0}},
        records=("hh.m", "ina"),
        synapses=True,
    ),
    "hh_table": EngineCase(builtins=("pas", "IClamp", "hh"), records=("hh.n",)),
    "l5pc": EngineCase(
        sources=tuple(("l5pc", name) for name in L5PC_NAMES),
        parameters={
            "NaTa_t.gNaTa_tbar": 2.0,
            "NaTs2_t.gNaTs2_tbar": 0.5,
            "SKv3_1.gSKv3_1bar": 0.5,
            "K_Tst.gK_Tstbar": 0.05,
            "K_Pst.gK_Pstbar": 0.05,
            "Nap_Et2.gNap_Et2bar": 0.001,
            "Ca_HVA.gCa_HVAbar": 0.001,
            "Ca_LVAst.gCa_LVAstbar": 0.005,
            "SK_E2.gSK_E2bar": 0.01,
            "Ih.gIhbar": 0.0002,
            "Im.gImbar": 0.001,
            "CaDynamics_E2.gamma": 0.0005,
        },
        records=("cai", "eca", "ica"),
        amp=0.5,
        celsius=34.0,
    ),
    "release": EngineCase(
        sources=tuple(
            ("neuron", name) for name in ("nachan", "khhchan", "cachan1", "capump", "nacaex")
        ),
        records=("cai", "ica", "ina"),
    ),
    "implicit": EngineCase(
        sources=(
            ("thalamocortical", "TC_cadecay"),
            ("thalamocortical", "TC_iL"),
            ("neuron", "release"),
            ("text", "MARKOV_SODIUM"),
        ),
        builtins=("pas", "IClamp", "hh"),
        records=("cai", "na3s_check.O"),
        celsius=34.0,
    ),
}


def _mod_text(where: str, name: str) -> str:
    if where == "text":
        return globals()[name]
    if where == "neuron":
        import importlib.util

        origin = importlib.util.find_spec("neuron").origin
        folder = Path(origin).parent / ".data" / RELEASE
    else:
        from fetched import package_root

        relative = L5PC_MECHANISMS if where == "l5pc" else THALAMOCORTICAL_MECHANISMS
        folder = package_root("bluepyopt", "1.14.26") / relative
    return (folder / f"{name}.mod").read_text()


def model_of(case: EngineCase, n_nodes: int = 12, seed: int = 3) -> CellModel:
    """The case's mechanisms on a branched cell of ``n_nodes`` nodes (node 0 a root
    without membrane; the density mechanisms everywhere else; an IClamp at node 1)."""
    from dhs.engine import from_source

    tree = random_tree(n_nodes, seed, 4)
    rng = np.random.default_rng(seed + 1)
    diam = rng.uniform(0.5, 3.0, n_nodes)
    diam[0] = 0.0
    membrane = np.arange(1, n_nodes)
    mechanisms: dict[str, MechanismTable] = {}

    def add(name: str, source: str = "") -> None:
        mechanism = from_source(source) if source else None
        kind_is_point = mechanism.is_point_process if mechanism else name in _POINT_BUILTINS
        node = _POINT_BUILTINS.get(name, [1]) if kind_is_point else membrane
        node = np.array([i % n_nodes for i in node], dtype=np.int64)
        params = {
            key.split(".", 1)[1]: np.full(node.size, value)
            for key, value in case.parameters.items()
            if key.split(".", 1)[0] == name
        }
        if name == "IClamp":
            params = {"del": np.full(node.size, 0.5), "dur": np.full(node.size, 2.5),
                      "amp": np.full(node.size, case.amp)}  # fmt: skip
        mechanisms[name] = MechanismTable(
            name, node, params, dict(case.globals.get(name, {})), source
        )

    for name in case.builtins:
        add(name)
    for where, name in case.sources:
        text = _mod_text(where, name)
        add(from_source(text).name, text)
    events = {}
    if case.synapses:
        events = {
            "ExpSyn": SynapticEvents(np.array([0, 1, 0]), np.array([0.3, 1.0, 1.5]),
                                     np.array([0.01, 0.02, 0.01])),
            "Exp2Syn": SynapticEvents(np.array([0]), np.array([0.7]), np.array([0.02])),
            "AmpaNmda": SynapticEvents(np.array([0, 1]), np.array([0.4, 1.1]),
                                       np.array([0.003, 0.004])),
        }  # fmt: skip
    return CellModel(mechanisms=mechanisms, events=events, celsius=case.celsius, diam=diam, **tree)


#: Nodes of the point processes (modulo the cell's size).
_POINT_BUILTINS = {"IClamp": [1, 0], "ExpSyn": [5, -1, 5], "Exp2Syn": [9], "AmpaNmda": [6, -3, 6]}


def options_of(case: EngineCase, model: CellModel, tstop: float) -> RunOptions:
    records = tuple((name, 1) for name in case.records)
    return RunOptions(tstop, record_nodes=tuple(range(model.n)), record=records, spike_node=1)

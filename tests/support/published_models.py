"""Published models built in NEURON exactly as their own packages build them.

:func:`build_l5pc` is the Blue Brain L5 thick-tufted pyramidal cell of BluePyOpt's
``examples/l5pc`` (its sdist is fetched at test time, never vendored), built as
BluePyOpt's ``ephys`` package builds it, without importing BluePyOpt:

* the morphology ``C060114A7.asc`` read by Import3d into a cell template with the
  section lists ``all``, ``somatic``, ``axonal``, ``basal``, ``apical``;
* ``nseg = 1 + 2 * int(L / 40)`` for every section (``set_nseg``), then the axon
  replaced by two 30 µm stubs (``replace_axon`` with ``axon_stub_length=60``);
* the mechanisms of ``mechanisms.json`` per section list, then every parameter of
  ``parameters.json`` in its order, with the released values of ``l5pc_analysis.py``;
  the apical Ih gradient is BluePyOpt's soma-distance scaler (distance from the soma's
  centre to each segment's centre);
* the protocol's IClamps at ``soma[0](0.5)`` (Step3: a 0.95 nA step from 700 ms for
  2 s on a -0.126 nA holding current, 3 s).

:func:`build_thalamocortical` is the thalamocortical cell of BluePyOpt's
``examples/thalamocortical-cell`` (Iavarone et al. 2019), built as its
``CellEvalSetup/template.py`` and ``evaluator.py`` build it, without importing BluePyOpt:

* the e-type's morphology of ``config/recipes.json`` (``cAD_ltb``: ``jy160728_A_idA.asc``)
  read by Import3d into BluePyOpt's empty cell template (section lists ``all``,
  ``somatic``, ``basal``, ``apical``, ``axonal``, ``myelinated``);
* ``nseg = 1 + 2 * int(L / 40)`` (``do_set_nseg=40.``), then the axon replaced by two
  30 µm stubs, as for the L5PC;
* the mechanisms of ``config/params/TC.json`` per section list, mechanism by mechanism
  (``alldend`` is ``basal``, ``somadend`` is ``basal`` then ``somatic``), then its
  parameters in order: the globals ``v_init = -79`` mV and ``celsius = 34``, the frozen
  values (``cm``, ``Ra``, ``ena``, ``ek``, ``e_pas``) and, for the parameters given as
  bounds, the optimised values of ``results/<etype>_params.csv``, row ``modid`` (the
  notebook's ``modid = 62``, the cAD_ltb model of the paper), in the order of
  ``evaluator.param_dict``; the file has no distributions, so every value is uniform
  (``NrnSectionParameter``, scaler ×1 + 0);
* the protocol's step and holding IClamps at ``soma[0](0.5)``, step first
  (``config/protocols/<etype>.json``; Step_200 of cAD_ltb: a 0.118859 nA step from
  800 ms for 1.35 s on a 0.134536 nA holding current, 2.4 s). The example simulates
  with CVode; the tests use NEURON's fixed step.

NEURON loads one mechanism library per process, so use it in a child process.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from fetched import package_root

__all__ = [
    "L5PC_RELEASE",
    "build_l5pc",
    "build_thalamocortical",
    "l5pc_folder",
    "thalamocortical_folder",
]

#: ``release_params`` of BluePyOpt's ``examples/l5pc/l5pc_analysis.py``.
L5PC_RELEASE = {
    "gNaTs2_tbar_NaTs2_t.apical": 0.026145,
    "gSKv3_1bar_SKv3_1.apical": 0.004226,
    "gImbar_Im.apical": 0.000143,
    "gNaTa_tbar_NaTa_t.axonal": 3.137968,
    "gK_Tstbar_K_Tst.axonal": 0.089259,
    "gamma_CaDynamics_E2.axonal": 0.002910,
    "gNap_Et2bar_Nap_Et2.axonal": 0.006827,
    "gSK_E2bar_SK_E2.axonal": 0.007104,
    "gCa_HVAbar_Ca_HVA.axonal": 0.000990,
    "gK_Pstbar_K_Pst.axonal": 0.973538,
    "gSKv3_1bar_SKv3_1.axonal": 1.021945,
    "decay_CaDynamics_E2.axonal": 287.198731,
    "gCa_LVAstbar_Ca_LVAst.axonal": 0.008752,
    "gamma_CaDynamics_E2.somatic": 0.000609,
    "gSKv3_1bar_SKv3_1.somatic": 0.303472,
    "gSK_E2bar_SK_E2.somatic": 0.008407,
    "gCa_HVAbar_Ca_HVA.somatic": 0.000994,
    "gNaTs2_tbar_NaTs2_t.somatic": 0.983955,
    "decay_CaDynamics_E2.somatic": 210.485284,
    "gCa_LVAstbar_Ca_LVAst.somatic": 0.000333,
}

_TEMPLATE = """
begintemplate L5PC_cell
  public init, all, somatic, axonal, basal, apical, soma, dend, apic, axon
  objref all, somatic, axonal, basal, apical, this
  create soma[1], dend[1], apic[1], axon[1]
  proc init() {
    all = new SectionList()
    somatic = new SectionList()
    axonal = new SectionList()
    basal = new SectionList()
    apical = new SectionList()
    forall delete_section()
  }
endtemplate L5PC_cell
"""


def l5pc_folder() -> Path:
    """``examples/l5pc`` of the BluePyOpt 1.14.26 sdist (fetched into the test cache)."""
    return package_root("bluepyopt", "1.14.26") / "examples" / "l5pc"


def build_l5pc(protocol: str = "Step3") -> dict:
    """Build the released L5PC and a protocol in this process's NEURON session.

    The L5PC's mechanisms must be loaded already (``load_mod_mechanisms`` on
    ``l5pc_folder() / "mechanisms"``).

    Returns
    -------
    dict
        ``cell`` (the template object; keep it referenced), ``clamps`` (the IClamps,
        step first), ``tstop`` (ms), ``soma`` (``soma[0](0.5)``), ``apical_tip`` (the
        far end's segment of the apical section farthest from the soma).
    """
    from neuron import h

    folder = l5pc_folder()
    h.load_file("stdrun.hoc")
    h.load_file("import3d.hoc")
    if not hasattr(h, "L5PC_cell"):
        h(_TEMPLATE)
    cell = h.L5PC_cell()
    _morphology(h, folder / "morphology" / "C060114A7.asc").instantiate(cell)
    for section in cell.all:
        section.nseg = 1 + 2 * int(section.L / 40)
    _replace_axon(h, cell, stub_length=60.0, nseg_frequency=40.0)
    lists = {
        "all": cell.all,
        "somatic": cell.somatic,
        "axonal": cell.axonal,
        "basal": cell.basal,
        "apical": cell.apical,
    }
    for name, locations in json.loads((folder / "config" / "mechanisms.json").read_text()).items():
        for mechanism in locations:
            for section in lists[name]:
                section.insert(mechanism)
    h.distance(0, 0.5, sec=cell.soma[0])
    for parameter in json.loads((folder / "config" / "parameters.json").read_text()):
        name = parameter["param_name"]
        if parameter["type"] == "global":
            setattr(h, name, parameter["value"])
            continue
        where = parameter["sectionlist"]
        value = L5PC_RELEASE.get(f"{name}.{where}", parameter.get("value"))
        for section in lists[where]:
            if parameter["type"] == "section":
                setattr(section, name, value)
                continue
            for segment in section:
                if parameter["dist_type"] == "exp":
                    distance = h.distance(1, segment.x, sec=section)
                    scaled = eval(
                        parameter["dist"].format(distance=distance, value=value), {"math": math}
                    )  # the formula of parameters.json
                else:
                    scaled = value
                setattr(segment, name, scaled)
    stimuli = json.loads((folder / "config" / "protocols.json").read_text())[protocol]["stimuli"]
    clamps = []
    for stimulus in stimuli:
        clamp = h.IClamp(cell.soma[0](0.5))
        clamp.delay, clamp.dur, clamp.amp = stimulus["delay"], stimulus["duration"], stimulus["amp"]
        clamps.append(clamp)
    h.distance(0, 0.5, sec=cell.soma[0])
    far = max(cell.apical, key=lambda section: h.distance(1, 1.0, sec=section))
    return {
        "cell": cell,
        "clamps": clamps,
        "tstop": float(stimuli[0]["totduration"]),
        "soma": cell.soma[0](0.5),
        "apical_tip": far(1.0 - 0.5 / far.nseg),
    }


#: Import3d's parse of each morphology file, per session: reading the L5PC's ``.asc`` is
#: 0.54 s of the 0.68 s a cell takes to build (the benchmarks build up to 1,000), and
#: instantiating one parse again gives the same sections.
_PARSED: dict[str, object] = {}


def _morphology(h, path: Path):
    """An ``Import3d_GUI`` holding ``path``'s parse (``instantiate(cell)`` builds it)."""
    key = str(path)
    if key not in _PARSED:
        reader = h.Import3d_Neurolucida3()
        reader.quiet = 1
        h.hoc_stdout("/dev/null")
        reader.input(key)
        h.hoc_stdout()
        _PARSED[key] = h.Import3d_GUI(reader, 0)
    return _PARSED[key]


#: BluePyOpt's ``CellModel.create_empty_template`` with its default section lists and
#: section arrays (``init`` deletes the arrays; Import3d creates the cell's sections).
_BLUEPYOPT_TEMPLATE = """
begintemplate {name}
  objref this, CellRef, all, somatic, basal, apical, axonal, myelinated
  proc init() {{
    all = new SectionList()
    somatic = new SectionList()
    basal = new SectionList()
    apical = new SectionList()
    axonal = new SectionList()
    myelinated = new SectionList()
    forall delete_section()
    CellRef = this
  }}
  gid = 0
  proc destroy() {{localobj nil
    CellRef = nil
  }}
  create soma[1], dend[1], apic[1], axon[1], myelin[1]
endtemplate {name}
"""

#: ``CellEvalSetup/template.py``'s ``multi_locations``: the section lists of a name.
_TC_LOCATIONS = {
    "alldend": ["basal"],
    "somadend": ["basal", "somatic"],
    "somaxon": ["axonal", "somatic"],
    "allact": ["basal", "somatic", "axonal"],
}


def thalamocortical_folder() -> Path:
    """``examples/thalamocortical-cell`` of the BluePyOpt 1.14.26 sdist (test cache)."""
    return package_root("bluepyopt", "1.14.26") / "examples" / "thalamocortical-cell"


def build_thalamocortical(
    protocol: str = "Step_200", etype: str = "cAD_ltb", modid: int = 62
) -> dict:
    """Build the optimised thalamocortical cell and a protocol in this NEURON session.

    The example's mechanisms must be loaded already (``load_mod_mechanisms`` on
    ``thalamocortical_folder() / "mechanisms"``).

    Parameters
    ----------
    protocol : str
        A protocol of ``config/protocols/<etype>.json`` (a ``StepProtocol``).
    etype : {"cAD_ltb", "cNAD_ltb"}
        The e-type of ``config/recipes.json`` (its morphology and protocols).
    modid : int
        The row of ``results/<etype>_params.csv`` (the notebook's 62 for cAD_ltb).

    Returns
    -------
    dict
        ``cell`` (the template object; keep it referenced), ``clamps`` (the IClamps,
        step first), ``tstop`` (ms), ``soma`` (``soma[0](0.5)``), ``dendrite_tip`` (the
        far end's segment of the basal section farthest from the soma), ``parameters``
        (the optimised values by BluePyOpt's ``name.sectionlist``).
    """
    from neuron import h

    folder = thalamocortical_folder()
    recipe = json.loads((folder / "config" / "recipes.json").read_text())[etype]
    definitions = json.loads((folder / recipe["params"]).read_text())
    with open(folder / "results" / f"{etype}_params.csv", newline="") as rows:
        values = list(csv.reader(rows, quoting=csv.QUOTE_NONNUMERIC))[modid]
    h.load_file("stdrun.hoc")
    h.load_file("import3d.hoc")
    if not hasattr(h, etype):
        h(_BLUEPYOPT_TEMPLATE.format(name=etype))
    cell = getattr(h, etype)()
    _morphology(h, folder / recipe["morph_path"] / recipe["morphology"]).instantiate(cell)
    for section in cell.all:
        section.nseg = 1 + 2 * int(section.L / 40.0)
    _replace_axon(h, cell, stub_length=60.0, nseg_frequency=40.0)

    def sections(where: str):
        for name in _TC_LOCATIONS.get(where, [where]):
            yield from getattr(cell, name)

    for where, channels in definitions["mechanisms"].items():
        for mechanism in channels["mech"]:
            for section in sections(where):
                section.insert(mechanism)
    free = [
        (where, parameter)
        for where, parameters in definitions["parameters"].items()
        if where != "__comment"
        for parameter in parameters
        if isinstance(parameter["val"], list)
    ]
    if len(values) != len(free):
        raise ValueError(f"{len(values)} values for {len(free)} free parameters")
    optimised = {
        f"{parameter['name']}.{where}": value
        for (where, parameter), value in zip(free, values, strict=True)
    }
    for where, parameters in definitions["parameters"].items():
        if where == "__comment":
            continue
        for parameter in parameters:
            name = parameter["name"]
            value = optimised.get(f"{name}.{where}", parameter["val"])
            if where == "global":
                setattr(h, name, value)
                continue
            for section in sections(where):
                setattr(section, name, value)
    stimuli = json.loads((folder / recipe["protocol"]).read_text())[protocol]["stimuli"]
    clamps = []
    for stimulus in (stimuli[key] for key in ("step", "holding") if key in stimuli):
        clamp = h.IClamp(cell.soma[0](0.5))
        clamp.delay, clamp.dur, clamp.amp = stimulus["delay"], stimulus["duration"], stimulus["amp"]
        clamps.append(clamp)
    h.distance(0, 0.5, sec=cell.soma[0])
    far = max(cell.basal, key=lambda section: h.distance(1, 1.0, sec=section))
    return {
        "cell": cell,
        "clamps": clamps,
        "tstop": float(stimuli["step"]["totduration"]),
        "soma": cell.soma[0](0.5),
        "dendrite_tip": far(1.0 - 0.5 / far.nseg),
        "parameters": optimised,
    }


def _replace_axon(h, cell, stub_length: float, nseg_frequency: float) -> None:
    """BluePyOpt's ``replace_axon``: two stubs of ``stub_length / 2`` µm."""
    axon = list(cell.axonal)
    if not axon:
        diameters = [1.0, 1.0]
    elif len(axon) == 1:
        diameters = [cell.axon[0].diam] * 2
    else:
        diameters = [cell.axon[0].diam] * 2
        h.distance(0, 0.5, sec=cell.soma[0])
        for section in axon:
            if h.distance(1, 0.5, sec=section) > stub_length:
                diameters[1] = section.diam
                break
    for section in axon:
        h.delete_section(sec=section)
    h.execute("create axon[2]", cell)
    for index, section in enumerate(cell.axon):
        section.L = stub_length / 2
        section.nseg = 1 + 2 * int(section.L / nseg_frequency)
        section.diam = diameters[index]
        cell.axonal.append(sec=section)
        cell.all.append(sec=section)
    cell.axon[0].connect(cell.soma[0], 1.0, 0.0)
    cell.axon[1].connect(cell.axon[0], 1.0, 0.0)

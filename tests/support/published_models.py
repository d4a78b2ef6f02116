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

NEURON loads one mechanism library per process, so use it in a child process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fetched import package_root

__all__ = ["L5PC_RELEASE", "build_l5pc", "l5pc_folder"]

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
    reader = h.Import3d_Neurolucida3()
    reader.quiet = 1
    h.hoc_stdout("/dev/null")
    reader.input(str(folder / "morphology" / "C060114A7.asc"))
    h.hoc_stdout()
    h.Import3d_GUI(reader, 0).instantiate(cell)
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

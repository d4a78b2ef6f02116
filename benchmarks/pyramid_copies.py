"""N copies of the demo pyramidal cell in one NEURON session.

The main demo (:mod:`benchmarks.demo`) and the many-cell baselines of the engine
benchmark (:mod:`benchmarks.engine`: ``neuron_nthread2``, ``coreneuron``, ``arbor``) run N
separate copies of NEURON's demo pyramidal cell (:func:`benchmarks.models.pyramid_model`),
each wired to one instance's inputs. This module reads the original once
(:func:`template_of`), builds the copies (:func:`build_copy`), reads their potentials in
the engine's node order (:func:`final_v`) and deletes them (:func:`delete_copies`).

A copy has the original's 3-D points, nseg, Ra, cm and density mechanisms (with every
segment's PARAMETER values), an IClamp, a NetStim driving one ExpSyn per synapse of the
original through its own NetCon, the soma and far dendrite recorded (``Vector.record``)
and a spike detector at the soma, all created in the original's order.

Units are NEURON's: lengths and diameters µm, Ra Ω·cm, cm µF/cm², times ms, potentials
mV, currents nA, NetCon weights µS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from neuron import h

__all__ = ["CellCopy", "CellTemplate", "build_copy", "delete_copies", "final_v", "template_of"]


@dataclass
class CellTemplate:
    """What a copy of the exported cell needs, read once from the original.

    Attributes
    ----------
    names : list of str
        Each section's name in the original, in creation order.
    points : list of tuple
        Per section, its 3-D points as four sequences: x, y, z and diam, in µm
        (``h.Vector`` in a NEURON session; NumPy arrays to pickle the template).
    parents : list of tuple (int, float, float) or None
        Per section, ``(parent section index, x on the parent, the child's end that
        connects: 0 or 1)``; None for a root.
    nseg : list of int
        Segments per section.
    ra : list of float
        Axial resistivity Ra per section, in Ω·cm.
    cm : list of list of float
        Specific membrane capacitance per section and segment, in µF/cm².
    mechanisms : list of dict
        Per section, ``{mechanism: {PARAMETER: value per segment}}`` of its density
        mechanisms (``{"pas": {"g_pas": [...], "e_pas": [...]}}``), in the units of the
        mechanism's ``.mod`` file.
    nodes : list of list of int
        Per section, the engine's node index of each ``allseg()`` point
        (``seg.node_index()``, NEURON's matrix row).
    clamp : tuple (int, float, float, float)
        The IClamp: section index, x, delay (ms), duration (ms); the amplitude is each
        instance's input.
    stim_number : float
        Events of the NetStim (its start and interval are each instance's inputs).
    synapses : list of tuple (int, float, float, float, float)
        Per ExpSyn, in the order of the original's NetCons: section index, x, tau (ms),
        reversal potential e (mV), NetCon weight (µS); the NetCon delays are each
        instance's inputs.
    probes : list of tuple (int, float)
        The recorded places, (section index, x): the soma first (its spikes are
        detected), then the far dendrite.
    """

    names: list[str]
    points: list[tuple]
    parents: list[tuple[int, float, float] | None]
    nseg: list[int]
    ra: list[float]
    cm: list[list[float]]
    mechanisms: list[dict[str, dict[str, list[float]]]]
    nodes: list[list[int]]
    clamp: tuple[int, float, float, float]
    stim_number: float
    synapses: list[tuple[int, float, float, float, float]]
    probes: list[tuple[int, float]]


@dataclass
class CellCopy:
    """One NEURON copy of the cell, wired to one instance's inputs and recorded.

    Attributes
    ----------
    sections : list of nrn.Section
        In the template's order.
    objects : list
        Its IClamp, NetStim, then each ExpSyn and its NetCon, then the soma's spike
        detector (a NetCon, last).
    traces : list of h.Vector
        The membrane potential in mV at the template's probes (soma, far dendrite),
        every step.
    spikes : h.Vector
        The soma's spike times in ms.
    """

    sections: list
    objects: list = field(default_factory=list)
    traces: list = field(default_factory=list)
    spikes: object = None


def _parameters(mechanism: str) -> list[str]:
    """The PARAMETER names of a density mechanism (``"g_pas"``, ``"gnabar_hh"``)."""
    standard = h.MechanismStandard(mechanism, 1)
    names = []
    for i in range(int(standard.count())):
        name = h.ref("")
        standard.name(name, i)
        names.append(name[0])
    return names


def template_of(bench) -> CellTemplate:
    """Read the cell of a :class:`benchmarks.engine.PyramidBench` into a template.

    Parameters
    ----------
    bench : benchmarks.engine.PyramidBench
        The open bench: its model (``bench.model.cell.sections``), ``clamp``, ``stim``,
        ``netcons`` and ``probes``.

    Returns
    -------
    CellTemplate
        With the 3-D points as ``h.Vector``.
    """
    sections = list(bench.model.cell.sections)
    index = {sec.name(): i for i, sec in enumerate(sections)}

    def where(segment) -> tuple[int, float]:
        return index[segment.sec.name()], float(segment.x)

    parents, mechanisms = [], []
    for sec in sections:
        parent = sec.parentseg()
        parents.append(
            None
            if parent is None
            else (index[parent.sec.name()], float(parent.x), float(sec.orientation()))
        )
        mechanisms.append(
            {
                name: {p: [getattr(seg, p) for seg in sec] for p in _parameters(name)}
                for name in sec.psection()["density_mechs"]
            }
        )
    clamp = bench.clamp
    synapses = []
    for netcon in bench.netcons:
        synapse = netcon.syn()
        synapses.append(
            (*where(synapse.get_segment()), synapse.tau, synapse.e, float(netcon.weight[0]))
        )
    return CellTemplate(
        names=[sec.name() for sec in sections],
        points=[
            tuple(
                h.Vector([getter(i, sec=sec) for i in range(int(sec.n3d()))])
                for getter in (h.x3d, h.y3d, h.z3d, h.diam3d)
            )
            for sec in sections
        ],
        parents=parents,
        nseg=[int(sec.nseg) for sec in sections],
        ra=[float(sec.Ra) for sec in sections],
        cm=[[seg.cm for seg in sec] for sec in sections],
        mechanisms=mechanisms,
        nodes=[[int(seg.node_index()) for seg in sec.allseg()] for sec in sections],
        clamp=(*where(clamp.get_segment()), clamp.delay, clamp.dur),
        stim_number=float(bench.stim.number),
        synapses=synapses,
        probes=[where(segment) for segment in bench.probes],
    )


def build_copy(template: CellTemplate, inputs, q: int, *, threshold: float) -> CellCopy:
    """A copy of the template with instance q's inputs, in the template's creation and
    connection order.

    Parameters
    ----------
    template : CellTemplate
        With the 3-D points as ``h.Vector``.
    inputs : benchmarks.engine.Inputs
        Per-instance inputs: ``amp`` (nA), ``start`` and ``interval`` (ms), ``delay``
        (ms, one per synapse).
    q : int
        The instance: its inputs, and the copy's section names (``demo<q>.<name>``).
    threshold : float
        The soma's spike detection threshold in mV.

    Returns
    -------
    CellCopy
    """
    sections = [h.Section(name=f"demo{q}.{name}") for name in template.names]
    copy = CellCopy(sections=sections)
    for sec, points in zip(sections, template.points, strict=True):
        h.pt3dadd(*points, sec=sec)
    for sec, parent in zip(sections, template.parents, strict=True):
        if parent is not None:
            p, x, end = parent
            sec.connect(sections[p](x), end)
    for i, sec in enumerate(sections):
        sec.nseg = template.nseg[i]
        sec.Ra = template.ra[i]
        for seg, cm in zip(sec, template.cm[i], strict=True):
            seg.cm = cm
        for name, parameters in template.mechanisms[i].items():
            sec.insert(name)
            for parameter, values in parameters.items():
                for seg, value in zip(sec, values, strict=True):
                    setattr(seg, parameter, value)
    s, x, delay, dur = template.clamp
    clamp = h.IClamp(sections[s](x))
    clamp.delay, clamp.dur, clamp.amp = delay, dur, float(inputs.amp[q])
    stim = h.NetStim()
    stim.start, stim.interval = float(inputs.start[q]), float(inputs.interval[q])
    stim.number, stim.noise = template.stim_number, 0
    copy.objects += [clamp, stim]
    for k, (s, x, tau, e, weight) in enumerate(template.synapses):
        synapse = h.ExpSyn(sections[s](x))
        synapse.tau, synapse.e = tau, e
        netcon = h.NetCon(stim, synapse)
        netcon.weight[0], netcon.delay = weight, float(inputs.delay[q, k])
        copy.objects += [synapse, netcon]
    copy.traces = [h.Vector().record(sections[s](x)._ref_v) for s, x in template.probes]
    soma = sections[template.probes[0][0]]
    detector = h.NetCon(soma(template.probes[0][1])._ref_v, None, sec=soma)
    detector.threshold = threshold
    copy.spikes = h.Vector()
    detector.record(copy.spikes)
    copy.objects.append(detector)
    return copy


def final_v(copy: CellCopy, template: CellTemplate, n_nodes: int) -> np.ndarray:
    """Every node's membrane potential now, in the engine's node order.

    Parameters
    ----------
    copy : CellCopy
    template : CellTemplate
        The template the copy was built from (its ``nodes``).
    n_nodes : int
        Nodes of the engine's model.

    Returns
    -------
    ndarray of float64, shape (n_nodes,)
        In mV; NaN at a node the template does not map.
    """
    v = np.full(n_nodes, np.nan)
    for sec, nodes in zip(copy.sections, template.nodes, strict=True):
        v[nodes] = [seg.v for seg in sec.allseg()]
    return v


def delete_copies(copies: list[CellCopy]) -> None:
    """Delete the copies' NEURON objects and sections, and empty ``copies``."""
    for copy in copies:
        copy.objects.clear()
        copy.traces.clear()
        copy.spikes = None
        for sec in copy.sections:
            h.delete_section(sec=sec)
        copy.sections.clear()
    copies.clear()

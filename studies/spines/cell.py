"""The cell of the spine study: a morphology with the membrane of :class:`CellSetup`."""

from __future__ import annotations

from neuron import h

from neuron_bridge.morphology import Cell, discretize, load_morphology

from .settings import CellSetup

__all__ = ["build_cell", "set_membrane"]


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

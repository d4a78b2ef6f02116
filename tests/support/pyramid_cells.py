"""NEURON's demo pyramid set up for the spine tests: passive, or with an hh soma.

The cell is ``neuron_bridge.load_morphology()`` (the wheel's ``pyramid.nrn``), with
Ra 150 Ω·cm and cm 1 µF/cm²; ``pas`` at :data:`G_PAS` and :data:`E_PAS`.
"""

from __future__ import annotations

from neuron_bridge import Cell, discretize, load_morphology

__all__ = ["E_PAS", "G_PAS", "active_pyramid", "passive_pyramid"]

G_PAS = 5e-5  # S/cm²
E_PAS = -65.0  # mV


def _set_pas(sections) -> None:
    for section in sections:
        section.insert("pas")
        for segment in section:
            segment.pas.g, segment.pas.e = G_PAS, E_PAS


def _pyramid(segment_length: float | None, name: str) -> Cell:
    cell = load_morphology(name=name)
    for section in cell.sections:
        section.Ra, section.cm = 150.0, 1.0
    if segment_length is not None:
        discretize(cell, segment_length=segment_length)
    return cell


def passive_pyramid(segment_length: float | None = None, name: str = "pyr") -> Cell:
    """Passive everywhere (``pas`` in the soma too); ``nseg`` as the file sets it unless
    ``segment_length`` (µm) is given."""
    cell = _pyramid(segment_length, name)
    _set_pas(cell.sections)
    return cell


def active_pyramid(segment_length: float = 40.0, name: str = "pyr") -> Cell:
    """``hh`` in the soma, ``pas`` in the dendrites, segments of at most ``segment_length``."""
    cell = _pyramid(segment_length, name)
    cell.soma[0].insert("hh")
    _set_pas(cell.dendrites)
    return cell

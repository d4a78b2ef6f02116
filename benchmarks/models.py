"""The demo's NEURON model: the pyramidal cell that ships with NEURON, made active.

Shared by the demo, the bridge benchmark and the tests, so that they all run one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neuron import h

from neuron_bridge.morphology import Cell, discretize, load_morphology


@dataclass
class PyramidModel:
    """The cell plus the objects that must stay referenced while NEURON runs."""

    cell: Cell
    keep: list = field(default_factory=list)

    @property
    def soma(self):
        return self.cell.soma[0]

    def far_dendrite(self):
        """The dendrite section whose far end is most distant from the soma (by path)."""
        h.distance(0, self.soma(0.5))
        return max(self.cell.dendrites, key=lambda sec: h.distance(sec(1)))

    def delete(self) -> None:
        self.keep.clear()
        self.cell.delete()


def pyramid_model(segment_length: float = 1.0, synapses: int = 8) -> PyramidModel:
    """NEURON's demo pyramidal cell with hh in the soma, pas elsewhere, and inputs.

    * ``nseg`` = smallest odd number >= L / ``segment_length`` (µm); 1 µm gives 5,551
      matrix rows.
    * Ra 150 Ω·cm, cm 1 µF/cm²; soma: hh; dendrites: pas (g 5e-5 S/cm², e -65 mV).
    * An IClamp at the soma (0.4 nA from 10 to 60 ms) and ``synapses`` ExpSyn synapses
      (τ 2 ms, 5 nS) spread over the dendrites, driven by one regular NetStim
      (first event at 20 ms, every 15 ms).
    """
    h.load_file("stdrun.hoc")
    cell = load_morphology(name="pyramid")
    model = PyramidModel(cell=cell)
    for section in cell.sections:
        section.Ra = 150.0
        section.cm = 1.0
    discretize(cell, segment_length=segment_length)
    model.soma.insert("hh")
    for section in cell.dendrites:
        section.insert("pas")
        for segment in section:
            segment.pas.g = 5e-5
            segment.pas.e = -65.0
    clamp = h.IClamp(model.soma(0.5))
    clamp.delay, clamp.dur, clamp.amp = 10.0, 50.0, 0.4
    stimulus = h.NetStim()
    stimulus.start, stimulus.interval, stimulus.number, stimulus.noise = 20.0, 15.0, 6, 0
    model.keep += [clamp, stimulus]
    dendrites = cell.dendrites
    for k in range(synapses):
        section = dendrites[(k * 7919) % len(dendrites)]  # spread deterministically
        synapse = h.ExpSyn(section(0.7))
        synapse.tau, synapse.e = 2.0, 0.0
        connection = h.NetCon(stimulus, synapse)
        connection.weight[0], connection.delay = 0.005, 1.0
        model.keep += [synapse, connection]
    return model

"""dhs.engine.nmodl: NEURON's ``.mod`` files translated into engine mechanisms."""

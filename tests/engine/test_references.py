"""The committed reference traces (``data/references/``) against NEURON and the engine.

``data/make_references.py`` wrote them with NEURON; here NEURON must produce them again
(bit for bit with the NEURON version that wrote them), and :class:`dhs.engine.Engine`,
given the exported model, must reproduce them to 1e-6 mV with the same spikes.
"""

from __future__ import annotations

import importlib.util

import neuron
import numpy as np
import pytest
from neuron import h

from dhs.engine import Engine
from neuron_bridge.export import export_model
from paths import ROOT

REFERENCE = ROOT / "data" / "references" / "pyramid_traces.npz"
V_TOLERANCE = 1e-6  # mV
SPIKE_TOLERANCE = 1e-3  # ms


def _maker():
    spec = importlib.util.spec_from_file_location("make_references", ROOT / "data" /
                                                  "make_references.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stored() -> dict:
    with np.load(REFERENCE) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize(("usetable", "key"), [(0, "tables_off"), (1, "tables_on")])
def test_neuron_reproduces_the_reference(clean_neuron, stored, usetable, key):
    fresh = _maker().pyramid_reference(usetable)
    same_version = str(stored["neuron_version"]) == neuron.__version__
    assert np.array_equal(fresh["probe_nodes"], stored["probe_nodes"])
    assert np.array_equal(fresh["t"], stored["t"])
    difference = float(np.abs(fresh["v"] - stored[f"v_{key}"]).max())
    # Another NEURON version may round differently; then only closeness is required.
    assert difference == 0.0 if same_version else difference < V_TOLERANCE, (
        f"NEURON {neuron.__version__} differs from the reference (written by NEURON "
        f"{stored['neuron_version']}) by {difference} mV; rerun data/make_references.py"
    )
    assert fresh["spikes"].size == stored[f"spikes_{key}"].size >= 2


@pytest.mark.parametrize(("usetable", "key"), [(0, "tables_off"), (1, "tables_on")])
def test_engine_reproduces_the_reference(clean_neuron, stored, usetable, key):
    maker = _maker()
    from benchmarks.models import pyramid_model

    h.usetable_hh = usetable
    model = pyramid_model(segment_length=float(stored["segment_length_um"]))
    try:
        exported = export_model(float(stored["v_init_mV"]))
    finally:
        h.usetable_hh = 1
        model.delete()
    result = Engine(exported, 2).run(
        maker.TSTOP, dt=float(stored["dt_ms"]), record_nodes=stored["probe_nodes"],
        spike_node=int(stored["probe_nodes"][0]), spike_threshold=maker.THRESHOLD,
    )  # fmt: skip
    assert np.array_equal(result.t, stored["t"])
    for instance in range(2):
        difference = float(np.abs(result.v[instance] - stored[f"v_{key}"]).max())
        assert difference < V_TOLERANCE, f"engine vs reference: {difference} mV"
        spikes = result.spikes[instance]
        reference = stored[f"spikes_{key}"]
        assert spikes.size == reference.size
        assert np.abs(spikes - reference).max() < SPIKE_TOLERANCE

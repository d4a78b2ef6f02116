"""Settings of the spine study (``studies.spines.settings``): bad values are refused
at construction, naming the field; the derived values and the JSON record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from studies.spines.settings import CellSetup, Protocol, protocol_dict


def test_settings_are_checked():
    with pytest.raises(ValueError, match="spike_window"):
        Protocol(spike_window=0.0)
    with pytest.raises(ValueError, match="cluster_size"):
        Protocol(cluster_size=0)
    with pytest.raises(ValueError, match="activation_weight"):
        Protocol(activation_weight=-1e-3)
    with pytest.raises(ValueError, match="dendritic_hh"):
        CellSetup(dendritic_hh=-0.1)
    assert Protocol(activation_time=30.0, spike_window=25.0).tstop == 55.0
    assert Protocol(activation_weight=2e-4).weight_background == 2e-4


def test_protocol_dict_is_json():
    """Both settings in one JSON-ready dict, with tstop; the morphology path as a string
    (None stays None)."""
    setup = CellSetup(morphology=Path("cells") / "cell.swc")
    protocol = Protocol(activation_time=10.0, spike_window=15.0)
    record = json.loads(json.dumps(protocol_dict(setup, protocol)))
    assert record["protocol"]["tstop"] == 25.0
    assert record["cell"]["morphology"] == str(Path("cells") / "cell.swc")
    assert protocol_dict(CellSetup(), protocol)["cell"]["morphology"] is None
    assert record["cell"]["dendritic_hh_distance"] == math.inf
    assert record["cell"]["spines"]["density"] == setup.spines.density

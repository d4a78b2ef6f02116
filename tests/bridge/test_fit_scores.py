"""neuron_bridge.fit_scores.calculate_scores against BluePyOpt's own
ObjectivesCalculator.calculate_scores on the same responses: equal numbers (==), for
features sharing a trace and settings and features that do not (known settings, and one
eFEL does not know), weighted and unweighted singleton objectives, a MaxObjective
(BluePyOpt's own path), a missing recording, a feature eFEL cannot compute, and
force_max_score; eFEL's settings are its defaults afterwards."""

from __future__ import annotations

import efel
import numpy as np
import pytest
from bluepyopt.ephys.efeatures import eFELFeature
from bluepyopt.ephys.objectives import (
    MaxObjective,
    SingletonObjective,
    SingletonWeightObjective,
)
from bluepyopt.ephys.objectivescalculators import ObjectivesCalculator
from bluepyopt.ephys.responses import TimeVoltageResponse

from neuron_bridge.fit_scores import calculate_scores


def spiking_trace(rate_hz: float, seed: int) -> TimeVoltageResponse:
    """A 600 ms trace at dt = 0.025 ms: -70 mV with noise, and spikes (1 ms, +30 mV
    peaks with jittered times) at ``rate_hz`` between 100 and 500 ms."""
    generator = np.random.default_rng(seed)
    t = np.arange(0.0, 600.0 + 0.0125, 0.025)
    v = -70.0 + 0.2 * generator.standard_normal(t.size)
    times = np.arange(110.0, 500.0, 1000.0 / rate_hz) + generator.uniform(-2, 2)
    for start in times:
        shape = np.exp(-(((t - start) / 0.3) ** 2))
        v += 100.0 * shape - 8.0 * np.exp(-np.clip(t - start - 1.0, 0, None) / 20.0) * (t > start)
    return TimeVoltageResponse("r", t, v)


def feature(name, efel_name, recording, *, threshold=-20.0, mean=1.0, std=0.5, **settings):
    return eFELFeature(
        name,
        efel_feature_name=efel_name,
        recording_names={"": recording},
        stim_start=100.0,
        stim_end=500.0,
        exp_mean=mean,
        exp_std=std,
        threshold=threshold,
        **settings,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_bluepyopts(seed):
    responses = {
        "step.soma.v": spiking_trace(20.0 + 10 * seed, seed),
        "step.dend.v": spiking_trace(15.0, seed + 10),
        "missing.v": None,
    }
    features = [
        feature("f0", "Spikecount", "step.soma.v", mean=10, std=2),
        feature("f1", "mean_frequency", "step.soma.v", mean=20, std=5),
        feature("f2", "AP_height", "step.soma.v", mean=25, std=3),
        feature("f3", "ISI_CV", "step.soma.v", mean=0.1, std=0.05),
        feature("f4", "AP_width", "step.soma.v", threshold=-40.0, mean=1.0, std=0.2),
        feature("f5", "AP_amplitude_from_voltagebase", "step.dend.v", threshold=-55.0, mean=60),
        feature("f6", "Spikecount", "missing.v"),  # no response: max_score
        feature("f7", "doublet_ISI", "step.dend.v", mean=1e6, std=1e-3, force_max_score=True),
        feature("f8", "time_to_first_spike", "step.soma.v", interp_step=0.1, mean=5, std=1),
        feature("f9", "AHP_depth_abs_slow", "step.soma.v", mean=-60, std=5),
        # settings of their own: a known one, and one eFEL does not know (BluePyOpt's path)
        feature(
            "f10",
            "AP_begin_voltage",
            "step.soma.v",
            mean=-50,
            std=5,
            double_settings={"DerivativeThreshold": 12.0},
            int_settings={"strict_stiminterval": 1},
        ),
        feature(
            "f11",
            "AP_begin_voltage",
            "step.soma.v",
            mean=-50,
            std=5,
            double_settings={"not_an_efel_setting": 1.0},
        ),
        feature("f12", "AP_begin_voltage", "step.soma.v", mean=-50, std=5),
    ]
    objectives = [SingletonObjective(f.name, f) for f in features]
    objectives.append(SingletonWeightObjective("weighted", features[1], 0.3))
    objectives.append(MaxObjective("max", [features[0], features[2]]))
    calculator = ObjectivesCalculator(objectives)
    reference = calculator.calculate_scores(responses)
    ours = calculate_scores(calculator, responses)
    assert list(ours) == list(reference)
    assert ours == reference
    assert efel.get_settings() == efel.Settings()
    assert reference["f6"] == 250.0  # the missing trace
    assert reference["f7"] == 250.0  # forced to max_score
    assert 0 < reference["f0"] < 250 and 0 < reference["f5"] < 250  # real distances
    assert reference["f10"] != reference["f12"]  # the setting changes the value

"""BluePyOpt's objective scores with one eFEL set-up per trace and settings.

``ObjectivesCalculator.calculate_scores`` scores each eFEL feature on its own:
``eFELFeature.calculate_score`` resets eFEL, applies the feature's settings and calls
``efel.getDistance``, and every reset and distance re-reads eFEL's dependency file
(``cppcore.Initialize``, ~12 ms, three times per feature: 82 % of the L5PC's 1.56 s per
individual). :func:`calculate_scores` gives the same numbers with one set-up of the
settings per group of features that share a trace and settings (without the re-read),
and each feature's values from ``efel.get_feature_values`` (the same C++ calls as
``getDistance``'s, from a state cleared by ``cppcore.Clear`` instead of a re-read file),
then ``getDistance``'s own arithmetic on them. Anything else (other objective or feature
types, a trace eFEL rejects, settings eFEL does not know) goes through BluePyOpt's own
code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

__all__ = ["calculate_scores"]


def _settings_key(feature) -> tuple:
    """What makes two features' eFEL passes the same: the trace and the settings."""

    def items(settings):
        return tuple(sorted(settings.items())) if settings else ()

    return (
        tuple(sorted(feature.recording_names.items())),
        feature.stim_start,
        feature.stim_end,
        feature.threshold,
        feature.stimulus_current,
        feature.interp_step,
        items(feature.double_settings),
        items(feature.int_settings),
        items(feature.string_settings),
    )


def _distance(values, mean: float, std: float, error_dist: float) -> float:
    """``efel.get_distance`` (``trace_check=False``) on the feature's values, term by
    term in its order."""
    if values is None or len(values) < 1:
        return error_dist
    distance = 0.0
    for value in values:
        distance += abs(value - mean)
    distance = distance / std / len(values)
    if distance != distance:
        return error_dist
    return distance


def _set_up(feature) -> None:
    """BluePyOpt's ``eFELFeature._setup_efel`` (eFEL's settings to their defaults, then
    the feature's, in its order) without the dependency file's re-read, which
    ``efel.get_feature_values`` makes unnecessary (it clears eFEL's state itself).
    Settings eFEL does not know (which a reset to defaults would not remove) take
    BluePyOpt's own path."""
    import efel

    wanted = [
        (name, value)
        for name, value in (
            ("Threshold", feature.threshold),
            ("stimulus_current", feature.stimulus_current),
            ("interp_step", feature.interp_step),
        )
        if value is not None
    ]
    for settings in (feature.double_settings, feature.int_settings, feature.string_settings):
        wanted += list((settings or {}).items())
    current = efel.get_settings()
    known = {field.name for field in dataclasses.fields(current)}
    if set(vars(current)) - known or {name for name, _ in wanted} - known:
        feature._setup_efel()
        return
    current.reset_to_default()
    for name, value in wanted:
        efel.set_setting(name, value)


def _group_scores(features: list, responses: Mapping) -> list[float]:
    """Scores of features that share a trace and settings, in order."""
    import efel

    first = features[0]
    trace = first._construct_efel_trace(responses)
    if trace is None:
        return [feature.max_score for feature in features]
    # eFEL copies the arrays element by element for every feature: plain floats copy
    # several times faster than numpy scalars, and are the same numbers
    trace = {key: np.asarray(value, dtype=float).tolist() for key, value in trace.items()}
    names = list(dict.fromkeys(feature.efel_feature_name for feature in features))
    _set_up(first)
    values = {}
    try:
        for name in names:
            # one feature per pass: eFEL's value of a feature can depend on which
            # features it computed before in the same pass (AP_height after Spikecount
            # differs in the last bit), so each starts from a cleared state
            values[name] = efel.get_feature_values([trace], [name], raise_warnings=False)[0][name]
    except Exception:  # a trace get_feature_values rejects: BluePyOpt's own path
        return [feature.calculate_score(responses) for feature in features]
    scores = []
    for feature in features:
        score = _distance(
            values[feature.efel_feature_name], feature.exp_mean, feature.exp_std, feature.max_score
        )
        if feature.force_max_score:
            score = min(score, feature.max_score)
        scores.append(score)
    return scores


def calculate_scores(calculator, responses: Mapping) -> dict[str, float]:
    """``calculator.calculate_scores(responses)``, with one eFEL set-up per trace and
    settings.

    Parameters
    ----------
    calculator : bluepyopt.ephys.objectivescalculators.ObjectivesCalculator
    responses : mapping
        Recording name to response, as a protocol's ``run`` returns them.

    Returns
    -------
    dict of str to float
        Objective name to score, the numbers BluePyOpt computes.
    """
    import efel
    from bluepyopt.ephys.efeatures import eFELFeature
    from bluepyopt.ephys.objectives import SingletonObjective, SingletonWeightObjective

    batched = (SingletonObjective, SingletonWeightObjective)
    groups: dict[tuple, list] = {}
    for objective in calculator.objectives:
        if type(objective) in batched and type(objective.features[0]) is eFELFeature:
            feature = objective.features[0]
            groups.setdefault(_settings_key(feature), []).append(feature)
    feature_score: dict[int, float] = {}
    for features in groups.values():
        for feature, score in zip(features, _group_scores(features, responses), strict=True):
            feature_score[id(feature)] = score
    if groups:
        efel.reset()  # leave eFEL as BluePyOpt's features leave it
    scores = {}
    for objective in calculator.objectives:
        if type(objective) in batched and id(objective.features[0]) in feature_score:
            score = feature_score[id(objective.features[0])]
            if type(objective) is SingletonWeightObjective:
                score = score * objective.weight
        else:
            score = objective.calculate_score(responses)
        scores[objective.name] = score
    return scores

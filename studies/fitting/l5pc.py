"""BluePyOpt's L5PC optimisation problem, built by BluePyOpt's own example code.

The example is ``examples/l5pc`` of the BluePyOpt 1.14.26 sdist, fetched from PyPI into the
test cache (``tests/support/fetched.py``; never vendored). Its ``l5pc_model.py`` and
``l5pc_evaluator.py`` are imported from there and build everything: the cell model
(``C060114A7.asc`` with the axon replaced by a stub, the mechanisms of
``mechanisms.json``, the 37 parameters of ``parameters.json``, 20 of them free), the
protocols of ``protocols.json`` (bAP, Step1-3: square pulses at the soma, recordings at
the soma and, for bAP, at 660 and 800 µm along the apical dendrite) and the fitness
calculator of ``features.json`` (35 eFEL objectives). Its mechanisms are compiled and
loaded with :func:`neuron_bridge.compile_mod.load_mod_mechanisms`.

Two changes are optional, both made to the example's own inputs before its code sees
them: a subset of the protocols (their objectives with them) and shortened protocols
(:func:`shortened_protocols`), for quick runs.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
BLUEPYOPT_VERSION = "1.14.26"
DT = 0.025  # ms, as the engine's reference: NrnSimulator(dt=0.025, cvode_active=False)

__all__ = [
    "DT",
    "L5pcProblem",
    "example_folder",
    "example_modules",
    "l5pc_problem",
    "release_parameters",
    "shortened_protocols",
]


def example_folder() -> Path:
    """``examples/l5pc`` of the BluePyOpt sdist (downloaded once into the test cache)."""
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    from fetched import package_root

    return package_root("bluepyopt", BLUEPYOPT_VERSION) / "examples" / "l5pc"


def example_modules():
    """BluePyOpt's ``l5pc_model`` and ``l5pc_evaluator`` modules, imported from the
    example folder (which goes on ``sys.path``, as when the example runs)."""
    folder = str(example_folder())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("l5pc_model"), importlib.import_module("l5pc_evaluator")


def release_parameters() -> dict[str, float]:
    """The released model's values of the free parameters (``l5pc_analysis.release_params``)."""
    example_modules()
    return dict(importlib.import_module("l5pc_analysis").release_params)


def shortened_protocols(
    definitions: dict, delay: float = 100.0, step: float = 400.0, after: float = 100.0
) -> dict:
    """``protocols.json`` with shorter runs, for quick checks.

    In every protocol the first stimulus (the step or the bAP pulse) starts at
    ``min(its delay, delay)`` and lasts ``min(its duration, step)``, and the run ends
    ``after`` ms later; a holding current (a stimulus from 0 ms over the whole run) covers
    the new run. Amplitudes and recordings are kept, and the example's fitness calculator
    takes the features' windows from the new stimuli.

    Parameters
    ----------
    definitions : dict
        ``protocols.json`` as loaded (``l5pc_evaluator.load_protocols()``).
    delay, step, after : float
        ms.

    Returns
    -------
    dict
        A changed deep copy.
    """
    shortened = copy.deepcopy(definitions)
    for definition in shortened.values():
        stimuli = definition["stimuli"]
        first = stimuli[0]
        first["delay"] = min(first["delay"], delay)
        first["duration"] = min(first["duration"], step)
        total = first["delay"] + first["duration"] + after
        for stimulus in stimuli:
            holding = stimulus["delay"] == 0 and stimulus["duration"] >= stimulus["totduration"]
            if holding and stimulus is not first:
                stimulus["duration"] = total
            stimulus["totduration"] = total
    return shortened


@dataclass
class L5pcProblem:
    """The L5PC optimisation problem: what BluePyOpt's ``l5pc_evaluator.create()`` makes,
    without its simulator.

    Attributes
    ----------
    cell_model : bluepyopt.ephys.models.CellModel
    protocols : dict of str to SweepProtocol
    fitness_calculator : bluepyopt.ephys.objectivescalculators.ObjectivesCalculator
    param_names : list of str
        The free parameters, in the cell model's order.
    """

    cell_model: object
    protocols: dict
    fitness_calculator: object
    param_names: list

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the free parameters (their units)."""
        parameters = [self.cell_model.params[name] for name in self.param_names]
        lower = np.array([parameter.lower_bound for parameter in parameters], dtype=float)
        upper = np.array([parameter.upper_bound for parameter in parameters], dtype=float)
        return lower, upper

    def random_individuals(self, count: int, seed: int = 0) -> list[list[float]]:
        """``count`` parameter sets drawn uniformly within the bounds (seeded)."""
        lower, upper = self.bounds
        generator = np.random.default_rng(seed)
        draws = lower + (upper - lower) * generator.random((count, lower.size))
        return [[float(value) for value in row] for row in draws]

    def neuron_evaluator(self, dt: float = DT, isolate: bool = False):
        """BluePyOpt's own ``CellEvaluator`` on NEURON's fixed step (the reference)."""
        import bluepyopt.ephys as ephys

        return ephys.evaluators.CellEvaluator(
            cell_model=self.cell_model,
            param_names=self.param_names,
            fitness_protocols=self.protocols,
            fitness_calculator=self.fitness_calculator,
            sim=ephys.simulators.NrnSimulator(dt=dt, cvode_active=False),
            isolate_protocols=isolate,
        )

    def engine_evaluator(self, dt: float = DT, backend: str = "cpu", workers: int | None = None):
        """The same evaluation on :class:`neuron_bridge.fit.EngineEvaluator`."""
        import bluepyopt.ephys as ephys

        from neuron_bridge.fit import EngineEvaluator

        return EngineEvaluator(
            self.cell_model,
            self.param_names,
            self.protocols,
            self.fitness_calculator,
            sim=ephys.simulators.NrnSimulator(dt=dt, cvode_active=False),
            backend=backend,
            workers=workers,
        )


def l5pc_problem(
    protocol_names: list[str] | tuple[str, ...] | None = None,
    shorten: dict | None = None,
    free: dict[str, tuple[float, float]] | None = None,
) -> L5pcProblem:
    """The L5PC problem, its mechanisms loaded into this process's NEURON.

    Parameters
    ----------
    protocol_names : sequence of str, optional
        Keep only these protocols (``"bAP"``, ``"Step1"``, ``"Step2"``, ``"Step3"``) and
        their objectives. Default: all four, 35 objectives.
    shorten : dict, optional
        Keyword arguments of :func:`shortened_protocols` (``{}`` for its defaults); None
        keeps the example's durations (bAP 600 ms, the steps 3 s).
    free : dict of str to (float, float), optional
        Frozen parameters of ``parameters.json`` to optimise too, by BluePyOpt name
        (``"gIhbar_Ih.apical"``: the exponential apical Ih gradient's scale), with their
        bounds; the cell model is then built as ``l5pc_model.create`` builds it, from
        the changed configuration.

    Returns
    -------
    L5pcProblem
    """
    from neuron_bridge.compile_mod import load_mod_mechanisms

    model_module, evaluator_module = example_modules()
    load_mod_mechanisms(example_folder() / "mechanisms")
    if free:
        import bluepyopt.ephys as ephys

        configurations = model_module.load_parameters()
        unfrozen = set()
        for configuration in configurations:
            name = f"{configuration['param_name']}.{configuration.get('sectionlist')}"
            if name in free:
                configuration.pop("value", None)
                configuration["bounds"] = list(free[name])
                unfrozen.add(name)
        if unfrozen != set(free):
            raise ValueError(f"no such parameters: {sorted(set(free) - unfrozen)}")
        cell_model = ephys.models.CellModel(
            "l5pc",
            morph=model_module.define_morphology(True),
            mechs=model_module.define_mechanisms(),
            params=model_module.create_parameters(configurations),
        )
    else:
        cell_model = model_module.create(do_replace_axon=True)
    definitions = evaluator_module.load_protocols()
    if shorten is not None:
        definitions = shortened_protocols(definitions, **shorten)
    protocols = evaluator_module.create_protocols(definitions, do_replace_axon=True, sim="nrn")
    calculator = evaluator_module.define_fitness_calculator(protocols)
    if protocol_names is not None:
        unknown = sorted(set(protocol_names) - set(protocols))
        if unknown:
            raise ValueError(f"unknown protocols {unknown}; the example has {sorted(protocols)}")
        protocols = {name: protocols[name] for name in protocol_names}
        calculator.objectives = [
            objective
            for objective in calculator.objectives
            if objective.name.split(".", 1)[0] in protocols
        ]
    param_names = [
        parameter.name for parameter in cell_model.params.values() if not parameter.frozen
    ]
    return L5pcProblem(cell_model, protocols, calculator, param_names)

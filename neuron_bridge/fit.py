"""BluePyOpt's cell evaluations on :class:`dhs.engine.Engine`: a whole population per run.

:class:`EngineEvaluator` is a ``bluepyopt.ephys.evaluators.CellEvaluator`` whose
simulations run in the engine: every individual of a population is an instance of one
``Engine`` per protocol, and its responses go through BluePyOpt's own fitness calculator
(eFEL features, objectives; scores with one eFEL pass per trace,
:mod:`neuron_bridge.fit_scores`), so the objective values are what BluePyOpt computes
from those traces. The traces are NEURON's to the bit: the engine runs NEURON's fixed step on
the model NEURON itself builds.

* **The model.** The cell is instantiated once, as BluePyOpt does it
  (``cell_model.instantiate``), each protocol's stimuli and recordings instantiated on it
  in turn and the session exported (:func:`neuron_bridge.export.export_model`): one
  :class:`~dhs.engine.CellModel` per protocol, NEURON's node order and mechanisms.
* **The parameters.** For each individual, BluePyOpt's parameter objects set their values
  on that cell exactly as in BluePyOpt's own evaluation (every parameter instantiated, in
  the cell model's order, through its scaler: the L5PC's exponential apical Ih gradient
  included), and the resulting per-node values of every variable a free parameter sets
  are read back from NEURON: the engine gets NEURON's numbers, with no copy of
  BluePyOpt's scalers (setting and reading, no simulation).
* **The run.** One ``Engine(model, population_size)`` per protocol: the per-node values of
  each individual, the stimuli's amplitude, delay and duration on their IClamps, the
  recordings at their nodes; NEURON's time grid and NEURON's number of steps
  (``h.run()``: ``while t < tstop - dt/2``).

Plug it into ``bluepyopt.optimisations.DEAPOptimisation`` with
``map_function=evaluator.map_function``: DEAP maps the evaluator's
``init_simulator_and_evaluate_with_lists`` over the invalid individuals of a generation,
and :meth:`EngineEvaluator.map_function` turns that map into one
:meth:`EngineEvaluator.evaluate_population` (one engine run per protocol). With plain DEAP,
register ``evaluator.map_function`` as the toolbox's ``map`` and
``evaluator.evaluate_with_lists`` as its ``evaluate``, or call
:meth:`~EngineEvaluator.evaluate_population` on a list of individuals.

Supported: ``SweepProtocol`` (and ``SequenceProtocol`` of them) with ``NrnSquarePulse``
stimuli and ``CompRecording`` recordings, on NEURON's fixed step; free parameters that set
per-segment variables (``NrnRangeParameter``, ``NrnSectionParameter``: mechanism
parameters, ``cm``, ion values) and the global ``v_init``. Anything else (a free ``Ra`` or
``celsius``, played stimuli, CVode) raises ``ValueError`` when the evaluator is made.

Needs the ``fit`` extra (``bluepyopt``, ``efel``, ``deap``).
"""

from __future__ import annotations

import functools
import math
import multiprocessing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from bluepyopt.ephys import parameters as bluepyopt_parameters
from bluepyopt.ephys.evaluators import CellEvaluator
from bluepyopt.ephys.protocols import SequenceProtocol, SweepProtocol
from bluepyopt.ephys.recordings import CompRecording
from bluepyopt.ephys.responses import TimeVoltageResponse
from bluepyopt.ephys.simulators import NrnSimulator
from bluepyopt.ephys.stimuli import NrnSquarePulse

from dhs.engine import CellModel, Engine, RunOptions, time_grid

from .export import export_model
from .fit_scores import calculate_scores

__all__ = ["EngineEvaluator", "neuron_fixed_step", "neuron_step_count"]

#: The evaluator's methods that :meth:`EngineEvaluator.map_function` batches.
_BATCHED = ("evaluate", "evaluate_with_lists", "init_simulator_and_evaluate_with_lists")
#: Global parameters the engine varies per instance (NEURON name -> engine name).
_PER_INSTANCE_GLOBALS = {"v_init": "v_init"}


def neuron_fixed_step(dt: float) -> tuple[float, int]:
    """The step NEURON takes when BluePyOpt runs it with ``dt``, and steps per ``step()``.

    ``NrnSimulator.run`` sets ``h.dt = dt`` and ``h.steps_per_ms = 1 / dt``; ``h.run()``
    then calls stdrun's ``setdt()``, which keeps ``dt`` unless it does not divide
    ``1 / steps_per_ms`` (to 1e-6).

    Parameters
    ----------
    dt : float
        Time step in ms.

    Returns
    -------
    tuple of (float, int)
        NEURON's ``dt`` (ms) and ``nstep_steprun`` (``fadvance`` calls per ``step()``).
    """
    steps_per_ms = 1.0 / dt
    interval = 1.0 / steps_per_ms
    steps = int(interval / dt) or 1
    if abs(dt * steps * steps_per_ms - 1.0) > 1e-6:
        dt = interval / steps
    return dt, steps


def neuron_step_count(tstop: float, dt: float, steps_per_step: int = 1) -> int:
    """Steps of stdrun's ``continuerun(tstop)`` on the fixed step.

    ``while (t < tstop - dt/2) step()``, each ``step()`` being ``steps_per_step``
    ``fadvance`` calls and ``t`` NEURON's accumulated time (:func:`dhs.engine.time_grid`).

    Parameters
    ----------
    tstop : float
        End time in ms.
    dt : float
        Time step in ms.
    steps_per_step : int, default 1
        ``nstep_steprun``.

    Returns
    -------
    int
        The number of ``fadvance`` calls; NEURON records ``count + 1`` samples.
    """
    limit = tstop - dt / 2
    upper = max(steps_per_step, math.ceil(tstop / dt) + 2 * steps_per_step)
    grid, _ = time_grid(dt, upper)
    count = 0
    while grid[count] < limit:
        count += steps_per_step
        if count >= grid.size:
            grid, _ = time_grid(dt, 2 * count)
    return count


@dataclass
class _Varied:
    """A NEURON variable that the free parameters set, and its rows in the engine."""

    neuron_name: str  # "gIhbar_Ih", "cm", "ena", "v_init"
    engine_name: str  # "Ih.gIhbar", "cm", "ena", "v_init"
    rows: np.ndarray  # rows of the engine's table that have a segment
    segments: list  # NEURON's segment of each row (empty for a global)
    base: np.ndarray  # (m,) the exported values (rows without a segment keep them)


@dataclass
class _Prepared:
    """One protocol made ready for the engine."""

    protocol: SweepProtocol
    model: CellModel
    n_steps: int
    record_nodes: tuple[int, ...]
    records: tuple[tuple[str, int], ...]
    #: per recording: (name, "v" or "record", index into record_nodes or record key),
    #: or (name, None, None) when its location could not be instantiated
    outputs: tuple[tuple[str, str | None, object], ...]
    #: (hoc name of the IClamp, stimulus) per stimulus
    stimuli: tuple[tuple[str, NrnSquarePulse], ...]


class EngineEvaluator(CellEvaluator):
    """A BluePyOpt ``CellEvaluator`` that simulates whole populations on the engine.

    Parameters
    ----------
    cell_model : bluepyopt.ephys.models.CellModel
        Morphology, mechanisms and parameters. Its mechanisms must be loaded in this
        process's NEURON, and the NEURON session must hold no sections: the evaluator
        instantiates the cell in it and keeps it until :meth:`close`.
    param_names : sequence of str
        The free parameters, in the order of the value lists (BluePyOpt's order).
    fitness_protocols : dict of str to SweepProtocol or SequenceProtocol
        The protocols; their stimuli ``NrnSquarePulse``, their recordings
        ``CompRecording``.
    fitness_calculator : bluepyopt.ephys.objectivescalculators.ObjectivesCalculator
        eFEL features and objectives, used as they are.
    sim : bluepyopt.ephys.simulators.NrnSimulator, optional
        The NEURON simulator BluePyOpt would run (its ``dt`` is the engine's). Default
        ``NrnSimulator(dt=0.025, cvode_active=False)``; CVode is refused.
    backend : {"cpu", "auto", "cuda"}, default "cpu"
        The engine's backend (:class:`dhs.engine.Engine`).
    workers : int, optional
        CPU threads of each engine run (default: every core).

    Attributes
    ----------
    models : dict of str to CellModel
        The exported model of each protocol (by protocol name).
    dt : float
        The time step in ms (NEURON's, after stdrun's ``setdt``).
    """

    def __init__(
        self,
        cell_model,
        param_names: Sequence[str],
        fitness_protocols: Mapping[str, object],
        fitness_calculator,
        *,
        sim: NrnSimulator | None = None,
        backend: str = "cpu",
        workers: int | None = None,
    ):
        if sim is None:
            sim = NrnSimulator(dt=0.025, cvode_active=False)
        super().__init__(
            cell_model=cell_model,
            param_names=list(param_names),
            fitness_protocols=dict(fitness_protocols),
            fitness_calculator=fitness_calculator,
            isolate_protocols=False,
            sim=sim,
        )
        if sim.cvode_active:
            raise ValueError("the engine runs NEURON's fixed step: use cvode_active=False")
        self.backend = backend
        self.workers = workers
        self.dt, self._steps_per_step = neuron_fixed_step(float(sim.dt))
        self._sweeps = self._flatten(self.fitness_protocols.values())
        self._icell = None
        self._prepared: dict[str, _Prepared] = {}
        self._varied: list[_Varied] = []
        self._build()

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _flatten(protocols: Iterable) -> list[SweepProtocol]:
        """The sweep protocols, those inside sequence protocols included, in run order."""
        found = []
        for protocol in protocols:
            if isinstance(protocol, SequenceProtocol):
                found += EngineEvaluator._flatten(protocol.protocols)
            elif isinstance(protocol, SweepProtocol):
                found.append(protocol)
            else:
                raise ValueError(
                    f"protocol {getattr(protocol, 'name', protocol)!r} is a "
                    f"{type(protocol).__name__}; the engine runs SweepProtocol and "
                    "SequenceProtocol"
                )
        names = [protocol.name for protocol in found]
        if len(set(names)) != len(names):
            raise ValueError(f"protocol names must be unique, got {names}")
        return found

    def _check(self) -> None:
        """Refuse what the engine cannot reproduce, all at once."""
        problems = []
        for protocol in self._sweeps:
            if protocol.cvode_active:
                problems.append(f"{protocol.name}: cvode_active=True (the engine is fixed-step)")
            for stimulus in protocol.stimuli:
                if type(stimulus) is not NrnSquarePulse:
                    problems.append(
                        f"{protocol.name}: stimulus {type(stimulus).__name__} (only NrnSquarePulse)"
                    )
            for recording in protocol.recordings:
                if not isinstance(recording, CompRecording):
                    problems.append(
                        f"{protocol.name}: recording {type(recording).__name__} "
                        "(only CompRecording)"
                    )
        for parameter in self._varying_parameters():
            kinds = (
                bluepyopt_parameters.NrnRangeParameter,
                bluepyopt_parameters.NrnSectionParameter,
                bluepyopt_parameters.NrnGlobalParameter,
            )
            if not isinstance(parameter, kinds):
                problems.append(
                    f"parameter {parameter.name}: {type(parameter).__name__} (the engine "
                    "varies NrnRangeParameter, NrnSectionParameter and the global v_init)"
                )
            elif isinstance(parameter, bluepyopt_parameters.NrnGlobalParameter):
                if parameter.param_name not in _PER_INSTANCE_GLOBALS:
                    problems.append(
                        f"parameter {parameter.name}: the global {parameter.param_name} is one "
                        "value per engine model (only v_init varies per instance)"
                    )
        if problems:
            raise ValueError("EngineEvaluator cannot run this:\n  " + "\n  ".join(problems))

    def _varying_parameters(self) -> list:
        """The cell's parameters whose values depend on the free ones: the free
        parameters, those that depend on them (``param_dependencies``), and the
        sub-parameters of list parameters."""
        free = set(self.param_names)
        changed = True
        while changed:
            changed = False
            for name, parameter in self.cell_model.params.items():
                dependencies = set(getattr(parameter, "param_dependencies", None) or ())
                if name not in free and dependencies & free:
                    free.add(name)
                    changed = True
        found = []
        for name, parameter in self.cell_model.params.items():
            if name in free:
                found += list(getattr(parameter, "sub_parameters", None) or [parameter])
        return found

    def _build(self) -> None:
        """Instantiate the cell, export it once per protocol and find the varied rows."""
        self._check()
        h = self.sim.neuron.h
        if any(True for _ in h.allsec()):
            raise ValueError(
                "the NEURON session already holds sections; EngineEvaluator exports the "
                "whole session, so make it before building other cells in this process"
            )
        middle = {}
        for name in self.param_names:
            parameter = self.cell_model.params[name]
            if parameter.bounds is None:
                raise ValueError(f"the free parameter {name} has no bounds")
            middle[name] = 0.5 * (parameter.lower_bound + parameter.upper_bound)
        self.cell_model.freeze(middle)
        try:
            self.cell_model.instantiate(sim=self.sim)
        finally:
            self.cell_model.unfreeze(middle.keys())
        self._icell = self.cell_model.icell
        try:
            try:
                for protocol in self._sweeps:
                    self._prepared[protocol.name] = self._export(protocol)
            finally:
                # the cell stays in NEURON for this evaluator; the cell model is free again
                self.cell_model.icell = None
            self._find_varied()
        except BaseException:
            self.close()
            raise

    def _find_varied(self) -> None:
        """Every variable the free parameters set: its engine name, rows and segments."""
        segment_at_node = {}
        for section in self.sim.neuron.h.allsec():
            for segment in section:
                segment_at_node[int(segment.node_index())] = segment
        first = next(iter(self._prepared.values())).model
        engine_names = self._engine_names(first)
        reference = Engine(first, 1)
        variables = []
        for parameter in self._varying_parameters():
            if parameter.param_name not in variables:
                variables.append(parameter.param_name)
        for variable in variables:
            if variable in _PER_INSTANCE_GLOBALS:
                name = _PER_INSTANCE_GLOBALS[variable]
                self._varied.append(
                    _Varied(variable, name, np.zeros(0, np.int64), [], reference.get(name))
                )
                continue
            if variable not in engine_names:
                raise ValueError(
                    f"a free parameter sets {variable!r}, which the engine cannot vary per "
                    "instance (it varies mechanism parameters, cm and ion values; geometry "
                    "and Ra are one per model)"
                )
            name = engine_names[variable]
            nodes = self._nodes_of(first, name)
            for prepared in self._prepared.values():
                if not np.array_equal(self._nodes_of(prepared.model, name), nodes):
                    raise ValueError(f"{name} sits on other nodes in another protocol")
            rows = [row for row, node in enumerate(nodes) if int(node) in segment_at_node]
            segments = [segment_at_node[int(nodes[row])] for row in rows]
            base = reference.get(name)[0]
            self._varied.append(_Varied(variable, name, np.array(rows, np.int64), segments, base))

    def _export(self, protocol: SweepProtocol) -> _Prepared:
        """The cell with one protocol's stimuli, as a CellModel, and where to record."""
        h = self.sim.neuron.h
        protocol.instantiate(sim=self.sim, cell_model=self.cell_model)
        try:
            model = export_model()
            stimuli = tuple((stimulus.iclamp.hname(), stimulus) for stimulus in protocol.stimuli)
            record_nodes: list[int] = []
            records: list[tuple[str, int]] = []
            outputs = []
            for recording in protocol.recordings:
                if not recording.instantiated:  # its location raised: BluePyOpt gives None
                    outputs.append((recording.name, None, None))
                    continue
                segment = recording.location.instantiate(sim=self.sim, icell=self._icell)
                node = int(segment.node_index())
                if recording.variable == "v":
                    outputs.append((recording.name, "v", len(record_nodes)))
                    record_nodes.append(node)
                else:
                    variable = self._record_name(model, recording.variable)
                    outputs.append((recording.name, "record", f"{variable}@{node}"))
                    records.append((variable, node))
        finally:
            protocol.destroy(sim=self.sim)
            h.Vector().size()  # BluePyOpt's way of letting NEURON free what was dropped
        n_steps = neuron_step_count(protocol.total_duration, self.dt, self._steps_per_step)
        return _Prepared(
            protocol, model, n_steps, tuple(record_nodes), tuple(records), tuple(outputs), stimuli
        )

    @staticmethod
    def _engine_names(model: CellModel) -> dict[str, str]:
        """NEURON's range names (``gIhbar_Ih``, ``cm``, ``ena``) -> the engine's."""
        names = {"cm": "cm"}
        for ion in model.ions:
            for name in (f"e{ion}", f"{ion}i", f"{ion}o"):
                names[name] = name
        for mechanism, table in model.mechanisms.items():
            if table.mechanism.is_point_process:
                continue
            for parameter in table.params:
                names[f"{parameter}_{mechanism}"] = f"{mechanism}.{parameter}"
        return names

    @staticmethod
    def _nodes_of(model: CellModel, engine_name: str) -> np.ndarray:
        """The node of each row of an engine parameter's table."""
        if engine_name == "cm":
            return np.arange(model.n)
        if "." in engine_name:
            return np.asarray(model.mechanisms[engine_name.split(".", 1)[0]].node)
        for ion, table in model.ions.items():
            if engine_name in (f"e{ion}", f"{ion}i", f"{ion}o"):
                return np.asarray(table.node)
        raise ValueError(f"{engine_name!r} is not a per-node parameter of the engine")

    @staticmethod
    def _record_name(model: CellModel, variable: str) -> str:
        """The engine's name of a recorded NEURON variable (``cai``, ``m_NaTa_t``)."""
        for ion in model.ions:
            if variable in (f"e{ion}", f"{ion}i", f"{ion}o", f"i{ion}"):
                return variable
        for mechanism in model.mechanisms:
            suffix = f"_{mechanism}"
            if variable.endswith(suffix):
                return f"{mechanism}.{variable.removesuffix(suffix)}"
        raise ValueError(f"the engine cannot record {variable!r}")

    @property
    def models(self) -> dict[str, CellModel]:
        return {name: prepared.model for name, prepared in self._prepared.items()}

    def close(self) -> None:
        """Remove the evaluator's cell from NEURON (it cannot evaluate afterwards)."""
        if self._icell is not None:
            self._icell.destroy()
            self._icell = None
            self._varied = []
            self.sim.neuron.h.Vector().size()

    # ------------------------------------------------------------------ parameters
    def _as_dictionary(self, individual) -> dict[str, float]:
        if isinstance(individual, Mapping):
            missing = [name for name in self.param_names if name not in individual]
            if missing:
                raise ValueError(f"parameter values miss {missing}")
            return {name: individual[name] for name in self.param_names}
        values = list(individual)
        if len(values) != len(self.param_names):
            raise ValueError(
                f"an individual has {len(values)} values for {len(self.param_names)} parameters"
            )
        return self.param_dict(values)

    def _apply(self, parameter_values: dict[str, float]) -> None:
        """Set one individual's values on the cell as ``CellModel.instantiate`` does:
        every parameter, in the cell model's order, through its scaler."""
        cell_model = self.cell_model
        cell_model.freeze(parameter_values)
        try:
            for parameter in cell_model.params.values():
                parameter.instantiate(sim=self.sim, icell=self._icell, params=cell_model.params)
        finally:
            cell_model.unfreeze(parameter_values.keys())

    def _node_values(self, individuals: list[dict[str, float]]) -> dict[str, np.ndarray]:
        """Per engine name, ``(n_individuals, m)`` values (``(n_individuals,)`` for
        v_init): NEURON's numbers after each individual's values are set."""
        if self._icell is None:
            raise RuntimeError("this EngineEvaluator was closed")
        h = self.sim.neuron.h
        n = len(individuals)
        values = {varied.engine_name: np.tile(varied.base, (n, 1)) for varied in self._varied}
        for q, individual in enumerate(individuals):
            self._apply(individual)
            for varied in self._varied:
                if varied.engine_name in _PER_INSTANCE_GLOBALS.values():
                    values[varied.engine_name][q] = float(getattr(h, varied.neuron_name))
                    continue
                read = [getattr(segment, varied.neuron_name) for segment in varied.segments]
                values[varied.engine_name][q, varied.rows] = read
        for name in _PER_INSTANCE_GLOBALS.values():
            if name in values:
                values[name] = values[name][:, 0]
        return values

    # ------------------------------------------------------------------ runs
    def _run(self, prepared: _Prepared, values: dict[str, np.ndarray], n: int):
        """One engine run of a protocol for n individuals: ``(t, traces)``, traces
        a list per recording of ``(n, n_times)`` arrays (None where BluePyOpt gives None)."""
        engine = Engine(prepared.model, n, self.backend, workers=self.workers)
        for name, array in values.items():
            engine.set(name, array)
        for label, stimulus in prepared.stimuli:
            engine.set("IClamp.amp", float(stimulus.step_amplitude), target=label)
            engine.set("IClamp.delay", float(stimulus.step_delay), target=label)
            engine.set("IClamp.dur", float(stimulus.step_duration), target=label)
        options = RunOptions(
            prepared.n_steps * self.dt,
            self.dt,
            record_nodes=prepared.record_nodes,
            record=prepared.records,
        )
        if options.n_steps != prepared.n_steps:
            raise RuntimeError("the step count does not round-trip")  # never for dt > 0
        result = engine.run(options)
        traces = []
        for _name, kind, where in prepared.outputs:
            if kind is None:
                traces.append(None)
            elif kind == "v":
                traces.append(result.v[:, where])
            else:
                traces.append(result.records[where])
        return result.t, traces

    def _population_traces(self, individuals: list, protocols: list[SweepProtocol]):
        dictionaries = [self._as_dictionary(individual) for individual in individuals]
        values = self._node_values(dictionaries)
        return [
            (
                self._prepared[protocol.name],
                *self._run(self._prepared[protocol.name], values, len(individuals)),
            )
            for protocol in protocols
        ]

    @staticmethod
    def _responses(runs, q: int) -> dict:
        """Individual q's responses, as ``SweepProtocol.run`` returns them."""
        responses = {}
        for prepared, t, traces in runs:
            for (name, _kind, _where), trace in zip(prepared.outputs, traces, strict=True):
                responses[name] = None if trace is None else TimeVoltageResponse(name, t, trace[q])
        return responses

    def _select(self, protocols: Iterable | None) -> list[SweepProtocol]:
        if protocols is None:
            return list(self._sweeps)
        selected = []
        for protocol in self._flatten(protocols):
            if protocol.name not in self._prepared:
                raise ValueError(f"protocol {protocol.name!r} is not one of this evaluator's")
            selected.append(self._prepared[protocol.name].protocol)
        return selected

    def population_responses(self, individuals: Sequence, protocols: Iterable | None = None):
        """Every individual's responses: one engine run per protocol for all of them.

        Parameters
        ----------
        individuals : sequence of (sequence of float or dict of str to float)
            Values in ``param_names`` order, or by name.
        protocols : iterable of protocols, optional
            Default: every fitness protocol.

        Returns
        -------
        list of dict of str to TimeVoltageResponse
            Per individual, as BluePyOpt's ``run_protocols`` returns it: a
            ``TimeVoltageResponse`` (time in ms, voltage in mV, or the recorded variable's
            unit) per recording name.
        """
        individuals = list(individuals)
        if not individuals:
            return []
        runs = self._population_traces(individuals, self._select(protocols))
        return [self._responses(runs, q) for q in range(len(individuals))]

    def evaluate_population(
        self, individuals: Sequence, target: str = "scores"
    ) -> list[list[float]]:
        """Objectives of a population: one engine run per protocol for all of them.

        Parameters
        ----------
        individuals : sequence of (sequence of float or dict of str to float)
            Values in ``param_names`` order (DEAP individuals), or by name.
        target : {"scores", "values"}
            The objectives' scores (what optimisations minimise), or the features' values
            (``ObjectivesCalculator.calculate_values``).

        Returns
        -------
        list of list of float
            Per individual, one value per objective in ``self.objectives`` order.
        """
        if target not in ("scores", "values"):
            raise ValueError(f"target must be 'scores' or 'values', got {target!r}")
        individuals = list(individuals)
        if not individuals:
            return []
        runs = self._population_traces(individuals, list(self._sweeps))
        calculator = self.fitness_calculator
        calculate = (
            functools.partial(calculate_scores, calculator)
            if target == "scores"
            else calculator.calculate_values
        )

        def objectives(q: int) -> list[float]:
            return self.objective_list(calculate(self._responses(runs, q)))

        return _map_on_workers(objectives, len(individuals), self._objective_workers())

    def _objective_workers(self) -> int:
        """Processes for BluePyOpt's fitness calculation: the engine's workers (eFEL holds
        the GIL, and BluePyOpt's own pool evaluates the features in each process too)."""
        from dhs.engine.storage import default_workers

        return max(1, self.workers or default_workers())

    def map_function(self, function: Callable, individuals: Iterable) -> list:
        """A ``map`` for DEAP and ``DEAPOptimisation(map_function=...)``.

        Mapping one of this evaluator's evaluation methods (``evaluate_with_lists``,
        ``init_simulator_and_evaluate_with_lists``, ``evaluate``; bare or wrapped in
        ``functools.partial`` with keyword arguments, as DEAP's toolbox registers them)
        runs :meth:`evaluate_population` once for all individuals; any other function is
        mapped one by one.
        """
        individuals = list(individuals)
        inner, keywords = function, {}
        while isinstance(inner, functools.partial) and not inner.args:
            keywords = {**inner.keywords, **keywords}
            inner = inner.func
        owner = getattr(inner, "__self__", None)
        name = getattr(inner, "__name__", None)
        if owner is self and name in _BATCHED and set(keywords) <= {"target"}:
            return self.evaluate_population(individuals, **keywords)
        return [function(individual) for individual in individuals]

    # ------------------------------------------------------------------ BluePyOpt's API
    def run_protocols(self, protocols, param_values):
        """One individual's responses to ``protocols`` (BluePyOpt's signature)."""
        return self.population_responses([param_values], protocols)[0]

    def run_protocol(
        self, protocol, param_values, isolate=None, cell_model=None, sim=None, timeout=None
    ):
        """One individual's responses to one protocol; ``isolate``, ``cell_model``,
        ``sim`` and ``timeout`` are ignored (the engine runs in this process)."""
        return self.run_protocols([protocol], param_values)

    def evaluate_with_dicts(self, param_dict=None, target="scores"):
        """One individual, values by name: ``{objective name: value}``."""
        values = self.evaluate_population([param_dict], target)[0]
        return self.objective_dict(values)

    def evaluate_with_lists(self, param_list=None, target="scores"):
        """One individual, values in ``param_names`` order: a value per objective."""
        return self.evaluate_population([param_list], target)[0]

    def init_simulator_and_evaluate_with_lists(self, param_list=None, target="scores"):
        """As :meth:`evaluate_with_lists` (what DEAPOptimisation registers)."""
        return self.evaluate_with_lists(param_list, target)

    def evaluate(self, param_list=None, target="scores"):
        return self.evaluate_with_lists(param_list, target)

    def __str__(self) -> str:
        return "engine " + super().__str__()


def _map_on_workers(function: Callable[[int], list[float]], count: int, workers: int) -> list:
    """``[function(q) for q in range(count)]``, on ``workers`` forked processes where the
    platform forks (the children inherit the traces; only the objective lists come back),
    else in this process. Measured on the L5PC's Step1 with 20 individuals: the fitness
    calculation took 9.3 s of the evaluation's 24.9 s in one process, 7.3 s of it eFEL's
    per-feature ``Initialize``."""
    workers = min(workers, count)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(q) for q in range(count)]
    global _FORKED_FUNCTION
    _FORKED_FUNCTION = function
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_call_forked, range(count), chunksize=-(-count // workers))
    finally:
        _FORKED_FUNCTION = None


#: The function the forked workers of :func:`_map_on_workers` call (inherited by fork).
_FORKED_FUNCTION: Callable[[int], list[float]] | None = None


def _call_forked(q: int) -> list[float]:
    assert _FORKED_FUNCTION is not None
    return _FORKED_FUNCTION(q)

"""neuron_bridge.fit.EngineEvaluator on BluePyOpt's L5PC (examples/l5pc of the 1.14.26
sdist, built by the example's own code: studies/fitting/l5pc.py).

* The engine evaluator gives BluePyOpt's own NEURON evaluator's results exactly: for the
  released parameters and three random parameter sets, every trace (bAP: soma and two
  apical sites; Step1: soma) equals NEURON's bit for bit (max |dV| == 0.0, the same time
  samples), and so does every eFEL feature value and every objective (==, no tolerance:
  eFEL gets the very same arrays, so it cannot compute anything differently). To keep
  the suite short the protocols are shortened (shortened_protocols' defaults: bAP 205 ms,
  Step1 600 ms; the example's are 600 ms and 3 s); NEURON and the engine run in two child
  processes side by side (~1 min on two cores).
* DEAPOptimisation runs generations with the engine evaluator as its evaluator and
  ``map_function``: one engine evaluation per generation, for the whole population; plain
  DEAP's toolbox gets the same objectives.
* A distributed parameter (the apical Ih gradient's scale, freed) gets BluePyOpt's
  per-segment values, read back from NEURON, and NEURON's traces.
* The step count of BluePyOpt's ``h.run()`` (``while t < tstop - dt/2``) is NEURON's.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import child_process

INDIVIDUALS_SEED = 20240607
COMMON = """
import json
import numpy as np
from studies.fitting.l5pc import l5pc_problem, release_parameters

problem = l5pc_problem(["Step1", "bAP"], shorten={})
release = release_parameters()
individuals = [[release[name] for name in problem.param_names]]
individuals += problem.random_individuals(3, seed=SEED)
calculator = problem.fitness_calculator
traces = {}

def keep(q, responses):
    for name, response in responses.items():
        traces[f"{q}/{name}/t"] = np.asarray(response["time"])
        traces[f"{q}/{name}/v"] = np.asarray(response["voltage"])
"""

NEURON_CHILD = """
evaluator = problem.neuron_evaluator()  # NrnSimulator(dt=0.025, cvode_active=False), isolate=False
values, scores = [], []
for q, individual in enumerate(individuals):
    parameters = evaluator.param_dict(individual)
    responses = evaluator.run_protocols(problem.protocols.values(), parameters)
    keep(q, responses)
    values.append(evaluator.objective_list(calculator.calculate_values(responses)))
    scores.append(evaluator.objective_list(calculator.calculate_scores(responses)))
np.savez(OUT, **traces)
print(json.dumps({"values": values, "scores": scores}))
"""

ENGINE_CHILD = """
evaluator = problem.engine_evaluator()
population = evaluator.population_responses(individuals)  # one engine run per protocol
for q, responses in enumerate(population):
    keep(q, responses)
values = [evaluator.objective_list(calculator.calculate_values(r)) for r in population]
scores = evaluator.evaluate_population(individuals)  # what the optimisation calls
np.savez(OUT, **traces)
print(json.dumps({"values": values, "scores": scores,
                  "nodes": {name: model.n for name, model in evaluator.models.items()}}))
"""

DEAP_CHILD = """
import json
import deap.base
import bluepyopt
from bluepyopt.ephys.simulators import NrnSimulator
from neuron_bridge.fit import EngineEvaluator
from studies.fitting.l5pc import l5pc_problem

problem = l5pc_problem(["bAP"], shorten={"delay": 20.0, "after": 30.0})  # a 55 ms run
refusals = []
try:
    EngineEvaluator(problem.cell_model, problem.param_names, problem.protocols,
                    problem.fitness_calculator, sim=NrnSimulator(dt=0.025, cvode_active=True))
except ValueError as error:
    refusals.append(str(error))
evaluator = problem.engine_evaluator()
try:
    problem.engine_evaluator()  # the session now holds the first evaluator's cell
except ValueError as error:
    refusals.append(str(error))
batches = []
evaluate_population = evaluator.evaluate_population
def counted(individuals, target="scores"):
    batches.append(len(individuals))
    return evaluate_population(individuals, target)
evaluator.evaluate_population = counted
optimisation = bluepyopt.optimisations.DEAPOptimisation(
    evaluator=evaluator, offspring_size=2, map_function=evaluator.map_function, seed=1)
population, hall_of_fame, log, history = optimisation.run(max_ngen=2)
optimisation_batches = list(batches)
toolbox = deap.base.Toolbox()
toolbox.register("map", evaluator.map_function)
toolbox.register("evaluate", evaluator.evaluate_with_lists)
pair = [list(individual) for individual in population[:2]]
plain = [list(fitness) for fitness in toolbox.map(toolbox.evaluate, pair)]
print(json.dumps({
    "refusals": refusals,
    "batches": optimisation_batches,
    "plain_batches": batches[len(optimisation_batches):],
    "generations": [entry["gen"] for entry in log],
    "evaluations": [entry["nevals"] for entry in log],
    "valid": all(individual.fitness.valid for individual in population),
    "fitness": [list(individual.fitness.values) for individual in population],
    "objectives": len(evaluator.objectives),
    "hall_of_fame": len(hall_of_fame),
    "plain": plain,
    "again": evaluate_population(pair),
    "one_by_one": evaluator.map_function(sum, pair) == [sum(p) for p in pair],
}))
"""

GRADIENT_CHILD = """
import json
import numpy as np
from studies.fitting.l5pc import l5pc_problem

# the exponential apical Ih gradient's scale as a free parameter (frozen in the example)
problem = l5pc_problem(["bAP"], shorten={"delay": 20.0, "after": 30.0},
                       free={"gIhbar_Ih.apical": (0.0, 2e-4)})
individuals = problem.random_individuals(2, seed=7)
reference = problem.neuron_evaluator()  # its cell is gone after each run
expected = []
for individual in individuals:
    parameters = reference.param_dict(individual)
    responses = reference.run_protocols(problem.protocols.values(), parameters)
    expected.append({name: np.asarray(r["voltage"]) for name, r in responses.items()})
evaluator = problem.engine_evaluator()
found = evaluator.population_responses(individuals)
dv = max(float(np.abs(np.asarray(found[q][name]["voltage"]) - trace).max())
         for q in range(2) for name, trace in expected[q].items())
varied = next(v for v in evaluator._varied if v.engine_name == "Ih.gIhbar")
values = evaluator._node_values([evaluator.param_dict(i) for i in individuals])["Ih.gIhbar"]
apical = [row for row, segment in zip(varied.rows, varied.segments)
          if ".apic[" in segment.sec.name()]
other = [row for row in range(values.shape[1]) if row not in set(apical)]
scale = [i[problem.param_names.index("gIhbar_Ih.apical")] for i in individuals]
print(json.dumps({
    "dv": dv,
    "apical_rows": len(apical),
    "distinct_apical_values": len(set(values[0, apical].tolist())),
    "ratio_error": float(np.abs(values[1, apical] / values[0, apical] - scale[1] / scale[0]).max()),
    "other_values": sorted(set(values[:, other].ravel().tolist())),
}))
"""

STEPS_CHILD = """
import json
from neuron import h
from neuron_bridge.fit import neuron_fixed_step, neuron_step_count
h.load_file("stdrun.hoc")
section = h.Section(name="soma")
section.insert("pas")
found = []
for tstop, dt in [(600.0, 0.025), (3000.0, 0.025), (55.0, 0.025), (100.0, 0.1), (10.0, 0.03),
                  (7.3, 0.025), (205.0, 0.05)]:
    h.dt, h.steps_per_ms, h.tstop = dt, 1.0 / dt, tstop  # as NrnSimulator.run sets them
    times = h.Vector().record(h._ref_t)
    h.run()
    step, per_step = neuron_fixed_step(dt)
    found.append({"neuron": times.size() - 1, "neuron_dt": h.dt, "dt": step,
                  "ours": neuron_step_count(tstop, step, per_step)})
print(json.dumps(found))
"""


def _same(first, second) -> bool:
    """Equal values (None for a feature eFEL could not compute, NaN equal to NaN)."""
    if first is None or second is None:
        return first is None and second is None
    return first == second or (math.isnan(first) and math.isnan(second))


def test_engine_evaluator_equals_bluepyopt_neuron_evaluator(tmp_path):
    codes = {
        kind: COMMON.replace("SEED", str(INDIVIDUALS_SEED))
        + child.replace("OUT", repr(str(tmp_path / f"{kind}.npz")))
        for kind, child in (("neuron", NEURON_CHILD), ("engine", ENGINE_CHILD))
    }
    with ThreadPoolExecutor(2) as pool:
        done = dict(
            zip(
                codes,
                pool.map(lambda code: child_process.run_python(code, timeout=1200), codes.values()),
                strict=True,
            )
        )
    neuron, engine = (child_process.last_json_line(done[kind]) for kind in ("neuron", "engine"))
    assert engine["nodes"]["Step1"] == engine["nodes"]["bAP"] > 100
    with np.load(tmp_path / "neuron.npz") as archive:
        reference = {key: archive[key] for key in archive.files}
    with np.load(tmp_path / "engine.npz") as archive:
        ours = {key: archive[key] for key in archive.files}
    assert sorted(ours) == sorted(reference)
    assert len(reference) == 4 * 4 * 2  # 4 individuals x 4 recordings x (t, v)
    samples = {key.split("/")[1]: value.size for key, value in reference.items()}
    assert samples == {
        "Step1.soma.v": 24001,
        "bAP.soma.v": 8201,
        "bAP.dend1.v": 8201,
        "bAP.dend2.v": 8201,
    }
    for key, value in reference.items():
        assert ours[key].shape == value.shape, key
        assert np.abs(ours[key] - value).max() == 0.0, key
    assert max(reference[f"{q}/Step1.soma.v/v"].max() for q in range(4)) > 0  # spikes
    for kind in ("values", "scores"):
        assert len(neuron[kind]) == len(engine[kind]) == 4
        for q in range(4):
            assert len(neuron[kind][q]) == 15  # Step1's 10 objectives and bAP's 5
            pairs = zip(neuron[kind][q], engine[kind][q], strict=True)
            assert all(_same(a, b) for a, b in pairs), (kind, q)
    assert any(value is not None for value in neuron["values"][0])


def test_deap_optimisation_runs_on_the_engine_evaluator():
    found = child_process.last_json_line(child_process.run_python(DEAP_CHILD, timeout=900))
    assert len(found["refusals"]) == 2
    assert "fixed step" in found["refusals"][0]
    assert "already holds sections" in found["refusals"][1]
    # the initial population, then one generation of offspring: one batch each
    assert found["batches"] == [2, 2]
    assert found["generations"] == [1, 2]
    assert found["evaluations"] == [2, 2]
    assert found["valid"] and found["hall_of_fame"] >= 2
    assert found["objectives"] == 5
    assert all(len(fitness) == 5 for fitness in found["fitness"])
    assert found["plain_batches"] == [2]  # plain DEAP's toolbox.map: one batch too
    assert found["plain"] == found["again"]
    assert found["one_by_one"]


def test_distributed_parameter_is_read_back_from_bluepyopts_scaler():
    found = child_process.last_json_line(child_process.run_python(GRADIENT_CHILD, timeout=900))
    assert found["dv"] == 0.0
    # every apical segment has its own value (the soma-distance exponential), proportional
    # to the individual's scale; basal and somatic Ih stay at the frozen 8e-5 S/cm2
    assert found["apical_rows"] > 100
    assert found["distinct_apical_values"] > 100
    assert found["ratio_error"] < 1e-12
    assert found["other_values"] == [8e-05]


def test_step_count_is_neurons():
    found = child_process.last_json_line(child_process.run_python(STEPS_CHILD, timeout=300))
    for entry in found:
        assert entry["ours"] == entry["neuron"], entry
        assert entry["dt"] == entry["neuron_dt"], entry


def test_objectives_on_forked_workers_keep_the_order():
    """The fitness calculation's map over worker processes returns what one process does,
    in the individuals' order."""
    from neuron_bridge.fit import _map_on_workers

    expected = [[q * 1.5, -float(q)] for q in range(7)]
    for workers in (1, 2, 3):
        assert _map_on_workers(lambda q: [q * 1.5, -float(q)], 7, workers) == expected
    assert _map_on_workers(lambda q: [float(q)], 0, 2) == []

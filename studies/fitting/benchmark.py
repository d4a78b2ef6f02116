"""One generation of the L5PC optimisation: BluePyOpt on NEURON against the engine.

The same individuals (``--individuals``, default 100, drawn uniformly within the bounds,
seeded) of BluePyOpt's L5PC problem (:func:`studies.fitting.l5pc.l5pc_problem`: all four
protocols and 35 objectives by default) are evaluated twice in one run:

``bluepyopt_neuron_pool``
    BluePyOpt's own evaluator (``CellEvaluator``, ``NrnSimulator(dt=0.025,
    cvode_active=False)``) mapped over the individuals with BluePyOpt's parallel map: a
    ``multiprocessing.Pool`` of ``--processes`` (default 2, one per core) whose ``map``
    is what ``DEAPOptimisation(map_function=pool.map)`` calls, on the evaluator's
    ``init_simulator_and_evaluate_with_lists``. Pool workers are daemonic and may not
    start processes, so the evaluator runs its protocols in the worker
    (``isolate_protocols=False``).
``engine``
    :class:`neuron_bridge.fit.EngineEvaluator`: ``evaluate_population`` on all the
    individuals, one engine run per protocol (``--backend``, every core on the CPU).
    Making it (instantiating the cell, exporting one model per protocol) and loading or
    compiling its kernels are timed apart from the evaluation.

The pool is made before the engine evaluator, so its workers' NEURON sessions hold only
their own cells. The report gives both times, their ratio and the largest difference
between the two objective vectors (0.0: the engine's traces are NEURON's to the bit), and
goes with the machine's description to ``data/benchmarks/fitting_l5pc_<device>.json``.

    python -m studies.fitting.benchmark                     # 100 individuals: hours on 2 cores
    python -m studies.fitting.benchmark --individuals 4 --shorten --out /tmp/fitting.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np

from .l5pc import DT, l5pc_problem

PROTOCOLS = ("bAP", "Step1", "Step2", "Step3")
DATA = Path(__file__).resolve().parents[2] / "data" / "benchmarks"


def _difference(first: list[list[float]], second: list[list[float]]) -> dict:
    """The largest |difference| between two populations' objectives and how many differ."""
    largest, differing = 0.0, 0
    for row_first, row_second in zip(first, second, strict=True):
        for a, b in zip(row_first, row_second, strict=True):
            if a == b or (math.isnan(a) and math.isnan(b)):
                continue
            differing += 1
            largest = max(largest, abs(a - b))
    return {"max_abs_objective_difference": largest, "objectives_differing": differing}


def run_benchmark(
    individuals: int = 100,
    processes: int = 2,
    protocols: tuple[str, ...] | None = None,
    shorten: bool = False,
    seed: int = 0,
    backend: str = "cpu",
    output_path: Path | None = None,
) -> dict:
    """Time both evaluations of the same population and write the JSON report.

    Parameters
    ----------
    individuals : int
        Population size.
    processes : int
        Pool processes of BluePyOpt's NEURON evaluation.
    protocols : tuple of str, optional
        Default: all four.
    shorten : bool
        Shortened protocols (:func:`studies.fitting.l5pc.shortened_protocols`' defaults).
    seed : int
        Seed of the individuals.
    backend : {"cpu", "auto", "cuda"}
        The engine's backend.
    output_path : Path, optional
        Default ``data/benchmarks/fitting_l5pc_<device>.json``.

    Returns
    -------
    dict
        The report.
    """
    from benchmarks.solve import device_tag, machine_info
    from dhs.engine import Engine, RunOptions

    problem = l5pc_problem(protocols, {} if shorten else None)
    population = problem.random_individuals(individuals, seed)
    neuron_evaluator = problem.neuron_evaluator(DT, isolate=False)
    durations = {name: protocol.total_duration for name, protocol in problem.protocols.items()}
    print(
        f"L5PC: {individuals} individuals, protocols {durations} ms, "
        f"{len(problem.fitness_calculator.objectives)} objectives",
        flush=True,
    )

    context = multiprocessing.get_context("fork")
    with context.Pool(processes=processes) as pool:
        start = time.perf_counter()
        neuron_objectives = pool.map(
            neuron_evaluator.init_simulator_and_evaluate_with_lists, population
        )
        neuron_s = time.perf_counter() - start
    print(f"bluepyopt_neuron_pool ({processes} processes): {neuron_s:.2f} s", flush=True)

    start = time.perf_counter()
    evaluator = problem.engine_evaluator(DT, backend)
    construct_s = time.perf_counter() - start
    start = time.perf_counter()
    for model in evaluator.models.values():  # load (or compile) the kernels: not timed below
        Engine(model, individuals, evaluator.backend).run(RunOptions(evaluator.dt, evaluator.dt))
    kernels_s = time.perf_counter() - start
    start = time.perf_counter()
    engine_objectives = evaluator.evaluate_population(population)
    engine_s = time.perf_counter() - start
    print(
        f"engine ({evaluator.backend}): {engine_s:.2f} s (made in {construct_s:.2f} s, "
        f"kernels loaded in {kernels_s:.2f} s)",
        flush=True,
    )
    difference = _difference(neuron_objectives, engine_objectives)
    machine = machine_info()
    report = {
        "benchmark": "one generation of BluePyOpt's L5PC optimisation: BluePyOpt's NEURON "
        "evaluator on a multiprocessing pool against neuron_bridge.fit.EngineEvaluator, "
        "the same individuals",
        "machine": machine,
        "machine_note": "timings from a machine that may be shared with other work",
        "problem": {
            "example": "BluePyOpt 1.14.26 examples/l5pc (l5pc_model, l5pc_evaluator)",
            "protocol_durations_ms": durations,
            "shortened": shorten,
            "objectives": len(problem.fitness_calculator.objectives),
            "free_parameters": len(problem.param_names),
            "dt_ms": DT,
            "nodes": {name: model.n for name, model in evaluator.models.items()},
        },
        "individuals": individuals,
        "seed": seed,
        "methods": {
            "bluepyopt_neuron_pool": {
                "seconds": neuron_s,
                "processes": processes,
                "description": "multiprocessing Pool(processes).map over "
                "CellEvaluator.init_simulator_and_evaluate_with_lists "
                "(NrnSimulator(dt=0.025, cvode_active=False), isolate_protocols=False)",
            },
            "engine": {
                "seconds": engine_s,
                "backend": evaluator.backend,
                "construct_s": construct_s,
                "kernels_s": kernels_s,
                "description": "EngineEvaluator.evaluate_population: one Engine run per "
                "protocol for all individuals, then BluePyOpt's fitness calculator",
            },
        },
        "engine_speedup": neuron_s / engine_s if engine_s > 0 else None,
        "accuracy": {
            **difference,
            "objectives_compared": int(np.size(neuron_objectives)),
        },
    }
    if output_path is None:
        output_path = DATA / f"fitting_l5pc_{device_tag(machine)}.json"
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"engine / NEURON pool: {report['engine_speedup']:.2f}x; max |objective difference| "
        f"{difference['max_abs_objective_difference']:.3g} "
        f"({difference['objectives_differing']} of {np.size(neuron_objectives)} differ); "
        f"report: {output_path}",
        flush=True,
    )
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studies.fitting.benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--individuals", type=int, default=100, help="default 100")
    parser.add_argument("--processes", type=int, default=2, help="NEURON pool size (default 2)")
    parser.add_argument(
        "--protocols", nargs="+", choices=PROTOCOLS, default=None, help="default: all four"
    )
    parser.add_argument("--shorten", action="store_true", help="shortened protocols")
    parser.add_argument("--seed", type=int, default=0, help="seed of the individuals")
    parser.add_argument("--backend", choices=("cpu", "auto", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    arguments = parser.parse_args(argv)
    run_benchmark(
        individuals=arguments.individuals,
        processes=arguments.processes,
        protocols=tuple(arguments.protocols) if arguments.protocols else None,
        shorten=arguments.shorten,
        seed=arguments.seed,
        backend=arguments.backend,
        output_path=arguments.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

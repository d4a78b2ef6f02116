"""BluePyOpt's L5PC optimisation with the engine as the simulator.

The problem is BluePyOpt's ``examples/l5pc`` (``parameters.json``, ``mechanisms.json``,
``protocols.json``, ``features.json``), built by the example's own code
(:func:`studies.fitting.l5pc.l5pc_problem`); the optimisation is BluePyOpt's
``DEAPOptimisation`` (IBEA) with :class:`neuron_bridge.fit.EngineEvaluator` as its
evaluator and ``evaluator.map_function`` as its map, so each generation is one engine run
per protocol for the whole population. After every generation it prints the best
individual so far (smallest sum of objectives) and its objectives.

Run (from a source checkout)::

    python -m studies.fitting.l5pc_optimisation                  # 100 individuals, 3 generations
    python -m studies.fitting.l5pc_optimisation --generations 2 --offspring 8 --shorten
    python -m studies.fitting.l5pc_optimisation --backend auto --generations 50   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .l5pc import DT, l5pc_problem

PROTOCOLS = ("bAP", "Step1", "Step2", "Step3")


class GenerationReport:
    """A ``map`` for DEAPOptimisation: the engine evaluator's batched map, then a report.

    Every call is one generation's evaluation (the initial population first); it keeps
    the best individual seen so far and prints it.
    """

    def __init__(self, evaluator, show: int):
        self.evaluator = evaluator
        self.show = show
        self.generation = 0
        self.best: tuple[float, list[float], list[float]] | None = None
        self.history: list[dict] = []
        self.started = time.perf_counter()

    def __call__(self, function, individuals) -> list:
        individuals = [list(individual) for individual in individuals]
        start = time.perf_counter()
        objectives = self.evaluator.map_function(function, individuals)
        elapsed = time.perf_counter() - start
        self.generation += 1
        sums = [float(np.sum(values)) for values in objectives]
        q = int(np.argmin(sums)) if sums else -1
        if q >= 0 and (self.best is None or sums[q] < self.best[0]):
            self.best = (sums[q], individuals[q], [float(value) for value in objectives[q]])
        entry = {
            "generation": self.generation,
            "evaluated": len(individuals),
            "seconds": elapsed,
            "best_sum_this_generation": min(sums) if sums else None,
            "best_sum_so_far": self.best[0] if self.best else None,
        }
        self.history.append(entry)
        self._print(entry)
        return objectives

    def _print(self, entry: dict) -> None:
        if not entry["evaluated"]:
            print(f"generation {entry['generation']}: nothing to evaluate", flush=True)
            return
        print(
            f"generation {entry['generation']}: {entry['evaluated']} individuals in "
            f"{entry['seconds']:.1f} s; best sum of objectives: this generation "
            f"{entry['best_sum_this_generation']:.3f}, so far {entry['best_sum_so_far']:.3f}",
            flush=True,
        )
        if self.best is None:
            return
        names = [objective.name for objective in self.evaluator.objectives]
        ranked = sorted(zip(self.best[2], names, strict=True), reverse=True)
        shown = ranked if self.show <= 0 else ranked[: self.show]
        for value, name in shown:
            print(f"    {name:45s} {value:10.4f}", flush=True)
        if len(shown) < len(ranked):
            print(f"    ... {len(ranked) - len(shown)} smaller objectives (--show 0: all)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studies.fitting.l5pc_optimisation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--generations", type=int, default=3, help="DEAP's max_ngen (default 3)")
    parser.add_argument(
        "--offspring", type=int, default=100, help="population and offspring size (default 100)"
    )
    parser.add_argument("--seed", type=int, default=1, help="DEAPOptimisation's seed (default 1)")
    parser.add_argument(
        "--backend",
        choices=("cpu", "auto", "cuda"),
        default="cpu",
        help="the engine's backend (auto: CUDA when a GPU is present)",
    )
    parser.add_argument("--workers", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument(
        "--protocols", nargs="+", choices=PROTOCOLS, default=None, help="default: all four"
    )
    parser.add_argument(
        "--shorten",
        action="store_true",
        help="shortened protocols (bAP 205 ms, steps 600 ms) for a quick run",
    )
    parser.add_argument(
        "--show", type=int, default=8, help="objectives printed per generation (0: all)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    arguments = parser.parse_args(argv)

    import bluepyopt

    start = time.perf_counter()
    problem = l5pc_problem(arguments.protocols, {} if arguments.shorten else None)
    evaluator = problem.engine_evaluator(DT, arguments.backend, arguments.workers)
    set_up = time.perf_counter() - start
    durations = {
        name: protocol.total_duration for name, protocol in evaluator.fitness_protocols.items()
    }
    print(
        f"L5PC: {len(problem.param_names)} free parameters, {len(evaluator.objectives)} "
        f"objectives, protocols {durations} ms, engine backend {evaluator.backend}; "
        f"set up in {set_up:.1f} s",
        flush=True,
    )
    report = GenerationReport(evaluator, arguments.show)
    optimisation = bluepyopt.optimisations.DEAPOptimisation(
        evaluator=evaluator,
        offspring_size=arguments.offspring,
        map_function=report,
        seed=arguments.seed,
    )
    _population, hall_of_fame, _log, _history = optimisation.run(max_ngen=arguments.generations)
    best = hall_of_fame[0]
    print(f"\nbest (hall of fame): sum of objectives {sum(best.fitness.values):.4f}")
    for name, value in zip(problem.param_names, best, strict=True):
        print(f"    {name:35s} {value:.6g}")
    if arguments.out is not None:
        summary = {
            "protocol_durations_ms": durations,
            "backend": evaluator.backend,
            "offspring": arguments.offspring,
            "generations": arguments.generations,
            "seed": arguments.seed,
            "set_up_s": set_up,
            "history": report.history,
            "best_parameters": dict(zip(problem.param_names, map(float, best), strict=True)),
            "best_objectives": evaluator.objective_dict([float(v) for v in best.fitness.values]),
        }
        arguments.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

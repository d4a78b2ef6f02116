"""The ``dhs-bench`` command: the project's benchmarks and demos."""

from __future__ import annotations

import argparse
import sys

# benchmarks.engine.BASELINES (not imported here: importing it starts NEURON)
ENGINE_BASELINES = ("neuron_sequential", "neuron_nthread2", "coreneuron", "arbor")


def _solve(arguments) -> int:
    from .solve import run_benchmark

    run_benchmark(
        batches=tuple(arguments.cells), repeats=arguments.repeats, output_path=arguments.output
    )
    return 0


def _bridge(arguments) -> int:
    from .bridge import run_benchmark

    run_benchmark(steps=arguments.steps, output_path=arguments.output)
    return 0


def _engine(arguments) -> int:
    from .engine import run_benchmark

    run_benchmark(
        sizes=tuple(arguments.sizes),
        cuda_sizes=tuple(arguments.cuda_sizes),
        tstop=arguments.tstop,
        neuron_instances=arguments.neuron_instances,
        rounds=arguments.rounds,
        baselines=tuple(arguments.baselines) if arguments.baselines else None,
        cuda=arguments.cuda,
        profile=arguments.profile,
        output_path=arguments.output,
    )
    return 0


def _demo(arguments) -> int:
    from .demo import main as demo

    return demo(n=arguments.n, tstop=arguments.tstop, output=arguments.output)


def _swap_demo(arguments) -> int:
    from .swap_demo import main as swap_demo

    return swap_demo(tstop=arguments.tstop)


def _schedule_demo(arguments) -> int:
    from .schedule_demo import main as schedule_demo

    return schedule_demo()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dhs-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="the main job: N different instances of a cell, NEURON against the engine"
    )
    demo.add_argument("--n", type=int, default=200, help="instances (default 200)")
    demo.add_argument("--tstop", type=float, default=100.0, help="ms (default 100)")
    demo.add_argument("--output", default="output", help="folder of the figure (default output)")
    demo.set_defaults(run=_demo)

    solve = commands.add_parser("solve", help="the tree solve alone, batches of a CA1-size cell")
    solve.add_argument("--cells", type=int, nargs="+", default=[715, 3000, 7150])
    solve.add_argument("--repeats", type=int, default=7)
    solve.add_argument("--output", help="JSON path (default data/benchmarks/...)")
    solve.set_defaults(run=_solve)

    bridge = commands.add_parser("bridge", help="per-step cost, native vs swapped NEURON solve")
    bridge.add_argument("--steps", type=int, default=400)
    bridge.add_argument("--output", help="JSON path (default data/benchmarks/...)")
    bridge.set_defaults(run=_bridge)

    engine = commands.add_parser(
        "engine", help="N instances: dhs.engine against NEURON, CoreNEURON and Arbor"
    )
    engine.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1000])
    engine.add_argument("--cuda-sizes", type=int, nargs="*", default=[1000, 10000])
    engine.add_argument(
        "--no-cuda", dest="cuda", action="store_false", help="never run the CUDA engine"
    )
    engine.add_argument(
        "--baselines",
        nargs="+",
        choices=ENGINE_BASELINES,
        help="baselines to run (default: all available; neuron_sequential always runs)",
    )
    engine.add_argument("--tstop", type=float, default=25.0, help="ms (default 25)")
    engine.add_argument("--rounds", type=int, default=3, help="timed calls per method")
    engine.add_argument("--neuron-instances", type=int, default=6, help="M timed in NEURON")
    engine.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None)
    engine.add_argument("--output", help="JSON path (default data/benchmarks/...)")
    engine.set_defaults(run=_engine)

    swap = commands.add_parser("swap-demo", help="one cell: NEURON's solve against the DHS swap")
    swap.add_argument("--tstop", type=float, default=100.0, help="ms (default 100)")
    swap.set_defaults(run=_swap_demo)

    schedule = commands.add_parser("schedule-demo", help="schedule and solve a NEURON cell")
    schedule.set_defaults(run=_schedule_demo)

    arguments = parser.parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())

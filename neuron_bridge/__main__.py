"""``python -m neuron_bridge demo``, ``... bench`` and ``... bench-engine``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuron_bridge")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="pyramidal cell: NEURON vs the DHS solve")
    demo.add_argument("--tstop", type=float, default=100.0, help="ms (default 100)")
    bench = commands.add_parser("bench", help="per-step cost, native vs swapped solve")
    bench.add_argument("--steps", type=int, default=400)
    bench.add_argument("--output", help="JSON path (default data/benchmarks/...)")
    engine = commands.add_parser(
        "bench-engine", help="N instances: NEURON one after another vs dhs.engine (cpu, cuda)"
    )
    engine.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1000])
    engine.add_argument("--cuda-sizes", type=int, nargs="+", default=[1000, 10000])
    engine.add_argument("--tstop", type=float, default=25.0, help="ms (default 25)")
    engine.add_argument("--rounds", type=int, default=3, help="timed calls per method")
    engine.add_argument("--neuron-instances", type=int, default=6, help="M timed in NEURON")
    engine.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None)
    engine.add_argument("--output", help="JSON path (default data/benchmarks/...)")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from .demo import main as demo

        return demo(tstop=arguments.tstop)
    if arguments.command == "bench-engine":
        from .engine_bench import run_benchmark as run_engine_benchmark

        run_engine_benchmark(
            sizes=tuple(arguments.sizes),
            cuda_sizes=tuple(arguments.cuda_sizes),
            tstop=arguments.tstop,
            neuron_instances=arguments.neuron_instances,
            rounds=arguments.rounds,
            profile=arguments.profile,
            output_path=arguments.output,
        )
        return 0
    from .bench import run_benchmark

    run_benchmark(steps=arguments.steps, output_path=arguments.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

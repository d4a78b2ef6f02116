"""``python -m neuron_bridge demo`` and ``python -m neuron_bridge bench``."""

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
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from .demo import main as demo

        return demo(tstop=arguments.tstop)
    from .bench import run_benchmark

    run_benchmark(steps=arguments.steps, output_path=arguments.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``dhs-neuron`` command: NEURON models and the DHS schedule.

Benchmarks and demos are the ``dhs-bench`` command (the ``benchmarks`` folder).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dhs-neuron", description=__doc__)
    parser.add_subparsers(dest="command", required=True)
    arguments = parser.parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())

"""The ``dhs`` command: ``dhs schedule FILE``.

Benchmarks and demos are the ``dhs-bench`` command (the ``benchmarks`` folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .schedule import breadth_first_level_steps, schedule
from .tree import Tree


def load_tree(path: str | Path) -> Tree:
    """An SWC file (one node per sample) or an ``.npz``/``.npy`` holding a parent array."""
    path = Path(path)
    if path.suffix.lower() == ".swc":
        return Tree.from_swc(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as archive:
            if "parent" not in archive.files:
                raise ValueError(f"{path} has no 'parent' array (has {archive.files})")
            return Tree(archive["parent"])
    if path.suffix.lower() == ".npy":
        return Tree(np.load(path))
    raise ValueError(f"{path}: expected an .swc, .npz or .npy file")


def schedule_table(tree: Tree, threads: int) -> dict[str, int]:
    """The numbers ``dhs schedule`` prints for one k."""
    dhs_schedule = schedule(tree, threads)
    return {
        "nodes": tree.n,
        "cells": tree.n_components,
        "depth": tree.height,
        "serial_steps": tree.n,
        "dhs_steps": dhs_schedule.n_steps,
        "lower_bound": dhs_schedule.lower_bound,
        "breadth_first_level_steps": breadth_first_level_steps(tree, threads),
    }


def _schedule_command(arguments) -> int:
    tree = load_tree(arguments.file)
    for threads in arguments.threads:
        row = schedule_table(tree, threads)
        gain = row["breadth_first_level_steps"] / row["dhs_steps"]
        print(f"{arguments.file}  threads={threads}")
        for key, value in row.items():
            print(f"  {key.replace('_', ' '):28s} {value:>10,}")
        print(f"  {'breadth-first / dhs':28s} {gain:>10.2f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dhs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    schedule_parser = commands.add_parser(
        "schedule", help="DHS steps, lower bound and breadth-first-level steps for a tree"
    )
    schedule_parser.add_argument("file", help=".swc, or .npz/.npy with a parent array")
    schedule_parser.add_argument(
        "--threads",
        "-k",
        type=int,
        nargs="+",
        default=[16],
        help="nodes per parallel step (default 16)",
    )
    schedule_parser.set_defaults(run=_schedule_command)

    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except (ValueError, OSError) as error:
        print(f"dhs {arguments.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

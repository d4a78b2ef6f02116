"""The ``dhs`` command: ``dhs schedule FILE``.

``FILE`` is an SWC morphology (one tree node per sample), an ``.npz``/``.npy`` file with
a parent array, or, through NEURON, a Neurolucida ``.asc`` morphology or a NEURON model
(``.hoc``, ``.nrn``, or a ``.py`` file that builds one): then the tree is NEURON's own
compartment tree, at the model's ``nseg`` or at ``--d-lambda`` / ``--dx``.

Benchmarks and demos are the ``dhs-bench`` command (the ``benchmarks`` folder).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from .schedule import breadth_first_level_steps, schedule
from .tree import Tree

__all__ = [
    "MODEL_READER_GROUP",
    "NEURON_SUFFIXES",
    "describe_tree_source",
    "find_model_reader",
    "load_tree",
    "main",
    "print_schedule",
    "schedule_table",
]

# Entry-point group of the readers that build a tree through NEURON. Each entry point is
# named by a suffix without its dot ("asc") and loads a callable
# ``reader(path, *, d_lambda=None, dx=None) -> Tree``; neuron_bridge provides them, so
# dhs never imports neuron_bridge.
MODEL_READER_GROUP = "dhs.model_readers"
NEURON_SUFFIXES = (".swc", ".asc", ".hoc", ".nrn", ".py")
ARRAY_SUFFIXES = (".npz", ".npy")


def find_model_reader(suffix: str, group: str = MODEL_READER_GROUP) -> Callable[..., Tree]:
    """The installed reader for files ending in ``suffix`` (such as ``".asc"``).

    Raises
    ------
    ValueError
        If no entry point of ``group`` is named for the suffix (NEURON or neuron_bridge
        not installed), or if loading it fails to import.
    """
    name = suffix.lower().lstrip(".")
    found = [entry for entry in metadata.entry_points(group=group) if entry.name == name]
    advice = (
        "install NEURON (pip install neuron) and this project with its neuron_bridge "
        "package (pip install -e <repository>)"
    )
    if not found:
        raise ValueError(
            f"reading {suffix} files needs NEURON, through the project's neuron_bridge: no "
            f"reader for {suffix} is installed (entry-point group {group!r}); {advice}"
        )
    try:
        return found[0].load()
    except ImportError as error:
        raise ValueError(
            f"reading {suffix} files needs NEURON, through the project's neuron_bridge, "
            f"which could not be imported ({error}); {advice}"
        ) from error


def load_tree(path: str | Path, *, d_lambda: float | None = None, dx: float | None = None) -> Tree:
    """The tree ``dhs schedule`` reports for a file.

    Parameters
    ----------
    path : str or Path
        ``.swc`` (one node per sample, read by :func:`dhs.swc.read_swc`), ``.npz`` (with
        a ``parent`` array) or ``.npy`` (a parent array); ``.asc``, ``.hoc``, ``.nrn``
        and ``.py`` (a script that builds a NEURON model) go to the reader installed in
        :data:`MODEL_READER_GROUP`, which returns NEURON's compartment tree.
    d_lambda : float, optional
        Discretise with NEURON's d_lambda rule (at 100 Hz) first; NEURON files only (an
        ``.swc`` with it goes through NEURON too).
    dx : float, optional
        Discretise to segments of at most ``dx`` µm first; as ``d_lambda``.

    Raises
    ------
    ValueError
        For an unknown suffix, a bad file, ``d_lambda`` or ``dx`` with an array file, or
        a NEURON file without NEURON.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    known = (*NEURON_SUFFIXES, *ARRAY_SUFFIXES)
    if suffix not in known:
        raise ValueError(f"{path}: expected one of {', '.join(known)} (got {path.suffix!r})")
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    discretised = d_lambda is not None or dx is not None
    if suffix in ARRAY_SUFFIXES:
        if discretised:
            raise ValueError(f"{path}: --d-lambda and --dx apply to NEURON models only")
        if suffix == ".npy":
            return Tree(np.load(path))
        with np.load(path) as archive:
            if "parent" not in archive.files:
                raise ValueError(f"{path} has no 'parent' array (has {archive.files})")
            return Tree(archive["parent"])
    if suffix == ".swc" and not discretised:
        return Tree.from_swc(path)
    return find_model_reader(suffix)(path, d_lambda=d_lambda, dx=dx)


def describe_tree_source(
    path: str | Path, *, d_lambda: float | None = None, dx: float | None = None
) -> str:
    """One line saying which tree :func:`load_tree` reports for these arguments."""
    suffix = Path(path).suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return "tree: the parent array in the file"
    if suffix == ".swc" and d_lambda is None and dx is None:
        return "tree: one node per SWC sample"
    if d_lambda is not None:
        rule = f"nseg by the d_lambda rule, d_lambda = {d_lambda:g} at 100 Hz"
    elif dx is not None:
        rule = f"nseg for segments of at most {dx:g} um"
    else:
        rule = "the model's own nseg"
    return f"tree: NEURON's compartments (matrix rows) of every section, {rule}"


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


def print_schedule(label: str, tree: Tree, threads: list[int], source: str = "") -> None:
    """Print :func:`schedule_table` for each k (the output of ``dhs schedule``)."""
    if source:
        print(f"{label}  {source}")
    for k in threads:
        row = schedule_table(tree, k)
        gain = row["breadth_first_level_steps"] / row["dhs_steps"]
        print(f"{label}  threads={k}")
        for key, value in row.items():
            print(f"  {key.replace('_', ' '):28s} {value:>10,}")
        print(f"  {'breadth-first / dhs':28s} {gain:>10.2f}x")


def add_schedule_arguments(parser: argparse.ArgumentParser, file_help: str) -> None:
    """The arguments of ``dhs schedule`` (shared with ``dhs-neuron schedule``)."""
    parser.add_argument("file", help=file_help)
    parser.add_argument(
        "--threads",
        "-k",
        type=int,
        nargs="+",
        default=[16],
        help="nodes per parallel step (default 16)",
    )
    discretisation = parser.add_mutually_exclusive_group()
    discretisation.add_argument(
        "--d-lambda",
        type=float,
        help="NEURON models: set nseg by NEURON's d_lambda rule at 100 Hz (0.1 is usual)",
    )
    discretisation.add_argument(
        "--dx", type=float, help="NEURON models: set nseg for segments of at most DX um"
    )


def _schedule_command(arguments) -> int:
    options = {"d_lambda": arguments.d_lambda, "dx": arguments.dx}
    tree = load_tree(arguments.file, **options)
    source = describe_tree_source(arguments.file, **options)
    print_schedule(arguments.file, tree, arguments.threads, source)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dhs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    schedule_parser = commands.add_parser(
        "schedule", help="DHS steps, lower bound and breadth-first-level steps for a tree"
    )
    add_schedule_arguments(
        schedule_parser,
        ".swc, .npz/.npy with a parent array, or through NEURON .asc, .hoc, .nrn or a .py "
        "file that builds a NEURON model",
    )
    schedule_parser.set_defaults(run=_schedule_command)

    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"dhs {arguments.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``dhs-neuron`` command: the DHS schedule of a NEURON model's compartment tree.

``dhs-neuron schedule FILE`` loads FILE into NEURON (an ``.swc`` or ``.asc`` morphology
through Import3d, a ``.hoc``/``.nrn`` file, or a ``.py`` file that builds a model), takes
NEURON's compartment tree of all sections (one node per matrix row), at the model's own
``nseg`` or at ``--d-lambda`` / ``--dx``, and prints its schedule as ``dhs schedule``
does. :func:`read_model_tree` is also the reader ``dhs schedule`` finds through the
``dhs.model_readers`` entry points.

Benchmarks and demos are the ``dhs-bench`` command (the ``benchmarks`` folder).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
from pathlib import Path

import dhs
from dhs.cli import add_schedule_arguments, describe_tree_source, print_schedule

__all__ = ["main", "read_model_tree"]

MODEL_SUFFIXES = (".swc", ".asc", ".hoc", ".nrn", ".py")


@contextlib.contextmanager
def _running_from(folder: Path, argv: list[str]):
    """Run a script as ``python script`` would: from its folder, with it on sys.path."""
    cwd, path, old_argv = os.getcwd(), list(sys.path), sys.argv
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    sys.argv = argv
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        sys.argv = old_argv


def _build_model(path: Path) -> object:
    """Run ``path`` in NEURON; return what keeps its sections alive."""
    from .morphology import load_morphology

    if path.suffix.lower() != ".py":
        return load_morphology(path, name=path.stem)
    try:
        with _running_from(path.parent, [str(path)]):
            return runpy.run_path(str(path), run_name="__main__")
    except SystemExit as error:
        if error.code not in (None, 0):
            raise ValueError(f"{path} exited with status {error.code}") from error
        return None
    except Exception as error:
        raise ValueError(f"running {path} failed: {type(error).__name__}: {error}") from error


def read_model_tree(
    path: str | os.PathLike, *, d_lambda: float | None = None, dx: float | None = None
) -> dhs.Tree:
    """NEURON's compartment tree of the model a file builds.

    Parameters
    ----------
    path : str or PathLike
        ``.swc`` or ``.asc`` (loaded by :func:`neuron_bridge.load_morphology`), ``.hoc``
        or ``.nrn`` (run by NEURON), or ``.py`` (run as ``python path`` would, from its
        folder, with ``__name__ == "__main__"``).
    d_lambda : float, optional
        Set every section's ``nseg`` by NEURON's d_lambda rule at 100 Hz first.
    dx : float, optional
        Set every section's ``nseg`` for segments of at most ``dx`` µm first.

    Returns
    -------
    dhs.Tree
        One node per row of NEURON's matrix (every section in NEURON, also sections that
        existed before), in NEURON's node order (:func:`neuron_bridge.node_map`).

    Raises
    ------
    ValueError
        For an unknown suffix, a bad morphology, a script that fails, a model without
        sections, both ``d_lambda`` and ``dx``, or a bad value of either.
    """
    from neuron import h

    from .extract import node_map
    from .morphology import discretize

    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"{path}: expected one of {', '.join(MODEL_SUFFIXES)}")
    if d_lambda is not None and dx is not None:
        raise ValueError("give at most one of d_lambda and dx")
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    model = _build_model(path.resolve())
    sections = list(h.allsec())
    if not sections:
        raise ValueError(f"{path} created no NEURON sections")
    if d_lambda is not None:
        discretize(sections, d_lambda=d_lambda, frequency=100.0)
    elif dx is not None:
        discretize(sections, segment_length=dx)
    tree = dhs.Tree(node_map().parent)
    del model  # the sections a script made stay alive until the tree is read
    return tree


def _schedule_command(arguments) -> int:
    options = {"d_lambda": arguments.d_lambda, "dx": arguments.dx}
    tree = read_model_tree(arguments.file, **options)
    source = describe_tree_source(".hoc", **options)  # always NEURON's compartments
    print_schedule(arguments.file, tree, arguments.threads, source)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dhs-neuron",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    schedule_parser = commands.add_parser(
        "schedule", help="the DHS schedule of NEURON's compartment tree of a model"
    )
    add_schedule_arguments(
        schedule_parser, ".swc, .asc, .hoc, .nrn, or a .py file that builds a NEURON model"
    )
    schedule_parser.set_defaults(run=_schedule_command)
    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"dhs-neuron {arguments.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The project's one SWC reader and validator.

Every SWC file is read here, by :meth:`dhs.Tree.from_swc` and by
``neuron_bridge.load_morphology`` before NEURON's Import3d sees it. A fault is a
``ValueError`` whose message starts ``<file>:<line>:`` and names the sample: a line with
fewer than 7 fields, a field that is not a number (or not an integer where SWC needs
one), a coordinate that is not finite, a radius that is not a positive number of µm, a
duplicate sample id, a parent id that names no sample, a sample that is its own parent,
a cycle of parent links, and a file without a root.

Sample ids may be any distinct non-negative integers in any line order; any negative
parent id marks a root. :meth:`SwcMorphology.parent_first_order` and
:meth:`SwcMorphology.write_parent_first` renumber a file parent-before-child (the order
NEURON's Import3d needs).
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SwcMorphology", "SwcSamples", "read_swc"]

FIELD_NAMES = ("sample id", "type", "x", "y", "z", "radius", "parent id")


@dataclass(frozen=True)
class SwcSamples:
    """Per-sample data read from an SWC file, in file order (one tree node each).

    Attributes
    ----------
    sample_id : ndarray of int64
        The SWC sample identifiers.
    kind : ndarray of int64
        SWC structure type (1 soma, 2 axon, 3 basal, 4 apical dendrite, ...).
    xyz : ndarray of float64, shape (n, 3)
        Coordinates in µm.
    radius : ndarray of float64
        Radius in µm.
    parent_id : ndarray of int64
        The parent's sample id as written (negative for a root).
    line : ndarray of int64
        Line number (from 1) of each sample in the file.
    """

    sample_id: np.ndarray
    kind: np.ndarray
    xyz: np.ndarray
    radius: np.ndarray
    parent_id: np.ndarray
    line: np.ndarray


@dataclass(frozen=True)
class SwcMorphology:
    """A validated SWC file.

    Attributes
    ----------
    path : Path
        The file read.
    samples : SwcSamples
        The samples in file order.
    parent : ndarray of int64
        ``parent[i]`` is the index (file order) of sample i's parent, -1 for a root.
    """

    path: Path
    samples: SwcSamples
    parent: np.ndarray

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.parent.size)

    @property
    def parent_before_child(self) -> bool:
        """True when every parent's sample id is smaller than its child's (Import3d's rule)."""
        is_child = self.parent >= 0
        return bool(np.all(self.samples.parent_id[is_child] < self.samples.sample_id[is_child]))

    def parent_first_order(self) -> np.ndarray:
        """Sample indices with every parent before its children.

        Among the samples whose parents are already placed, the one with the smallest
        sample id comes next, so a file whose ids already run parent-before-child keeps
        its id order.
        """
        return _parent_first(self.parent, self.samples.sample_id)[0]

    def write_parent_first(self, destination: str | os.PathLike) -> Path:
        """Write the file renumbered ``1..n`` parent-before-child; return ``destination``.

        Types, coordinates and radii are written unchanged (``repr`` of each float, so
        nothing is rounded).
        """
        order = self.parent_first_order()
        new_id = np.empty(self.n, np.int64)
        new_id[order] = np.arange(1, self.n + 1)
        samples = self.samples
        lines = [f"# {self.path.name} renumbered parent-before-child by dhs.swc\n"]
        for index in order.tolist():
            parent = int(self.parent[index])
            x, y, z = samples.xyz[index].tolist()
            lines.append(
                f"{new_id[index]} {samples.kind[index]} {x!r} {y!r} {z!r} "
                f"{float(samples.radius[index])!r} {new_id[parent] if parent >= 0 else -1}\n"
            )
        destination = Path(destination)
        destination.write_text("".join(lines))
        return destination


def read_swc(path: str | os.PathLike) -> SwcMorphology:
    """Read and validate an SWC file.

    Parameters
    ----------
    path : str or PathLike
        The SWC file: lines ``id type x y z radius parent`` (µm), ``#`` comments, blank
        lines; fields after the seventh are ignored.

    Returns
    -------
    SwcMorphology

    Raises
    ------
    ValueError
        On any fault listed in the module docstring; the message names the file, the
        line and the sample.
    """
    path = Path(path)
    rows: list[tuple] = []
    # undecodable bytes become U+FFFD, so a bad line is named as a bad field
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split("#", 1)[0].split()
            if fields:
                rows.append(_parse_sample(path, line_number, fields))
    if not rows:
        raise ValueError(f"{path}: no SWC samples found")
    sample_id = np.array([row[0] for row in rows], np.int64)
    kind = np.array([row[1] for row in rows], np.int64)
    xyz = np.array([row[2:5] for row in rows], np.float64)
    radius = np.array([row[5] for row in rows], np.float64)
    parent_id = np.array([row[6] for row in rows], np.int64)
    line = np.array([row[7] for row in rows], np.int64)

    index_of: dict[int, int] = {}
    for index, identifier in enumerate(sample_id.tolist()):
        first = index_of.setdefault(identifier, index)
        if first != index:
            raise ValueError(
                f"{path}:{line[index]}: sample id {identifier} appears more than once "
                f"(first at line {line[first]})"
            )
    parent = np.full(sample_id.size, -1, np.int64)
    for index, identifier in enumerate(parent_id.tolist()):
        if identifier < 0:
            continue
        if identifier == sample_id[index]:
            raise ValueError(
                f"{path}:{line[index]}: sample {identifier} is its own parent (a cycle)"
            )
        found = index_of.get(identifier)
        if found is None:
            raise ValueError(
                f"{path}:{line[index]}: sample {sample_id[index]} names parent {identifier}, "
                "which is not a sample in the file"
            )
        parent[index] = found

    samples = SwcSamples(sample_id, kind, xyz, radius, parent_id, line)
    for array in (*(getattr(samples, name) for name in samples.__dataclass_fields__), parent):
        array.setflags(write=False)
    order, reached = _parent_first(parent, sample_id)
    if order.size < sample_id.size:
        raise ValueError(_describe_unreached(path, samples, parent, reached))
    return SwcMorphology(path=path, samples=samples, parent=parent)


def _parse_sample(path: Path, line_number: int, fields: list[str]) -> tuple:
    """``(id, type, x, y, z, radius, parent id, line)`` of one sample line."""
    where = f"{path}:{line_number}"
    if len(fields) < 7:
        raise ValueError(
            f"{where}: an SWC sample needs 7 fields (id type x y z radius parent), "
            f"got {len(fields)}: {' '.join(fields)!r}"
        )
    numbers = []
    for name, text in zip(FIELD_NAMES, fields[:7], strict=True):
        try:
            numbers.append(float(text))
        except ValueError:
            sample = f"sample {fields[0]}: " if name != "sample id" else ""
            raise ValueError(
                f"{where}: {sample}the {name} field {text!r} is not a number"
            ) from None
    sample = f"{where}: sample {fields[0]}"
    identifier, kind, x, y, z, radius, parent = numbers
    for name, value in (("sample id", identifier), ("type", kind), ("parent id", parent)):
        if not (math.isfinite(value) and value == int(value)):
            raise ValueError(f"{sample}: the {name} {value!r} is not an integer")
    if identifier < 0:
        raise ValueError(f"{sample}: sample ids must be non-negative integers")
    if kind < 0:
        raise ValueError(f"{sample}: the type {int(kind)} is negative (SWC types are 0, 1, 2, ...)")
    for name, value in (("x", x), ("y", y), ("z", z)):
        if not math.isfinite(value):
            raise ValueError(f"{sample}: the {name} coordinate {value!r} is not finite")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"{sample}: the radius {radius!r} must be a positive number of µm")
    return int(identifier), int(kind), x, y, z, radius, int(parent), line_number


def _parent_first(parent: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kahn's topological order (parents first, smallest ``key`` next) and a reached mask.

    Samples on a cycle, or below one, are never reached.
    """
    n = parent.size
    children: list[list[int]] = [[] for _ in range(n)]
    for child, up in enumerate(parent.tolist()):
        if up >= 0:
            children[up].append(child)
    keys = key.tolist()
    ready = [(keys[i], i) for i in np.flatnonzero(parent < 0).tolist()]
    heapq.heapify(ready)
    order = []
    while ready:
        _, index = heapq.heappop(ready)
        order.append(index)
        for child in children[index]:
            heapq.heappush(ready, (keys[child], child))
    reached = np.zeros(n, bool)
    reached[order] = True
    return np.array(order, np.int64), reached


def _describe_unreached(
    path: Path, samples: SwcSamples, parent: np.ndarray, reached: np.ndarray
) -> str:
    """Name one cycle among the samples that no root reaches."""
    start = int(np.flatnonzero(~reached)[0])
    seen: dict[int, int] = {}
    index = start
    while index not in seen:
        seen[index] = len(seen)
        index = int(parent[index])
    cycle = list(seen)[seen[index] :]
    first = min(cycle, key=lambda i: samples.line[i])
    at = cycle.index(first)
    cycle = cycle[at:] + cycle[:at]
    ids = " -> ".join(str(samples.sample_id[i]) for i in [*cycle, cycle[0]])
    lines = ", ".join(str(samples.line[i]) for i in cycle)
    unreached = int(np.count_nonzero(~reached))
    problem = (
        f"{path}: no root (no sample has parent -1); "
        if np.all(parent >= 0)
        else f"{path}:{samples.line[first]}: "
    )
    return (
        f"{problem}sample {samples.sample_id[first]} is on a cycle of parent links: {ids} "
        f"(lines {lines}); {unreached} sample(s) cannot reach a root"
    )

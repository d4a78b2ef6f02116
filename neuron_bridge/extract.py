"""Read NEURON's Hines matrix for the current model.

Node order is NEURON's own: node i is row i of NEURON's matrix (``seg.node_index()``).
The arrays follow the matrix convention of :mod:`dhs.matrix`, which is NEURON's.

When the values are valid
-------------------------
``a`` and ``b`` depend only on geometry and axial resistance; they are valid whenever
the topology is set up. ``d`` and ``rhs`` are the system NEURON solves in a fixed step
only right after it assembled them: :func:`extract` calls ``h.fcurrent()`` for that
(``assemble=True``), which evaluates currents and conductances at the present state and
time. After an ``h.fadvance()``, NEURON's own storage holds the triangularised ``d``
and the solution in ``rhs``, so reading them then gives no system at all. Before the
first ``h.finitialize``, or after sections, ``nseg`` or mechanisms changed since the
last one, the mechanisms' states are not initialized and :func:`extract` warns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from neuron import h

import dhs
from dhs import checks

from . import _nrn

__all__ = ["HinesSystem", "NodeMap", "extract", "node_map"]


class _InitializeWatch:
    """Remembers NEURON's structure counter at every ``finitialize`` of this process.

    Registered once, when this module is imported; ``finitialize`` calls made before that
    are known only through NEURON's own count of them (``_ninits``).
    """

    def __init__(self):
        self.structure_at_initialize: int | None = None
        self._handler = h.FInitializeHandler(1, self._record)

    def _record(self) -> None:
        self.structure_at_initialize = _nrn.structure_version()

    def problem(self) -> str | None:
        """Why d and rhs are not valid now, or None (call after the nodes are set up)."""
        if _nrn.initialize_count() == 0:
            return "h.finitialize() has not been called yet"
        seen = self.structure_at_initialize
        if seen is not None and seen != _nrn.structure_version():
            return "sections, nseg or inserted mechanisms changed since the last h.finitialize()"
        return None


_WATCH = _InitializeWatch()


@dataclass(frozen=True)
class NodeMap:
    """Where each matrix row lives in the model.

    Attributes
    ----------
    parent : ndarray of int64
        Parent of every node in NEURON's order (-1 for the root node of each cell).
    section : list of nrn.Section
        The section that owns each node. A section owns its segment centres and its
        free end (a zero-area node); its attached end is its parent's node. A cell's
        root node belongs to the root section.
    x : ndarray of float64
        Position of each node along its section, in [0, 1].
    """

    parent: np.ndarray
    section: list
    x: np.ndarray

    @property
    def n(self) -> int:
        return int(self.parent.size)

    def segments(self) -> list:
        """``section(x)`` for every node (``h.fmatrix`` addresses a row this way)."""
        return [section(x) for section, x in zip(self.section, self.x, strict=True)]


@dataclass(frozen=True)
class HinesSystem:
    """NEURON's matrix at one moment, in NEURON's node order.

    Attributes
    ----------
    tree : dhs.Tree
    a, b, d, rhs : ndarray of float64
        NEURON's convention (:mod:`dhs.matrix`); segment rows in mS/cm² and mA/cm²,
        zero-area rows in µS and nA; the solution is Δv in mV.
    nodes : NodeMap
    """

    tree: dhs.Tree
    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    rhs: np.ndarray
    nodes: NodeMap

    def location(self, node: int) -> tuple:
        """``(section, x)`` of a node."""
        return self.nodes.section[node], float(self.nodes.x[node])

    def solve(self, **options) -> np.ndarray:
        """Δv in mV, with ``dhs.solve`` (options such as ``backend`` and ``threads``)."""
        return dhs.solve(self.tree, self.a, self.b, self.d, self.rhs, **options)


def node_map() -> NodeMap:
    """NEURON's node order for every section of the current model.

    A section's nodes run from its attached end: the parent's node, then its segment
    centres, then its free end. A reversed section (``orientation() == 1``) is attached
    at x = 1, so its centres are walked in descending x and its free end is x = 0.
    """
    _nrn.set_up_nodes()
    parent: dict[int, int] = {}
    owner: dict[int, tuple] = {}
    for section in h.allsec():
        reversed_section = section.orientation() == 1
        attached, free = (1.0, 0.0) if reversed_section else (0.0, 1.0)
        centres = [segment.x for segment in section]
        if reversed_section:
            centres.reverse()
        chain = [(attached, section(attached).node_index())]
        chain += [(x, section(x).node_index()) for x in centres]
        chain.append((free, section(free).node_index()))
        if not h.SectionRef(sec=section).has_parent():
            parent[chain[0][1]] = -1
            owner[chain[0][1]] = (section, attached)
        for (_, up), (x, node) in pairwise(chain):
            parent[node] = up
            owner[node] = (section, x)
    n = len(parent)
    missing = sorted(set(range(n)) - set(parent))
    if missing:
        raise RuntimeError(f"NEURON node indices are not 0..{n - 1}: {missing[:5]} missing")
    order = range(n)
    return NodeMap(
        parent=np.array([parent[i] for i in order], np.int64),
        section=[owner[i][0] for i in order],
        x=np.array([owner[i][1] for i in order], np.float64),
    )


def read_coupling(nodes: NodeMap) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` of every node, read with ``h.fmatrix`` (about 1 µs per entry)."""
    segments = nodes.segments()
    a = np.array([h.fmatrix(segment, 1) for segment in segments])
    b = np.array([h.fmatrix(segment, 3) for segment in segments])
    return a, b


def extract(assemble: bool = True) -> HinesSystem:
    """The Hines system of the current NEURON model, in NEURON's node order.

    Parameters
    ----------
    assemble : bool, default True
        Call ``h.fcurrent()`` first, so that ``d`` and ``rhs`` hold the system NEURON
        would solve at the present state (see the module docstring). With False, they
        are read as they are, which is only meaningful right after an ``fcurrent``.

    Returns
    -------
    HinesSystem

    Warns
    -----
    RuntimeWarning
        When ``h.finitialize()`` has not run since the model was built or its structure
        last changed: the mechanisms' states are not initialized, so ``d`` and ``rhs``
        are not the system NEURON will solve (``a`` and ``b`` are valid).
    """
    assemble = checks.boolean("assemble", assemble)
    if not any(True for _ in h.allsec()):
        raise ValueError("the NEURON model has no sections")
    if assemble:
        h.fcurrent()
    nodes = node_map()
    problem = _WATCH.problem()
    if problem is not None:
        warnings.warn(
            f"extract(): {problem}, so the mechanisms' states are not initialized and d "
            "and rhs are not yet valid (a and b are); call h.finitialize(v_init) first",
            RuntimeWarning,
            stacklevel=2,
        )
    a, b = read_coupling(nodes)
    segments = nodes.segments()
    d = np.array([h.fmatrix(segment, 2) for segment in segments])
    rhs = np.array([h.fmatrix(segment, 4) for segment in segments])
    return HinesSystem(tree=dhs.Tree(nodes.parent), a=a, b=b, d=d, rhs=rhs, nodes=nodes)

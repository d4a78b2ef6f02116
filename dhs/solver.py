"""``Solver``: checks the inputs, runs the chosen backend and reports failures clearly.

Matrix convention and shapes: :mod:`dhs.matrix`.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from . import checks
from .backends import resolve_backend
from .layout import Layout, dhs_layout
from .matrix import System, check_system, diagnose_failure
from .schedule import Schedule, schedule
from .solvers import cpu as cpu_solver
from .solvers import serial as serial_solver
from .tree import Tree

__all__ = ["Solver", "solve"]

_NO_ROWS = np.empty(0, np.int64)


class Solver:
    """An exact tree (Hines) solver with a DHS schedule, for one topology.

    Build it once per topology; call :meth:`solve` every time step.

    Parameters
    ----------
    tree : Tree
        The topology (a forest is several cells solved together).
    threads : int, default 32
        k: nodes eliminated in parallel per step, the GPU lanes per cell (the CPU
        backends solve each system in order and ignore it).
    backend : {"auto", "serial", "cpu", "cuda"}
        See :mod:`dhs.backends`. ``"auto"`` takes a real GPU when present, else the CPU.
    dtype : {numpy.float64, numpy.float32}
        Precision of the solve. Inputs of another floating dtype are converted.
    workers : int, optional
        CPU threads for the ``"cpu"`` backend. Default: Numba's thread count for calls of
        at least :data:`dhs.solvers.cpu.PARALLEL_MIN_NODES` node-solves, one below.
    tile : int, optional
        Systems per CPU work item (default :data:`dhs.solvers.cpu.DEFAULT_TILE`).

    Attributes
    ----------
    backend : str
        The backend that runs (never ``"auto"``).
    """

    def __init__(
        self,
        tree: Tree,
        threads: int = 32,
        backend: str = "auto",
        dtype=np.float64,
        *,
        workers: int | None = None,
        tile: int | None = None,
    ):
        self.tree = checks.instance_of("tree", tree, Tree, "a dhs.Tree")
        self.dtype = checks.float_dtype("dtype", dtype)
        self.threads = checks.thread_count("threads", threads)
        workers = checks.optional_positive_int("workers", workers)
        tile = checks.optional_positive_int("tile", tile)
        self.backend = resolve_backend(backend)
        if self.backend == "serial":
            self._engine = _SerialEngine(tree)
        elif self.backend == "cpu":
            self._engine = _CpuEngine(tree, self.dtype, workers, tile)
        else:
            from .solvers.cuda_engine import CudaEngine

            self._engine = CudaEngine(self.layout, self.dtype)

    @cached_property
    def layout(self) -> Layout:
        """The DHS numbering and per-cell step tables (what the cuda backend runs)."""
        return dhs_layout(self.tree, self.threads)

    @cached_property
    def schedule(self) -> Schedule:
        """Hu's schedule of the whole tree (all cells together) with ``threads``."""
        return schedule(self.tree, self.threads)

    @property
    def n_steps(self) -> int:
        """Parallel steps of one elimination pass: the slowest cell's, as run on a GPU."""
        return int(self.layout.component_steps.max())

    def solve(self, a, b, d, rhs, *, out=None, inplace: bool = False):
        """Solve the tree system(s) in NEURON's convention (:mod:`dhs.matrix`).

        Parameters
        ----------
        a, b : array_like, shape (n,) or (batch, n)
            Coupling coefficients; one row is shared by the whole batch.
        d, rhs : array_like, shape (n,) or (batch, n)
            Diagonal and right-hand side.
        out : ndarray, optional
            C-contiguous array of rhs's shape and the solver's dtype to receive x.
        inplace : bool, default False
            Write x into ``rhs`` (which must then be a C-contiguous array of the
            solver's dtype). ``d`` is never modified.

        Returns
        -------
        x : ndarray, shape like ``rhs``
            A numpy array, or a CUDA device array when the inputs are device arrays.

        Raises
        ------
        ValueError
            On a wrong shape or dtype, a non-finite input value or a zero pivot; the
            message names the array, the node and the system.
        """
        if self.backend == "cuda" and self._engine.is_device_call(a, b, d, rhs, out):
            return self._engine.solve_device(self.tree, a, b, d, rhs, out=out, inplace=inplace)
        system = check_system(self.tree, a, b, d, rhs, self.dtype)
        x = self._output(system, rhs, out, inplace)
        roots = self.tree.roots  # a and b of roots are never read by a solve: check here
        if not (np.isfinite(system.a[:, roots]).all() and np.isfinite(system.b[:, roots]).all()):
            raise diagnose_failure(self.tree, system)
        failed_rows = self._engine.run(system, x)
        if len(failed_rows):
            raise diagnose_failure(self.tree, system, rows=failed_rows)
        given = rhs if inplace else out
        if given is not None:
            return given  # NumPy's out= convention: the very array that was passed
        return x if system.batched else x[0]

    def _output(self, system: System, rhs, out, inplace: bool) -> np.ndarray:
        """The (batch, n) array that receives x, as a view of ``out`` or ``rhs`` if asked."""
        expected = system.rhs.shape if system.batched else (self.tree.n,)
        if checks.boolean("inplace", inplace):
            if out is not None:
                raise ValueError("give either out= or inplace=True, not both")
            out = rhs
            name = "rhs (inplace=True)"
        else:
            name = "out"
        if out is None:
            return np.empty_like(system.rhs)
        if not isinstance(out, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(out).__name__}")
        if out.shape != expected or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(
                f"{name} must be a C-contiguous {self.dtype.name} array of shape {expected}, "
                f"got {out.dtype.name} {out.shape}"
                + ("" if out.flags.c_contiguous else " (not C-contiguous)")
            )
        if not out.flags.writeable:
            raise ValueError(f"{name} is read-only")
        return out.reshape(system.rhs.shape)


def solve(tree: Tree, a, b, d, rhs, **options):
    """Solve once: ``Solver(tree, ...).solve(a, b, d, rhs, ...)``.

    Keyword arguments ``threads``, ``backend``, ``dtype``, ``workers`` and ``tile`` go
    to :class:`Solver`; ``out`` and ``inplace`` go to :meth:`Solver.solve`.
    """
    solve_options = {key: options.pop(key) for key in ("out", "inplace") if key in options}
    return Solver(tree, **options).solve(a, b, d, rhs, **solve_options)


class _SerialEngine:
    """The reference serial Hines solve in the tree's own numbering."""

    def __init__(self, tree: Tree):
        self.parent = tree.parent
        # In a parent-before-child numbering the identity order avoids an indirection.
        self.order = np.arange(tree.n) if tree.parent_before_child else tree.order

    def run(self, system: System, x: np.ndarray) -> np.ndarray:
        failed = np.zeros(system.batch, np.bool_)
        serial_solver.hines_solve(
            self.parent, self.order, system.a, system.b, system.d, system.rhs, x, failed
        )
        return np.flatnonzero(failed)


class _CpuEngine:
    """The two CPU kernels of :mod:`dhs.solvers.cpu`, picked by batch size."""

    def __init__(self, tree: Tree, dtype: np.dtype, workers: int | None, tile: int | None):
        import numba

        self.tree = tree
        self.dtype = dtype
        self.max_workers = int(workers) if workers is not None else numba.get_num_threads()
        self.workers_given = workers is not None
        self.tile = int(tile) if tile is not None else cpu_solver.DEFAULT_TILE
        # The whole tree in memory order (the tree's own when parents come first).
        self.memory_order = np.arange(tree.n) if tree.parent_before_child else tree.order
        position = np.empty(tree.n, np.int64)
        position[self.memory_order] = np.arange(tree.n)
        parent = tree.parent[self.memory_order]
        self.parent_position = np.where(parent >= 0, position[np.maximum(parent, 0)], -1)
        # Each cell on its own, for spreading a forest over the cores.
        cells = tree.component_nodes()
        if tree.parent_before_child:
            cells = [np.sort(nodes) for nodes in cells]
        self.cell_order = np.concatenate(cells)
        self.cell_ptr = np.concatenate([[0], np.cumsum([nodes.size for nodes in cells])])
        self._scratch: dict[tuple, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Scratch kept between calls (a fresh large allocation costs page faults)."""
        if name not in self._scratch or self._scratch[name].shape != shape:
            self._scratch[name] = np.empty(shape, self.dtype)
        return self._scratch[name]

    def run(self, system: System, x: np.ndarray) -> np.ndarray:
        # Threads pay only for large calls, unless the caller asked for them.
        large = system.batch * self.tree.n >= cpu_solver.PARALLEL_MIN_NODES
        max_workers = self.max_workers if large or self.workers_given else 1
        if system.batch >= cpu_solver.WIDTH:
            tiles = math.ceil(system.batch / cpu_solver.WIDTH)
            workers = min(max_workers, tiles)
            shape = (workers, self.tree.n, cpu_solver.WIDTH)
            failed = np.zeros(tiles, np.bool_)
            kernel = cpu_solver.tiled_solve if workers > 1 else cpu_solver.tiled_solve_one_thread
            kernel(
                self.memory_order, self.parent_position, system.a, system.b, system.d,
                system.rhs, x, self._buffer("pivot", shape), self._buffer("value", shape),
                failed,
            )  # fmt: skip
            tile = cpu_solver.WIDTH
        else:
            tile = min(self.tile, system.batch)
            # Cells as work items only when there are several to spread over the cores.
            if self.cell_ptr.size > 2 and max_workers > 1:
                order, group_ptr = self.cell_order, self.cell_ptr
            else:
                order, group_ptr = self.memory_order, np.array([0, self.tree.n])
            groups = group_ptr.size - 1
            failed = np.zeros(groups * math.ceil(system.batch / tile), np.bool_)
            workers = min(max_workers, failed.size)
            kernel = (
                cpu_solver.interleaved_solve
                if workers > 1
                else cpu_solver.interleaved_solve_one_thread
            )
            kernel(
                order, self.tree.parent, group_ptr, system.a, system.b, system.d, system.rhs,
                x, self._buffer("pivot_rows", (workers, tile, self.tree.n)),
                self._buffer("check", (workers, tile)), failed,
            )  # fmt: skip
        if not failed.any():
            return _NO_ROWS
        first_rows = (np.flatnonzero(failed) % math.ceil(system.batch / tile)) * tile
        rows = first_rows[:, None] + np.arange(tile)
        return np.unique(rows[rows < system.batch])

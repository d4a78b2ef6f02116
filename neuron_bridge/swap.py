"""Swap NEURON's fixed-step tree solve for ``dhs.Solver``.

NEURON's ``nrn_solve`` calls the global hook ``nrn_multisplit_solve_`` instead of its
own triangularisation and back-substitution when the hook is set. :class:`DhsSolve` sets
it, for the solve of each fixed step only, to a callback that solves NEURON's live ``d``
and ``rhs`` in place; NEURON does everything else with its own code. How and why:
``neuron_bridge/DESIGN.md``.

Preconditions (else NEURON would call the hook for something else, or not at all): the
fixed-step method, one thread, no extracellular mechanism or LinearMechanism (they switch
NEURON to sparse13), and ``ParallelContext().optimize_node_order()`` equal to 0.
:meth:`DhsSolve.install` raises ``ValueError`` when one fails; if one stops holding later,
NEURON solves by itself, with a warning, so results are never wrong.
"""

from __future__ import annotations

import sys
import traceback
import warnings
import weakref
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from neuron import h
from neuron import nonvint_block_supervisor as supervisor

import dhs
from dhs import checks

from . import _nrn
from .extract import node_map, read_coupling

__all__ = ["DhsSolve", "SolveStats", "check_preconditions", "installed", "use_dhs"]

_INSTALLED: DhsSolve | None = None

# Options of dhs.Solver that a swap passes on (the others are use_dhs's own).
SOLVER_OPTIONS = ("workers", "tile")


@dataclass
class SolveStats:
    """What happened while the swap was installed.

    Attributes
    ----------
    solves : int
        Solves done by ``dhs``.
    native_solves : int
        Fixed steps NEURON solved by itself (a precondition failed, or a dhs solve
        raised and NEURON's own solve was used for that step). Steps run while several
        threads are active are not counted: the block is unregistered then.
    rebuilds : int
        Times the topology or a, b were re-read (topology or geometry changed).
    shadow_max_difference_mV : float
        With ``shadow=True``: the largest |Δv(dhs) - Δv(NEURON)| over all solves.
    shadow_solves : int
    """

    solves: int = 0
    native_solves: int = 0
    rebuilds: int = 0
    shadow_max_difference_mV: float = 0.0
    shadow_solves: int = 0
    warnings: list[str] = field(default_factory=list)


def check_preconditions() -> list[str]:
    """Every reason why the hook cannot be used now; empty when it can."""
    problems = []
    if _nrn.cvode_active():
        problems.append(
            "CVode is active (h.cvode_active(1)); only the fixed-step method is supported"
        )
    if _nrn.thread_count() != 1:
        problems.append(
            f"NEURON runs {_nrn.thread_count()} threads; use h.ParallelContext().nthread(1)"
        )
    sparse = [sec.name() for sec in h.allsec() if sec.has_membrane("extracellular")]
    if sparse:
        problems.append(
            f"the extracellular mechanism is inserted in {', '.join(sparse[:5])}"
            + (" ..." if len(sparse) > 5 else "")
            + " (NEURON then uses sparse13)"
        )
    linear = int(h.List("LinearMechanism").count())
    if linear:
        problems.append(f"{linear} LinearMechanism object(s) exist (NEURON then uses sparse13)")
    if _nrn.uses_sparse13() and not sparse and not linear:
        problems.append("NEURON is using its sparse13 solver")
    if h.ParallelContext().optimize_node_order() != 0:
        problems.append("ParallelContext().optimize_node_order() is not 0")
    return problems


class DhsSolve:
    """Route every fixed-step NEURON solve through :class:`dhs.Solver`.

    Use as a context manager (``with use_dhs(): h.run()``) or with
    :meth:`install` / :meth:`uninstall`. Arguments are checked when it is created. One
    that is never installed warns once (``RuntimeWarning``, pointing at the line that
    created it): at the next ``h.finitialize()``, or when it is garbage-collected.

    Parameters
    ----------
    backend : str
        ``dhs`` backend: "auto", "serial", "cpu" or "cuda".
    threads : int
        k for the DHS schedule.
    dtype : numpy.float64 or numpy.float32
        Precision of the solve; NEURON's arrays stay float64.
    shadow : bool
        Also run NEURON's own solve on a copy each step and record the largest
        difference in :attr:`stats` (``shadow_max_difference_mV``). Slower; for checks.
    **solver_options
        Passed to :class:`dhs.Solver` (``workers``, ``tile``).
    """

    def __init__(
        self,
        backend: str = "auto",
        threads: int = 32,
        dtype=np.float64,
        shadow: bool = False,
        **solver_options,
    ):
        # Every argument is checked here, at the call: never in a step's callback.
        self.threads = checks.thread_count("threads", threads)
        self.dtype = checks.float_dtype("dtype", dtype)
        self.shadow = checks.boolean("shadow", shadow)
        unknown = sorted(set(solver_options) - set(SOLVER_OPTIONS))
        if unknown:
            raise TypeError(
                f"use_dhs() got unknown option(s) {unknown}; it takes backend, threads, "
                f"dtype, shadow and the dhs.Solver options {list(SOLVER_OPTIONS)}"
            )
        for name, value in solver_options.items():
            checks.optional_positive_int(name, value)
        self.backend = dhs.resolve_backend(backend)
        self.solver_options = solver_options
        self.stats = SolveStats()
        self._solver: dhs.Solver | None = None
        self._a = self._b = None
        self._version: tuple | None = None
        self._live: dict[str, np.ndarray] = {}
        # The supervisor's callback slots: setup, initialize, current, conductance,
        # fixed_step_solve (end of a step), then six for CVode that stay empty.
        # The callbacks hold the swap weakly: a swap nobody keeps is collected at once,
        # which is what lets an unused use_dhs() warn right where it was called.
        self._block = [None, None, _weakly(self._on_current), _weakly(self._on_conductance)]
        self._block += [_weakly(self._on_step_end)] + [None] * 6
        self._registered = False
        self._solved_this_step = False
        self._saved_rhs = np.empty(0)
        self._hook = _nrn.HookFunction(_weakly(self._on_solve, otherwise=_nrn.native_solve))
        self._initialize_handler = None
        self._error: BaseException | None = None
        self._failed_solves = 0
        self._warned: set[str] = set()
        self._use = _Use.record(self)

    # ------------------------------------------------------------------ install
    def install(self) -> DhsSolve:
        """Start routing fixed-step solves through dhs. Raises ValueError if a
        precondition fails now."""
        global _INSTALLED
        self._use.mark_installed()  # tried: a failure below raises, which says enough
        if _INSTALLED is not None:
            raise ValueError("a DHS solve is already installed; uninstall it first")
        problems = check_preconditions()
        if problems:
            raise ValueError("cannot swap in the DHS solve: " + "; ".join(problems))
        if _nrn.hook_pointer().value:
            raise ValueError(
                "NEURON's nrn_multisplit_solve_ hook is already in use "
                "(multisplit?); the DHS solve cannot share it"
            )
        self._register(True)
        self._initialize_handler = h.FInitializeHandler(0, _weakly(self._on_initialize))
        self._version = None
        _INSTALLED = self
        return self

    def uninstall(self) -> None:
        """Restore NEURON's own solve exactly as it was."""
        global _INSTALLED
        if _INSTALLED is not self:
            return
        self._set_hook(False)
        self._register(False)
        self._registered = False
        self._initialize_handler = None
        self._live.clear()
        _INSTALLED = None

    def _register(self, on: bool, *, quiet: bool = False) -> None:
        """Add or remove the block. ``quiet`` skips the supervisor's structure-change
        flag, which NEURON rejects while finitialize runs (its data are frozen)."""
        if on == self._registered:
            return
        if not quiet:
            (supervisor.register if on else supervisor.unregister)(self._block)
        elif on:
            supervisor.call.append(self._block)
            supervisor.activate_callback(True)
        else:
            supervisor.call.remove(self._block)
            if not supervisor.call:
                supervisor.activate_callback(False)
        self._registered = on

    def _set_hook(self, on: bool) -> None:
        _nrn.hook_pointer().value = _nrn.cast_hook(self._hook) if on else None

    def __enter__(self) -> DhsSolve:
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.uninstall()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """Re-raise an error met inside a solve (that solve was done by NEURON)."""
        if self._error is not None:
            error, self._error = self._error, None
            failed, self._failed_solves = self._failed_solves, 0
            raise RuntimeError(
                f"{failed} DHS solve(s) failed and NEURON's own solve was used instead; "
                "the first failure is shown above"
            ) from error

    # ------------------------------------------------------------------ callbacks
    def _on_current(self, rhs: np.ndarray) -> None:
        self._set_hook(False)
        self._live["rhs"] = rhs  # NEURON's storage can move: refresh every step

    def _on_conductance(self, d: np.ndarray) -> None:
        self._live["d"] = d
        if _nrn.thread_time() == h.t:
            return  # fcurrent or finitialize: no solve follows, leave the hook clear
        if _nrn.cvode_active() or _nrn.thread_count() != 1 or _nrn.uses_sparse13():
            self._warn(
                "a precondition of the DHS solve failed during the run (CVode, "
                "threads or sparse13); NEURON solves instead"
            )
            return
        self._set_hook(True)

    def _on_step_end(self, dt: float) -> None:
        self._set_hook(False)  # also when NEURON took a path that never called it
        if not self._solved_this_step:
            self.stats.native_solves += 1
        self._solved_this_step = False

    def _on_initialize(self) -> None:
        # The supervisor asserts one thread: step aside while several run.
        self._register(_nrn.thread_count() == 1, quiet=True)
        for problem in check_preconditions():
            self._warn(f"DHS solve not used: {problem}; NEURON solves instead")

    def _on_solve(self) -> None:
        """The hook: solve the live system in place, or let NEURON do it on error."""
        try:
            d, rhs = self._live["d"], self._live["rhs"]
            version = (*_nrn.matrix_version(), rhs.size)
            if version != self._version:
                self._rebuild(rhs.size)
                self._version = version
            np.copyto(self._saved_rhs, rhs)
            if self.shadow:
                self._solve_with_shadow(d, rhs)
            else:
                self._solve(d, rhs)
            self.stats.solves += 1
            self._solved_this_step = True
        except BaseException as error:  # never return with an unsolved system
            self._failed_solves += 1
            if self._error is None:  # the first failure only: a step can repeat it forever
                self._error = error
                traceback.print_exc()
            if self._saved_rhs.shape == self._live["rhs"].shape:
                np.copyto(self._live["rhs"], self._saved_rhs)  # ours may have written
            _nrn.native_solve()
        finally:
            self._set_hook(False)

    # ------------------------------------------------------------------ helpers
    def _rebuild(self, size: int) -> None:
        nodes = node_map()
        if nodes.n != size:
            raise RuntimeError(f"NEURON has {size} matrix rows but {nodes.n} mapped nodes")
        self._a, self._b = read_coupling(nodes)
        self._saved_rhs = np.empty(size)
        tree = dhs.Tree(nodes.parent)
        self._solver = dhs.Solver(
            tree,
            threads=self.threads,
            backend=self.backend,
            dtype=self.dtype,
            **self.solver_options,
        )
        self.stats.rebuilds += 1

    def _solve(self, d: np.ndarray, rhs: np.ndarray) -> None:
        if self.dtype == np.float64:
            self._solver.solve(self._a, self._b, d, rhs, inplace=True)
        else:
            rhs[:] = self._solver.solve(self._a, self._b, d, rhs)

    def _solve_with_shadow(self, d: np.ndarray, rhs: np.ndarray) -> None:
        saved_d, saved_rhs = d.copy(), rhs.copy()
        _nrn.native_solve()  # NEURON's own triang + bksub on the live arrays
        reference = rhs.copy()
        d[:] = saved_d
        rhs[:] = saved_rhs
        self._solve(d, rhs)
        difference = float(np.max(np.abs(rhs - reference))) if rhs.size else 0.0
        self.stats.shadow_max_difference_mV = max(self.stats.shadow_max_difference_mV, difference)
        self.stats.shadow_solves += 1

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.stats.warnings.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)


def _weakly(method, otherwise=None):
    """A function that calls ``method`` without keeping its object alive.

    Once the object is gone it calls ``otherwise`` (if any) instead.
    """
    reference = weakref.WeakMethod(method)

    def call(*args):
        target = reference()
        if target is not None:
            return target(*args)
        if otherwise is not None:
            return otherwise()
        return None

    return call


class _Use:
    """Whether a swap was ever installed, kept apart from the swap so that it outlives it.

    A swap that is never installed warns once: at the first ``finitialize`` after its
    creation (``swap = use_dhs(); h.run()``), or when it is collected (a bare
    ``use_dhs()`` statement), whichever comes first. The warning points at the line that
    created it.
    """

    _pending: ClassVar[dict[int, _Use]] = {}
    _watch: ClassVar[object] = None  # one FInitializeHandler for all swaps

    def __init__(self, filename: str, line: int):
        self.filename = filename
        self.line = line
        self.done = False  # installed, or warned about

    @classmethod
    def record(cls, swap: DhsSolve) -> _Use:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back  # past use_dhs and DhsSolve to the caller's line
        filename, line = (frame.f_code.co_filename, frame.f_lineno) if frame else ("?", 0)
        use = cls(filename, line)
        cls._pending[id(use)] = use
        weakref.finalize(swap, use.warn_if_unused, "was never installed")
        if cls._watch is None:
            cls._watch = h.FInitializeHandler(0, cls._at_initialize)
        return use

    @classmethod
    def _at_initialize(cls) -> None:
        for use in list(cls._pending.values()):
            use.warn_if_unused("is not installed while h.finitialize() runs")

    def mark_installed(self) -> None:
        self.done = True
        self._pending.pop(id(self), None)

    def warn_if_unused(self, what: str) -> None:
        if self.done:
            return
        self.mark_installed()
        warnings.warn_explicit(
            f"the DHS swap created here {what}, so NEURON solves by itself; use it as "
            "`with use_dhs(...): h.run()` or call .install() and .uninstall()",
            RuntimeWarning,
            self.filename,
            self.line,
        )


def use_dhs(
    backend: str = "auto",
    threads: int = 32,
    dtype=np.float64,
    shadow: bool = False,
    **solver_options,
) -> DhsSolve:
    """Context manager: ``with use_dhs(): h.run()`` solves every fixed step with DHS.

    See :class:`DhsSolve` for the parameters and the preconditions. Every argument is
    checked here; a swap that is never installed warns once (see :class:`DhsSolve`).

    Raises
    ------
    ValueError
        For a bad backend, ``threads``, ``dtype``, ``shadow``, ``workers`` or ``tile``
        (a wrong type also is a ``TypeError``), or ``backend="cuda"`` without a GPU.
    TypeError
        For an option that neither use_dhs nor :class:`dhs.Solver` takes.
    """
    return DhsSolve(backend=backend, threads=threads, dtype=dtype, shadow=shadow, **solver_options)


def installed() -> DhsSolve | None:
    """The installed swap, if any."""
    return _INSTALLED

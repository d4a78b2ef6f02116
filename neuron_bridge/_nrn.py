"""NEURON internals reached through ctypes: the solve hook and the flags it depends on.

All of these symbols are exported by the ``neuron`` wheel's ``libnrniv`` (checked with
NEURON 9.0.2: ``nm -D libnrniv.so``). Nothing else in :mod:`neuron_bridge` touches ctypes.
"""

from __future__ import annotations

import ctypes
import functools

import neuron

# nrn_solve(NrnThread*) with C++ (Itanium ABI) linkage.
_NRN_SOLVE_SYMBOL = "_Z9nrn_solveP9NrnThread"

HookFunction = ctypes.CFUNCTYPE(None)


@functools.cache
def _library():
    return neuron.nrn_dll()


@functools.cache
def _int_variable(name: str) -> ctypes.c_int:
    # Bound to the variable's address once: the hook reads these every step.
    return ctypes.c_int.in_dll(_library(), name)


def _int(name: str) -> int:
    return _int_variable(name).value


@functools.cache
def hook_pointer() -> ctypes.c_void_p:
    """``nrn_multisplit_solve_``: when set, ``nrn_solve`` calls it instead of solving."""
    try:
        return ctypes.c_void_p.in_dll(_library(), "nrn_multisplit_solve_")
    except ValueError as error:  # a build without NRNMPI has no hook
        raise RuntimeError(
            "this NEURON build has no nrn_multisplit_solve_ hook (it needs NRNMPI); "
            "the DHS solve cannot be swapped in"
        ) from error


@functools.cache
def _native_solve_function():
    function = _library()[_NRN_SOLVE_SYMBOL]
    function.argtypes = [ctypes.c_void_p]
    function.restype = None
    return function


@functools.cache
def _threads_pointer() -> ctypes.c_void_p:
    return ctypes.c_void_p.in_dll(_library(), "nrn_threads")


def native_solve() -> None:
    """Run NEURON's own ``nrn_solve`` on thread 0, with the hook cleared meanwhile."""
    pointer = hook_pointer()
    saved = pointer.value
    pointer.value = None
    try:
        _native_solve_function()(_threads_pointer().value)
    finally:
        pointer.value = saved


def set_up_nodes() -> None:
    """Let NEURON number its nodes and compute a and b, without evaluating currents.

    Calls ``setup_topology``, ``v_setup_vectors`` and ``recalc_diam`` only when the
    matching flag says they are due, as NEURON's own set-up does.
    """
    library = _library()
    steps = (("tree_changed", "_Z14setup_topologyv"), ("v_structure_change",
             "_Z15v_setup_vectorsv"), ("diam_changed", "_Z11recalc_diamv"))  # fmt: skip
    for flag, symbol in steps:
        if _int(flag):
            function = library[symbol]
            function.argtypes = []
            function.restype = None
            function()


def thread_time() -> float:
    """``nrn_threads[0]._t`` (ms), the first field of ``NrnThread``.

    Inside a fixed step it runs half a step ahead of hoc's ``t`` while the matrix is
    assembled and solved; in ``fcurrent`` and ``finitialize`` the two are equal.
    """
    return ctypes.c_double.from_address(_threads_pointer().value).value


def cvode_active() -> bool:
    return bool(_int("cvode_active_"))


def thread_count() -> int:
    return _int("nrn_nthread")


def uses_sparse13() -> bool:
    """True once NEURON has switched to its general sparse solver (extracellular etc.)."""
    return bool(_int("use_sparse13"))


def initialize_count() -> int:
    """``_ninits``: how many times ``finitialize`` has run in this process."""
    return _int("_ninits")


def structure_version() -> int:
    """``structure_change_cnt``: changes when sections, nseg or mechanisms change."""
    return _int("structure_change_cnt")


def matrix_version() -> tuple[int, ...]:
    """Counters that change whenever NEURON rebuilds the tree or recomputes a and b."""
    return tuple(
        _int(name)
        for name in ("structure_change_cnt", "diam_change_cnt", "recalc_diam_count_",
                     "nrn_matrix_cnt_")
    )  # fmt: skip


def cast_hook(hook) -> int:
    """The address of a ``HookFunction`` (keep a reference to the hook alive)."""
    return ctypes.cast(hook, ctypes.c_void_p).value

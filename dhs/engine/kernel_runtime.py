"""Decorators of the generated kernel modules (:mod:`dhs.engine.kernel`), CPU and CUDA."""

from __future__ import annotations

import contextlib

import llvmlite.binding as llvm_binding
import numba
from numba import types
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic

from .nmodl.build import device_jit

__all__ = [
    "GATHER_FEATURE",
    "INTERLEAVE",
    "compile_driver",
    "device_jit",
    "driver_jit",
    "kernel_jit",
    "vector_gathers",
]

#: The LLVM tuning flag that lets the loop vectoriser use AVX2 gathers.
GATHER_FEATURE = "+fast-gather"
#: Vector iterations the CPU kernels' loops run side by side (LLVM's interleave count).
INTERLEAVE = 2


def kernel_jit(function):
    """A phase of the time loop: cached, no zero-division branches (``error_model``
    changes no operation or its order)."""
    return numba.njit(cache=True, error_model="numpy")(function)


def driver_jit(function):
    """The run of a block of chunks: releases the GIL, so one Python thread per worker
    runs its own block in parallel."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(function)


@intrinsic
def vector_gathers(typingctx):
    """Let LLVM vectorise the calling function's loops with gathers (called first in each
    CPU phase; it emits no code).

    The inlined ``exp`` looks up a table at an index computed from x. Where LLVM
    believes gathers slow (its AMD Zen models), it loads each lane on its own and then
    keeps the whole chain that computes x in scalars, divisions included: measured on the
    L5PC, 62.6 µs per instance-step with the scalar chain, 50.9 with gathers. Only
    loads change, so the results are the same bits. The function gets the target's own
    feature string plus the tuning flag (a function's features replace the target's).
    """

    def codegen(context, builder, signature, arguments):
        features = getattr(context.codegen(), "_tm_features", "")
        if features and GATHER_FEATURE not in features:
            # llvmlite checks attribute names against its list; this one is LLVM's
            # key=value attribute, written into the function's definition as it stands
            set.add(builder.function.attributes, f'"target-features"="{features},{GATHER_FEATURE}"')
        return context.get_dummy_value()

    return types.none(), codegen


@contextlib.contextmanager
def _interleaved(count: int):
    """LLVM's loop vectoriser interleaves ``count`` vector iterations while this holds
    (``-force-vector-interleave``, 0 being LLVM's default: its cost model decides). Held
    with Numba's compiler lock, so no other compilation sees it."""
    with global_compiler_lock:
        llvm_binding.set_option("", f"-force-vector-interleave={count}")
        try:
            yield
        finally:
            llvm_binding.set_option("", "-force-vector-interleave=0")


def compile_driver(module, arguments: tuple) -> None:
    """Compile (or load from the cache) ``module.run_chunks`` for these arguments, with
    :data:`INTERLEAVE` vector iterations side by side in its loops.

    A channel's step is one long chain (rates, exps, divisions, the cnexp update): one
    vector iteration alone leaves the core waiting on latencies, two overlap. Measured on
    the L5PC: 50.7 -> 43.9 µs per instance-step (chunks of 16). The order of operations
    within a lane is unchanged, so are the results.
    """
    driver = module.run_chunks
    signature = tuple(numba.typeof(value) for value in arguments)
    with _interleaved(INTERLEAVE):
        driver.compile(signature)

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


#: LLVM options while a kernel compiles, and LLVM's defaults restored afterwards.
#: ``-force-vector-interleave``: two vector iterations side by side (0: LLVM's cost model
#: decides). ``-hoist-runtime-checks``: LLVM widens a loop's overlap checks to the whole
#: loop nest so it can hoist them; a node's loop over instances reads row p of rhs and
#: writes row i, and widened over all nodes those ranges always overlap, so every node
#: took the scalar loop. Checked per node, they pass.
_KERNEL_OPTIONS = {"force-vector-interleave": (str(INTERLEAVE), "0"),
                   "hoist-runtime-checks": ("false", "true")}  # fmt: skip


@contextlib.contextmanager
def _kernel_options():
    """LLVM's options for the kernels while this holds; held with Numba's compiler lock,
    so no other compilation sees them."""
    with global_compiler_lock:
        for name, (value, _default) in _KERNEL_OPTIONS.items():
            llvm_binding.set_option("", f"-{name}={value}")
        try:
            yield
        finally:
            for name, (_value, default) in _KERNEL_OPTIONS.items():
                llvm_binding.set_option("", f"-{name}={default}")


def compile_driver(module, arguments: tuple) -> None:
    """Compile (or load from the cache) ``module.run_chunks`` for these arguments, under
    :data:`_KERNEL_OPTIONS`.

    Measured: a channel's step is one long chain (rates, exps, divisions, the cnexp
    update); one vector iteration alone leaves the core waiting on latencies, two overlap
    (L5PC: 50.7 -> 43.9 µs per instance-step, chunks of 16). The tree's loops over
    instances vectorise only with per-node overlap checks (the solve's loops: 1.5 -> 0.7 ns
    per node and instance). Neither changes the order of operations within a lane, so the
    results are the same bits.
    """
    driver = module.run_chunks
    signature = tuple(numba.typeof(value) for value in arguments)
    if signature in driver.overloads:  # compiled in this process: no options, no lock
        return
    with _kernel_options():
        driver.compile(signature)

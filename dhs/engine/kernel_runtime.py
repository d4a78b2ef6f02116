"""Decorators of the generated kernel modules (:mod:`dhs.engine.kernel`), CPU and CUDA."""

from __future__ import annotations

import numba

from .nmodl.build import device_jit

__all__ = ["device_jit", "driver_jit", "kernel_jit"]


def kernel_jit(function):
    """A phase of the time loop: cached, no zero-division branches (``error_model``
    changes no operation or its order)."""
    return numba.njit(cache=True, error_model="numpy")(function)


def driver_jit(function):
    """The run of a block of chunks: releases the GIL, so one Python thread per worker
    runs its own block in parallel."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(function)

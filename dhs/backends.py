"""Choosing a backend: the one place that decides where a solve runs.

* ``"serial"``: the reference serial Hines solve (:mod:`dhs.solvers.serial`).
* ``"cpu"``: the fast, parallel CPU solve (:mod:`dhs.solvers.cpu`).
* ``"cuda"``: Numba CUDA kernels (:mod:`dhs.solvers.cuda`) on an NVIDIA GPU.
* ``"auto"``: ``"cuda"`` when a real GPU is present, else ``"cpu"``.

The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) is never taken for a GPU by
``"auto"``; it runs only when ``"cuda"`` is asked for explicitly, for testing.
"""

from __future__ import annotations

import functools

from .checks import one_of

__all__ = ["BACKENDS", "cuda_simulator_enabled", "gpu_available", "resolve_backend"]

BACKENDS = ("auto", "serial", "cpu", "cuda")


def cuda_simulator_enabled() -> bool:
    """True when Numba runs CUDA kernels in its Python simulator."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@functools.cache
def gpu_available() -> bool:
    """True only for a real CUDA GPU with a working driver (never the simulator)."""
    if cuda_simulator_enabled():
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # no numba-cuda, no driver, or a broken installation
        return False


def resolve_backend(backend: str) -> str:
    """Turn a requested backend into the one that will run.

    Raises
    ------
    ValueError
        For an unknown name, or ``"cuda"`` when neither a GPU nor the simulator is there.
    """
    one_of("backend", backend, BACKENDS)
    if backend == "auto":
        return "cuda" if gpu_available() else "cpu"
    if backend == "cuda" and not (gpu_available() or cuda_simulator_enabled()):
        raise ValueError(
            "backend='cuda' needs an NVIDIA GPU with a working CUDA driver, and none was "
            "found (numba.cuda.is_available() is False); use backend='cpu' or 'auto'"
        )
    return backend

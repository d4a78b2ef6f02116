"""The device build of :mod:`dhs.engine.nmodl.runtime`: the same function bodies,
compiled with ``cuda.jit(device=True)``.

On the CPU the runtime calls the C library through opaque symbols (``_pow``, ...) or
glibc's ``exp`` inlined (``_exp``, ``_exp_bounded``); on the device those names are bound
to :mod:`math`, which numba-cuda lowers to libdevice (``__nv_exp``, ``__nv_pow``, ...).
libdevice is accurate to an ulp or two but does not round like glibc, so a real GPU is
not bit-identical to NEURON; under the CUDA simulator :mod:`math` is the C library
again, so simulated runs are.
"""

from __future__ import annotations

import functools
import math
import sys
import types

from . import runtime
from .build import cuda_functions

__all__ = ["device_module", "device_runtime"]

#: The runtime's opaque libm calls, bound on the device to what numba-cuda lowers.
_LIBM_ON_DEVICE = {
    "_exp": math.exp,
    "_exp_bounded": math.exp,
    "_libm_exp": math.exp,
    "_pow": math.pow,
    "_log": math.log,
    "_log10": math.log10,
    "_sin": math.sin,
    "_cos": math.cos,
    "_tan": math.tan,
    "_asin": math.asin,
    "_acos": math.acos,
    "_atan": math.atan,
    "_atan2": math.atan2,
    "_sinh": math.sinh,
    "_cosh": math.cosh,
    "_tanh": math.tanh,
    "_erf": math.erf,
    "_erfc": math.erfc,
    "_fmod": math.fmod,
}


@functools.cache
def device_runtime() -> dict[str, object]:
    """Device builds of every runtime function, by name (``hoc_exp``, ``nrn_nernst``)."""
    return cuda_functions(runtime, _LIBM_ON_DEVICE)


@functools.cache
def device_module(module_name: str) -> types.SimpleNamespace:
    """Device builds of a generated module's functions (the module is already imported:
    :meth:`dhs.engine.mechanism.Mechanism.module`)."""
    module = sys.modules[module_name]
    return types.SimpleNamespace(**cuda_functions(module, device_runtime()))

"""The device build of the NMODL runtime binds every CPU-only call of the runtime."""

from __future__ import annotations

from numba.extending import _Intrinsic

from dhs.engine.nmodl import runtime, runtime_cuda


def test_every_cpu_intrinsic_of_the_runtime_has_a_device_binding():
    """The runtime's module-level intrinsics (libm symbols, the inlined exps) cannot run
    on the device or under the simulator: each must be rebound to what numba-cuda lowers."""
    cpu_only = {
        name
        for name, value in vars(runtime).items()
        if name.startswith("_") and isinstance(value, _Intrinsic)
    }
    assert {"_exp", "_exp_bounded", "_pow"} <= cpu_only
    assert cpu_only <= set(runtime_cuda._LIBM_ON_DEVICE)

"""The engine on an NVIDIA GPU: the generated time loop's CUDA build, launched once
for a whole run (no host round trip per step).

One thread per instance (CoreNEURON's ``cell_permute = 1`` interleaving): every array
is the CPU engine's chunk-major storage with a single chunk as wide as the batch, so
at every node the threads of a warp read consecutive instances. Each thread runs
exactly the CPU loop body for its instance (:mod:`dhs.engine.kernel`), with the same
mechanism functions built by ``cuda.jit(device=True)`` (:mod:`dhs.engine.nmodl.
runtime_cuda`). The design note is ``dhs/engine/DESIGN.md``.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import numba
import numpy as np

from ..backends import cuda_simulator_enabled
from . import kernel

__all__ = [
    "THREADS_PER_BLOCK",
    "compile_ptx",
    "kernel_signature",
    "link_sass",
    "no_fma",
    "run_cuda",
]

THREADS_PER_BLOCK = 64
_COMPILE_LOCK = threading.RLock()
#: The arrays the kernel writes and the host reads back.
_RESULTS = ("rec", "spike_t", "spike_n")


@contextlib.contextmanager
def no_fma():
    """Compile with NVVM's ``-fma=0`` inside the block.

    NVVM contracts ``a * b + c`` into ``fma.rn.f64`` by default and numba-cuda gives no
    option to stop it (``fastmath=False`` does not), while the CPU build never
    contracts: this wraps ``numba.cuda.cudadrv.nvvm.compile_ir`` so that kernels
    compiled in the block get ``fma=False``.
    """
    from numba.cuda.cudadrv import nvvm

    original = getattr(nvvm, "compile_ir", None)
    if original is None:  # numba-cuda internals moved: compile as it would by default
        warnings.warn(
            "numba-cuda has no nvvm.compile_ir to turn FMA contraction off; the GPU engine "
            "may then differ from the CPU engine in the last bits",
            RuntimeWarning,
            stacklevel=3,
        )
        yield
        return

    def compile_ir(llvm_ir, **options):
        options["fma"] = False
        return original(llvm_ir, **options)

    with _COMPILE_LOCK:
        nvvm.compile_ir = compile_ir
        try:
            yield
        finally:
            nvvm.compile_ir = original


def _values(layout: kernel.Layout, head: dict, arrays: dict) -> list:
    return [head[name] for name in kernel.DRIVER_ARGUMENTS] + [
        arrays[name] for name in kernel.argument_names(layout)
    ]


def kernel_signature(layout: kernel.Layout, head: dict, arrays: dict) -> tuple:
    """Numba types of the kernel's arguments for one run's arrays (C-contiguous device
    arrays, as :func:`run_cuda` passes them)."""
    types = [numba.int64]
    for value in _values(layout, head, arrays):
        if isinstance(value, np.ndarray):
            types.append(numba.typeof(np.ascontiguousarray(value)))
        else:
            types.append(numba.typeof(value))
    return tuple(types)


def compile_ptx(
    layout: kernel.Layout, head: dict, arrays: dict, cc=(9, 0), *, contract: bool = False
) -> str:
    """PTX of the layout's kernel for these arrays (needs the CUDA compiler libraries,
    no GPU). FMA contraction is off, as :func:`run_cuda` compiles it, unless
    ``contract``."""
    from numba import cuda

    module = kernel.load(layout, cuda=True)
    fma = contextlib.nullcontext() if contract else no_fma()
    with fma, _compute_capability(cc):
        ptx, _ = cuda.compile_ptx(
            module.run_instances.py_func, kernel_signature(layout, head, arrays), cc=cc
        )
    return ptx


@contextlib.contextmanager
def _compute_capability(cc: tuple[int, int]):
    """Without a GPU, let device functions compile for ``cc``: numba-cuda asks the
    current device for its compute capability when it compiles a device function that
    is not inlined at the IR level, and there is none. With a GPU, nothing changes."""
    from ..backends import gpu_available

    if gpu_available():
        yield
        return
    from numba.cuda import dispatcher

    class _Device:
        compute_capability = tuple(cc)

    original = dispatcher.get_current_device
    with _COMPILE_LOCK:
        dispatcher.get_current_device = lambda: _Device()
        try:
            yield
        finally:
            dispatcher.get_current_device = original


def link_sass(ptx: str, cc=(9, 0)) -> str:
    """Assemble PTX into machine code for ``cc`` with nvJitLink (no GPU needed) and
    return ptxas's report (registers, spills, parameter bytes). Raises RuntimeError
    with the log when the assembler refuses the PTX."""
    from cuda.bindings import nvjitlink

    handle = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"])
    data = ptx.encode()
    try:
        try:
            nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "engine")
            nvjitlink.complete(handle)
        except nvjitlink.nvJitLinkError as error:
            size = nvjitlink.get_error_log_size(handle)
            log = bytearray(size)
            nvjitlink.get_error_log(handle, log)
            message = f"ptxas refused the engine kernel: {error}\n{log.decode()}"
            raise RuntimeError(message) from None
        size = nvjitlink.get_info_log_size(handle)
        log = bytearray(size)
        nvjitlink.get_info_log(handle, log)
        return log.decode(errors="replace")
    finally:
        nvjitlink.destroy(handle)


def run_cuda(layout: kernel.Layout, head: dict, arrays: dict, n_instances: int) -> None:
    """Run the layout's kernel over ``n_instances`` threads; the results (``rec``,
    ``spike_t``, ``spike_n`` of ``head``, and the state arrays of ``arrays``) are
    copied back in place."""
    from numba import cuda

    module = kernel.load(layout, cuda=True)
    stream = cuda.stream()
    device_head = {
        name: cuda.to_device(np.ascontiguousarray(value), stream=stream)
        if isinstance(value, np.ndarray)
        else value
        for name, value in head.items()
    }
    device_arrays = {
        name: cuda.to_device(np.ascontiguousarray(value), stream=stream)
        for name, value in arrays.items()
    }
    values = _values(layout, device_head, device_arrays)
    blocks = (n_instances + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    with no_fma() if not cuda_simulator_enabled() else contextlib.nullcontext():
        module.run_instances[blocks, THREADS_PER_BLOCK, stream](n_instances, *values)
    stream.synchronize()
    for name in _RESULTS:
        head[name][...] = device_head[name].copy_to_host()
    for name, value in arrays.items():
        if value.ndim >= 2 and value.flags.writeable:
            value[...] = device_arrays[name].copy_to_host()

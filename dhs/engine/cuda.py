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
from dataclasses import dataclass

import numba
import numpy as np

from ..backends import cuda_simulator_enabled
from . import kernel

__all__ = [
    "THREADS_PER_BLOCK",
    "SchemeChoice",
    "choose_scheme",
    "compile_ptx",
    "device_multiprocessors",
    "kernel_signature",
    "launch_shape",
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


@dataclass(frozen=True)
class SchemeChoice:
    """The scheme a CUDA run uses, and the estimates it was chosen on (µs per step)."""

    scheme: str
    thread_us: float
    lanes_us: float
    reason: str


#: The cost model's constants (estimates for an H100/H200-class GPU, to be replaced by
#: the first measurements: ``tasks.py gpu`` times both schemes).
#: ns per node and mechanism-phase for one thread walking its instance's nodes (each
#: a chain of dependent global loads: latency-bound).
THREAD_NS_PER_NODE = 40.0
#: ns per node and phase for a lane (coalesced loads of neighbouring nodes).
LANE_NS_PER_NODE = 40.0
#: ns per block-wide barrier (``syncthreads``) and per Hu step.
BARRIER_NS = 60.0
#: Threads in flight per SM for the large generated kernels (~200 registers each).
THREADS_PER_SM = 320
#: Bytes moved per node and step per instance (v, rhs, d, cm and a few mechanism fields).
BYTES_PER_NODE = 200.0


def choose_scheme(
    n_nodes: int,
    n_instances: int,
    hu_steps: int,
    phases: int,
    lanes: int,
    multiprocessors: int = 132,
    bandwidth_bytes_per_s: float = 4.0e12,
) -> SchemeChoice:
    """Pick ``thread`` or ``lanes`` for a batch from a simple cost model.

    ``thread`` (one thread per instance) walks every node of its instance in each of
    ``phases`` passes: a latency-bound chain, in parallel over the instances the
    device holds at once (``multiprocessors * THREADS_PER_SM``), in waves beyond.
    ``lanes`` (one block of ``lanes`` threads per instance) shares the nodes among
    the lanes but waits at a barrier after every phase and every Hu step, twice
    ``hu_steps`` for the solve; blocks run ``THREADS_PER_SM / lanes`` per
    multiprocessor. Both are bounded below by the memory traffic. The cheaper wins.
    """
    in_flight = multiprocessors * THREADS_PER_SM
    memory_us = n_instances * n_nodes * BYTES_PER_NODE / bandwidth_bytes_per_s * 1e6
    waves = -(-n_instances // in_flight)
    thread_us = max(waves * n_nodes * phases * THREAD_NS_PER_NODE / 1e3, memory_us)
    blocks_in_flight = multiprocessors * max(1, THREADS_PER_SM // lanes)
    block_waves = -(-n_instances // blocks_in_flight)
    per_block_ns = (-(-n_nodes // lanes)) * phases * LANE_NS_PER_NODE + (
        phases + 2 * hu_steps
    ) * BARRIER_NS
    lanes_us = max(block_waves * per_block_ns / 1e3, memory_us)
    scheme = "thread" if thread_us <= lanes_us else "lanes"
    reason = (
        f"estimated {thread_us:.1f} us/step with a thread per instance ({waves} wave(s) of "
        f"{in_flight} threads) against {lanes_us:.1f} us/step with {lanes} lanes per "
        f"instance ({block_waves} wave(s), {hu_steps} Hu steps)"
    )
    return SchemeChoice(scheme, thread_us, lanes_us, reason)


def device_multiprocessors() -> int:
    """Multiprocessors of the current GPU (132, an H100/H200's, without one)."""
    from ..backends import gpu_available

    if not gpu_available():
        return 132
    from numba import cuda

    return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)


def kernel_signature(prepared) -> tuple:
    """Numba types of the kernel's arguments for a prepared run (C-contiguous device
    arrays, as :func:`run_cuda` passes them)."""
    types = [numba.int64]
    for value in prepared.values():
        if isinstance(value, np.ndarray):
            types.append(numba.typeof(np.ascontiguousarray(value)))
        else:
            types.append(numba.typeof(value))
    return tuple(types)


def compile_ptx(prepared, cc=(9, 0), *, contract: bool = False) -> str:
    """PTX of a prepared run's kernel (needs the CUDA compiler libraries, no GPU). FMA
    contraction is off, as :func:`run_cuda` compiles it, unless ``contract``."""
    from numba import cuda

    module = kernel.load(prepared.plan)
    fma = contextlib.nullcontext() if contract else no_fma()
    with fma, _compute_capability(cc):
        ptx, _ = cuda.compile_ptx(module.run_instances.py_func, kernel_signature(prepared), cc=cc)
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


def launch_shape(prepared) -> tuple[int, int]:
    """``(blocks, threads per block)`` of a prepared run: ``thread``, one thread per
    instance; ``lanes``, one block of ``lanes`` threads per instance."""
    if prepared.plan.scheme == "lanes":
        return prepared.n_instances, prepared.lanes
    return (prepared.n_instances + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, THREADS_PER_BLOCK


def run_cuda(runs) -> None:
    """Launch every prepared run (each on its own stream, so that they overlap) and
    copy the results (``rec``, ``spike_t``, ``spike_n`` and the state arrays) back in
    place."""
    from numba import cuda

    launched = []
    for prepared in runs:
        module = kernel.load(prepared.plan)
        stream = cuda.stream()
        device_head = {
            name: cuda.to_device(np.ascontiguousarray(value), stream=stream)
            if isinstance(value, np.ndarray)
            else value
            for name, value in prepared.head.items()
        }
        device_arrays = {
            name: cuda.to_device(np.ascontiguousarray(value), stream=stream)
            for name, value in prepared.arrays.items()
        }
        blocks, threads = launch_shape(prepared)
        with no_fma() if not cuda_simulator_enabled() else contextlib.nullcontext():
            module.run_instances[blocks, threads, stream](
                prepared.n_instances, *prepared.values(device_head, device_arrays)
            )
        launched.append((prepared, stream, device_head, device_arrays))
    for prepared, stream, device_head, device_arrays in launched:
        stream.synchronize()
        for name in _RESULTS:
            prepared.head[name][...] = device_head[name].copy_to_host()
        for name, value in prepared.arrays.items():
            if value.ndim >= 2 and value.flags.writeable:
                value[...] = device_arrays[name].copy_to_host()

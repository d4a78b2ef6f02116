"""Host side of the CUDA backend: device tables, launch configuration, transfers.

The kernels themselves are in :mod:`dhs.solvers.cuda`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import checks
from ..layout import Layout
from ..matrix import System, check_system, diagnose_failure
from ..tree import Tree
from .cuda import DEFAULT_SHARED_MEMORY_BYTES, kernels

__all__ = ["CudaEngine"]

# Upper bound on threads per block when several small cells are packed into one block.
MAX_PACKED_THREADS = 128


class CudaEngine:
    """Runs the DHS kernels for one layout and dtype.

    Parameters
    ----------
    layout : Layout
    dtype : numpy.dtype
    shared_memory_bytes : int
        Dynamic shared memory a block may use; a cell whose d and rhs need more runs
        in the global-memory kernel.
    """

    def __init__(
        self,
        layout: Layout,
        dtype: np.dtype,
        shared_memory_bytes: int = DEFAULT_SHARED_MEMORY_BYTES,
    ):
        self.layout = checks.instance_of("layout", layout, Layout, "a dhs.Layout")
        self.dtype = checks.float_dtype("dtype", dtype)
        shared_memory_bytes = checks.positive_int("shared_memory_bytes", shared_memory_bytes)
        self.lanes = layout.threads
        self.max_size = int(layout.component_sizes.max())
        self.tables = tuple(
            cuda.to_device(np.ascontiguousarray(table, dtype=np.int64))
            for table in (
                layout.node_of,
                layout.parent,
                layout.child_ptr,
                layout.child_index,
                layout.node_ptr,
                layout.step_ptr,
                layout.step_lo,
                layout.step_hi,
            )
        )
        unit_bytes = 2 * self.max_size * self.dtype.itemsize
        self.uses_shared_memory = unit_bytes <= shared_memory_bytes
        self.max_groups = (
            max(1, min(MAX_PACKED_THREADS // self.lanes, shared_memory_bytes // unit_bytes))
            if self.uses_shared_memory
            else 1
        )
        self.status = cuda.device_array(1, np.int32)
        self._work = None
        self._dummy = cuda.device_array(1, self.dtype)
        self.kernel = kernels(self.dtype)

    # ------------------------------------------------------------------ host arrays
    def run(self, system: System, x: np.ndarray) -> np.ndarray:
        """Copy a checked host system to the device, solve, copy x back into ``x``."""
        batch, n = system.d.shape
        arrays = [
            cuda.to_device(array.reshape(-1))
            for array in (system.a, system.b, system.d, system.rhs)
        ]
        solution = cuda.device_array(batch * n, self.dtype)
        self.launch(*arrays, solution, batch, n, shared_coupling=system.a.shape[0] == 1)
        solution.copy_to_host(x.reshape(-1))
        if self.failed():
            return np.arange(batch)
        return np.empty(0, np.int64)

    # ------------------------------------------------------------------ device arrays
    @staticmethod
    def is_device_call(*arrays) -> bool:
        """True when any array is a CUDA device array (or a simulator one)."""
        return any(_is_device_array(array) for array in arrays)

    def solve_device(self, tree: Tree, a, b, d, rhs, *, out=None, inplace=False):
        """Solve systems already on the device; returns a device array shaped like rhs."""
        arrays = {"a": a, "b": b, "d": d, "rhs": rhs}
        for name, array in arrays.items():
            if not _is_device_array(array):
                raise ValueError(f"{name} is a host array while other inputs are on the device")
            if np.dtype(array.dtype) != self.dtype:
                raise ValueError(f"{name} has dtype {array.dtype}; this solver uses {self.dtype}")
        # Shapes are checked with empty host stand-ins so that the rules stay in one place.
        stand_ins = {name: np.empty(array.shape, self.dtype) for name, array in arrays.items()}
        check_system(tree, **stand_ins, dtype=self.dtype)
        batch = d.shape[0] if len(d.shape) == 2 else 1
        n = tree.n
        if inplace:
            out = rhs
        if out is None:
            out = cuda.device_array(d.shape, self.dtype)
        elif tuple(out.shape) != tuple(d.shape) or np.dtype(out.dtype) != self.dtype:
            raise ValueError(f"out must be a {self.dtype} device array of shape {d.shape}")
        flat = [array.reshape(-1) for array in (a, b, d, rhs, out)]
        # (n,) coupling is shared; (batch, n) is per system (the same thing when batch is 1).
        self.launch(*flat, batch, n, shared_coupling=len(a.shape) == 1 or batch == 1)
        if self.failed():
            host = check_system(
                tree, *(array.copy_to_host() for array in (a, b, d, rhs)), dtype=self.dtype
            )
            raise diagnose_failure(tree, host)
        return out

    # ------------------------------------------------------------------ launch
    def launch(self, a, b, d, rhs, x, batch: int, n: int, *, shared_coupling: bool) -> None:
        """Launch on flat device arrays; ``x`` may be ``rhs``. Does not synchronise."""
        self.status.copy_to_device(np.zeros(1, np.int32))
        coupling_stride = 0 if shared_coupling else n
        if self.uses_shared_memory:
            groups = min(self.max_groups, batch)
            shared_bytes = groups * 2 * self.max_size * self.dtype.itemsize
            work = (self._dummy, self._dummy)
        else:
            groups = 1
            shared_bytes = 0
            if self._work is None or self._work[0].size < batch * n:
                self._work = (
                    cuda.device_array(batch * n, self.dtype),
                    cuda.device_array(batch * n, self.dtype),
                )
            work = self._work
        blocks_per_component = math.ceil(batch / groups)
        blocks = self.layout.n_components * blocks_per_component
        self.kernel[blocks, groups * self.lanes, 0, shared_bytes](
            *self.tables,
            a,
            b,
            d,
            rhs,
            x,
            n,
            batch,
            coupling_stride,
            groups,
            blocks_per_component,
            self.max_size,
            self.uses_shared_memory,
            *work,
            self.status,
        )

    def failed(self) -> bool:
        """Whether the last launch met a non-finite value (synchronises)."""
        return bool(self.status.copy_to_host()[0])


def _is_device_array(array) -> bool:
    # The simulator's arrays lack __cuda_array_interface__ but have copy_to_host.
    return array is not None and (
        hasattr(array, "__cuda_array_interface__") or hasattr(array, "copy_to_host")
    )

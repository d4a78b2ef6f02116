"""Numba CUDA kernels for the DHS solve. Matrix convention: :mod:`dhs.matrix`.

One block runs ``groups`` units (a unit is one cell of one system, ``threads`` lanes);
lane t takes the t-th node of each contiguous Hu step (:mod:`dhs.layout`), a parent pulls
from its children (no atomics), and d and rhs sit in shared memory when a cell fits.
The design is in ``dhs/DESIGN.md``.

Arrays are passed flattened and 1-D. ``coupling_stride`` is 0 when a and b are shared by
the batch and n when they are per system. Non-finite values read or produced set
``status[0] = 1``; the host then diagnoses the inputs (:func:`dhs.matrix.diagnose_failure`).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

__all__ = [
    "DEFAULT_SHARED_MEMORY_BYTES",
    "back_substitute",
    "eliminate",
    "kernel_signature",
    "kernels",
]

# The default dynamic shared memory a block may use without an opt-in attribute.
DEFAULT_SHARED_MEMORY_BYTES = 48 * 1024


@cuda.jit(device=True, inline="always")
def eliminate(
    lane,
    first_step,
    last_step,
    step_lo,
    step_hi,
    child_ptr,
    child_index,
    coupling_node,
    a,
    b,
    coupling,
    pivot,
    value,
    lo,
    active,
):
    """Hu's steps ``first_step .. last_step - 1`` of one cell, lane ``lane`` taking the
    lane-th node of each step: node j pulls from its children, eliminated in earlier
    steps, in the layout's child order (serial Hines's), so the sums are serial Hines's.

    ``pivot``/``value`` hold d and rhs of the cell at ``new index - lo``; a and b are
    read at ``coupling + coupling_node[new index]``. Every lane of the block must call
    it (barriers between steps); ``active`` False lanes only meet the barriers.
    Returns False if a coupling coefficient read is not finite.
    """
    finite = True
    for s in range(first_step, last_step):
        j = step_lo[s] + lane
        if active and j < step_hi[s]:
            pivot_j = pivot[j - lo]
            value_j = value[j - lo]
            for q in range(child_ptr[j], child_ptr[j + 1]):
                child = child_index[q]
                node = coupling_node[child]
                a_child = a[coupling + node]
                b_child = b[coupling + node]
                if not (math.isfinite(a_child) and math.isfinite(b_child)):
                    finite = False
                factor = a_child / pivot[child - lo]
                pivot_j -= factor * b_child
                value_j -= factor * value[child - lo]
            pivot[j - lo] = pivot_j
            value[j - lo] = value_j
        cuda.syncthreads()
    return finite


@cuda.jit(device=True, inline="always")
def back_substitute(
    lane,
    first_step,
    last_step,
    step_lo,
    step_hi,
    parent,
    coupling_node,
    b,
    coupling,
    pivot,
    value,
    lo,
    active,
):
    """The steps of :func:`eliminate` in reverse: each node reads its parent's final x
    (x replaces ``value``)."""
    for s in range(last_step - 1, first_step - 1, -1):
        j = step_lo[s] + lane
        if active and j < step_hi[s]:
            up = parent[j]
            if up >= 0:
                value[j - lo] = (
                    value[j - lo] - b[coupling + coupling_node[j]] * value[up - lo]
                ) / pivot[j - lo]
            else:
                value[j - lo] = value[j - lo] / pivot[j - lo]
        cuda.syncthreads()


@functools.cache
def kernels(dtype: np.dtype):
    """The DHS kernel for one floating-point dtype.

    One kernel serves both memory paths (``use_shared``): ``pivot`` and ``value`` are
    either slices of the block's shared staging buffer or of global scratch, indexed
    alike. The steps themselves are :func:`eliminate` and :func:`back_substitute`, which
    the engine's DHS scheme calls too; they are inlined at Numba's IR level, so
    ``cuda.compile_ptx`` works without a GPU.
    """
    element = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def solve(
        node_of,
        parent,
        child_ptr,
        child_index,
        node_ptr,
        step_ptr,
        step_lo,
        step_hi,
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
        max_size,
        use_shared,
        work_pivot,
        work_value,
        status,
    ):
        staged = cuda.shared.array(0, dtype=element)
        lanes = cuda.blockDim.x // groups
        group = cuda.threadIdx.x // lanes
        lane = cuda.threadIdx.x - group * lanes
        component = cuda.blockIdx.x // blocks_per_component
        row = (cuda.blockIdx.x - component * blocks_per_component) * groups + group
        active = row < batch
        lo = node_ptr[component]
        size = node_ptr[component + 1] - lo
        base = row * n
        coupling = row * coupling_stride
        # Both paths index pivot and value by (new index - lo).
        if use_shared:
            pivot = staged[2 * group * max_size : 2 * group * max_size + size]
            value = staged[(2 * group + 1) * max_size : (2 * group + 1) * max_size + size]
        else:
            pivot = work_pivot[base + lo : base + lo + size]
            value = work_value[base + lo : base + lo + size]
        finite = True

        # Gather d and rhs from the caller's numbering into the DHS numbering.
        if active:
            for i in range(lane, size, lanes):
                node = node_of[lo + i]
                pivot_i = d[base + node]
                value_i = rhs[base + node]
                if not (math.isfinite(pivot_i) and math.isfinite(value_i)):
                    finite = False
                pivot[i] = pivot_i
                value[i] = value_i
            if lane == 0:  # a and b of the root are never read by a step
                root = node_of[lo]
                if not (math.isfinite(a[coupling + root]) and math.isfinite(b[coupling + root])):
                    finite = False
        cuda.syncthreads()

        first_step = step_ptr[component]
        last_step = step_ptr[component + 1]
        if not eliminate(
            lane,
            first_step,
            last_step,
            step_lo,
            step_hi,
            child_ptr,
            child_index,
            node_of,
            a,
            b,
            coupling,
            pivot,
            value,
            lo,
            active,
        ):
            finite = False
        back_substitute(
            lane,
            first_step,
            last_step,
            step_lo,
            step_hi,
            parent,
            node_of,
            b,
            coupling,
            pivot,
            value,
            lo,
            active,
        )

        # Scatter x back to the caller's numbering.
        if active:
            for i in range(lane, size, lanes):
                solution = value[i]
                x[base + node_of[lo + i]] = solution
                if not math.isfinite(solution):
                    finite = False
        if not finite:
            status[0] = 1  # every writer stores the same value: a benign race

    return solve


def kernel_signature(dtype: np.dtype):
    """Argument types with which the kernel is launched, for ``cuda.compile_ptx``."""
    element = numba.from_dtype(np.dtype(dtype))
    index = numba.types.int64[::1]
    values = element[::1]
    count = numba.types.int64
    tables = (index,) * 8  # node_of, parent, child_ptr, child_index, node_ptr, step_ptr, lo, hi
    inputs = (values,) * 5  # a, b, d, rhs, x
    sizes = (count,) * 6  # n, batch, coupling_stride, groups, blocks_per_component, max_size
    return (*tables, *inputs, *sizes, numba.types.boolean, values, values, numba.types.int32[::1])

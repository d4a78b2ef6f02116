"""Running prepared engine runs: on the CPU's workers, or on CUDA.

A :class:`PreparedRun` is everything one :class:`~dhs.engine.integrate.Engine`'s kernel
takes for one run (:meth:`~dhs.engine.integrate.Engine._prepare`). :func:`execute`
runs several at once, the instances of different cell models in one batch: on the CPU
their chunks are cut into contiguous shares of equal cost, one per worker thread (the
generated kernels release the GIL); on CUDA each run is one launch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import kernel
from .kernel_runtime import compile_driver

__all__ = ["PreparedRun", "execute", "worker_shares"]


@dataclass
class PreparedRun:
    """One engine run's kernel arguments.

    Attributes
    ----------
    plan : KernelPlan
    head : dict
        The driver's arrays (:data:`dhs.engine.kernel.DRIVER_ARGUMENTS`).
    arrays : dict
        The phases' arrays (:func:`dhs.engine.kernel.argument_names`).
    starts : ndarray of int64
        Chunk c holds instances ``starts[c] .. starts[c + 1] - 1``.
    width : int
        Instances per chunk in memory.
    n_instances : int
    lanes : int
        Threads per instance (``lanes`` scheme).
    record_nodes : ndarray of int64
        The recorded nodes, in the model's numbering.
    spike_node : int
        In the model's numbering, -1 for none.
    index_of : ndarray of int64 or None
        The kernel's index of each model node (the DHS numbering of ``lanes``), or None
        when the kernel uses the model's own.
    cost : ndarray of float
        Relative cost of each chunk (its instances times the rows it works on).
    """

    plan: kernel.KernelPlan
    head: dict
    arrays: dict
    starts: np.ndarray
    width: int
    n_instances: int
    lanes: int
    record_nodes: np.ndarray
    spike_node: int
    index_of: np.ndarray | None
    cost: np.ndarray

    def values(self, head: dict | None = None, arrays: dict | None = None) -> list:
        """The kernel's arguments in order (optionally from device copies)."""
        head = self.head if head is None else head
        arrays = self.arrays if arrays is None else arrays
        return [head[name] for name in kernel.DRIVER_ARGUMENTS] + [
            arrays[name] for name in kernel.argument_names(self.plan)
        ]


def worker_shares(costs: list[np.ndarray], workers: int) -> list[list[tuple[int, int, int]]]:
    """Cut the chunks of several runs (in order) into ``workers`` contiguous shares of
    about equal cost.

    Returns
    -------
    list of list of (run, first, last)
        Worker w runs chunks ``first .. last - 1`` of run ``run``, for each entry.
    """
    flat = [(r, c, float(cost)) for r, run in enumerate(costs) for c, cost in enumerate(run)]
    total = sum(cost for _, _, cost in flat)
    shares: list[list[tuple[int, int, int]]] = [[] for _ in range(workers)]
    done = 0.0
    for r, c, cost in flat:
        # the worker whose share of the total this chunk's middle falls into
        w = min(workers - 1, int((done + cost / 2) / total * workers)) if total > 0 else 0
        done += cost
        share = shares[w]
        if share and share[-1][0] == r and share[-1][2] == c:
            share[-1] = (r, share[-1][1], c + 1)
        else:
            share.append((r, c, c + 1))
    return [share for share in shares if share]


def execute(runs: list[PreparedRun], backend: str, workers: int) -> None:
    """Run every prepared run to its end; results stay in their ``head`` and
    ``arrays`` (copied back from the device for CUDA)."""
    if backend == "cuda":
        from .cuda import run_cuda

        run_cuda(runs)
        return
    modules = [kernel.load(run.plan) for run in runs]
    values = [run.values() for run in runs]
    for module, run_values in zip(modules, values, strict=True):
        compile_driver(module, (0, 0, *run_values))
    shares = worker_shares([run.cost for run in runs], max(1, workers))

    def work(share: list[tuple[int, int, int]]) -> None:
        for r, first, last in share:
            modules[r].run_chunks(first, last, *values[r])

    if len(shares) == 1:
        work(shares[0])
        return
    with ThreadPoolExecutor(len(shares)) as pool:
        for job in [pool.submit(work, share) for share in shares]:
            job.result()

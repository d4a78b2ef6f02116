"""Parameter sweeps: many instances of one model, in chunks, in a Zarr store, on Dask.

:func:`sweep` runs ``n_instances`` instances of a :class:`~dhs.engine.CellModel` in
chunks of ``chunk_size`` instances. Each chunk gets a fresh :class:`~dhs.engine.Engine`,
which the user's ``configure(engine, instance_indices)`` sets up (parameters with
:meth:`Engine.set`, events with :meth:`Engine.set_events` / :meth:`Engine.add_events`);
the chunk is run and written to the sweep's Zarr store (:mod:`dhs.engine.sweep_store`)
as soon as it is done. The chunks run one after another in this process, or, with
``client=``, as tasks on any ``distributed.Client`` (a ``LocalCluster``, a scheduler
address, dask-jobqueue's ``SLURMCluster``, dask-cuda's ``LocalCUDACluster``). A killed
sweep (Ctrl-C, SIGKILL, a lost worker, a power cut) resumes where it stopped: calling
:func:`sweep` again with the same arguments computes only the chunks without a done
marker. :func:`load_sweep` assembles the results; a finished store also opens with plain
``zarr.open_group`` and ``xarray.open_zarr`` (layout: :mod:`dhs.engine.sweep_store`,
notes: ``dhs/engine/SWEEPS.md``).

Exact resumption
----------------
``configure`` receives the *global* indices of the chunk's instances
(``instance_indices[j]`` is the global index of the engine's local instance ``j``), and
must set up each instance as a function of its global index only: not of the chunk it
falls in, of the order of calls, of the worker, or of a random generator carried from
one call to the next (derive random numbers per instance, e.g.
``np.random.default_rng([seed, i])``). Then every instance is the same whichever chunk,
worker or process computes it and whenever, and since the engine's instances never
interact, a resumed sweep, a sweep on a cluster, in other chunk sizes, and a single
:meth:`Engine.run` over all instances give identical results, bit for bit.

With ``client=``, ``configure`` travels to the workers with ``cloudpickle``: make it a
module-level function of a module the workers can import, or an instance of a (dataclass)
class with ``__call__`` defined in such a module; closures and lambdas are sent by value.

Who writes
----------
Each chunk's task writes its own results to the store, then its done marker; the client
receives a few numbers per chunk. Results never pass through the scheduler or the
client (a sweep can be far larger than the client's memory), and since every sweep
chunk is its own Zarr chunk (or shard) per array, concurrent writers never share a file.
The store must therefore be a directory that every worker sees (any path on one machine;
a shared file system on a cluster).

Memory
------
The chunk size is ``chunk_size`` if given, or the largest that keeps the estimated
memory of one chunk within a budget: ``memory_budget_bytes``, or by default
:data:`RAM_FRACTION` of the available RAM (``psutil`` if installed, else
``os.sysconf``) for the CPU backend and :data:`DEVICE_FRACTION` of the free device
memory for ``backend="cuda"``. With a client, each worker measures its own (its memory
limit and its host's available RAM, or its device's free memory, shared among its
threads) and the smallest budget counts; the chunk is also made small enough that every
worker thread gets at least :data:`CHUNKS_PER_THREAD` chunks.
:func:`estimate_bytes_per_instance` is the engine's part of the estimate; the store's
attributes (``memory``) state the whole estimate with its parts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import sweep_store
from .integrate import Engine
from .model import CellModel
from .options import RunOptions, run_options
from .storage import instance_bytes
from .sweep_store import (
    FORMAT,
    ExtraArray,
    StoreLayout,
    chunk_is_readable,
    clear_marker,
    create_store,
    finished_chunks,
    read_attributes,
    remove_stale_files,
    update_attributes,
    write_chunk,
)

__all__ = [
    "ExtraArray",
    "SweepResult",
    "estimate_bytes_per_instance",
    "finished_chunks",
    "load_sweep",
    "sweep",
]

RAM_FRACTION = 0.25  # of the available RAM: the default budget of one CPU chunk
DEVICE_FRACTION = 0.5  # of the free device memory: the default budget of one GPU chunk
EVENT_BYTES = 96  # per event and instance: the engine's event arrays and their sorting
#: With a client, default chunks are small enough for this many chunks per worker thread.
CHUNKS_PER_THREAD = 2


@dataclass
class SweepResult:
    """The assembled results of a sweep (what :func:`load_sweep` returns).

    Attributes
    ----------
    t : ndarray, shape (n_times,)
        Times of the samples in ms (NEURON's accumulated t, from 0).
    v : ndarray, shape (n_instances, n_records, n_times) or None
        Membrane potential in mV at ``record_nodes``, instances in global index order
        (None from ``sweep(..., load=False)``; NaN for instances not computed yet when
        loaded with ``partial=True``).
    record_nodes : ndarray of int64, shape (n_records,)
    spikes : list of ndarray or None
        Spike times in ms per instance (None without ``spike_node``, or when not
        loaded; an instance not computed yet has None).
    metadata : dict
        The store's ``dhs_sweep`` attribute: ``settings``, ``run_options``,
        ``chunk_size``, ``n_chunks``, ``fingerprint``, ``memory``
        (``bytes_per_instance``, ``parts``, ``chunk_bytes``, ``budget_bytes``,
        ``budget_source``), ``runs`` (each call that computed: when, where, on which
        machines).
    records : dict of str to ndarray, shape (n_instances, n_times)
        The ``record`` variables, keyed ``"name@where"``.
    extra : dict of str to ndarray
        The :class:`ExtraArray` values that ``configure`` returned, ``(n_instances,
        ...)``.
    finished : ndarray of bool, shape (n_instances,) or None
        Which instances are computed (all, unless loaded with ``partial=True``).
    """

    t: np.ndarray
    v: np.ndarray | None
    record_nodes: np.ndarray
    spikes: list | None
    metadata: dict = field(default_factory=dict)
    records: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    finished: np.ndarray | None = None


# --------------------------------------------------------------------------- memory
def estimate_bytes_per_instance(
    model: CellModel,
    tstop: float | RunOptions,
    dt: float = 0.025,
    n_records: int = 0,
    record_every: int = 1,
    spike_node: bool = False,
    max_spikes: int | None = None,
) -> dict:
    """Estimated memory in bytes that one instance needs during :meth:`Engine.run`.

    Derived from the model's mechanism descriptions: what the generated kernel stores.

    Parameters
    ----------
    model : CellModel
    tstop : float or RunOptions
        Run length in ms (``round(tstop / dt)`` steps), or the run's settings (then
        the arguments after it are taken from them).
    dt : float
        Time step in ms.
    n_records : int
        Recorded variables.
    record_every : int
        Recording interval in steps.
    spike_node : bool
        Whether spikes are detected.
    max_spikes : int, optional
        Spikes kept per instance (the engine's default: ``n_steps // 2 + 1``).

    Returns
    -------
    dict
        ``{"total": bytes, "parts": {name: bytes}}`` with parts ``parameters`` (cm per
        node, v_init), ``state`` (v, rhs, d per node; every mechanism instance's stored
        fields, :attr:`Mechanism.fields` less the optional assigned ones; two assembly
        terms per instance with a current; five fields per ion node; final v),
        ``recording`` (the buffer and the transposed copy :class:`RunResult` returns),
        ``spikes`` and ``events`` (:data:`EVENT_BYTES` each). Python overheads and
        compiled code are not counted.
    """
    if isinstance(tstop, RunOptions):
        options = tstop
        n_records = len(options.record_nodes) + len(options.record)
        spike_node = options.spike_node is not None
    else:
        options = RunOptions(tstop, dt, record_every=record_every, max_spikes=max_spikes)
    n_times = options.n_samples
    parameters, state = instance_bytes(model)
    recording = 2 * 8 * int(n_records) * n_times
    spikes = 8 * max(options.kept_spikes, 0) + 8 + (16 if spike_node else 0)
    events = EVENT_BYTES * sum(int(e.time.size) for e in model.events.values())
    parts = {
        "parameters": parameters,
        "state": state,
        "recording": recording,
        "spikes": spikes,
        "events": events,
    }
    return {"total": int(sum(parts.values())), "parts": parts}


def _available_memory(backend: str) -> tuple[int, str]:
    """Default budget for one chunk in bytes, and where it comes from."""
    if backend == "cuda":
        try:
            from numba import cuda

            free, _total = cuda.current_context().get_memory_info()
            return int(free * DEVICE_FRACTION), f"{DEVICE_FRACTION} of free device memory"
        except Exception as error:  # no device: fall back to the RAM
            warnings.warn(
                f"could not read the free device memory ({error}); using the RAM instead",
                RuntimeWarning,
                stacklevel=3,
            )
    try:
        import psutil  # optional

        available = int(psutil.virtual_memory().available)
        source = "psutil"
    except ImportError:
        try:
            available = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
            source = "os.sysconf"
        except (ValueError, OSError, AttributeError):
            available = 2**31
            source = "a 2 GiB guess"
    return int(available * RAM_FRACTION), f"{RAM_FRACTION} of available RAM ({source})"


# --------------------------------------------------------------------------- fingerprints
def _fingerprint_model(model: CellModel) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.to_arrays().items()):
        array = np.ascontiguousarray(value)
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        if array.dtype.kind == "U":
            digest.update("\0".join(array.ravel().tolist()).encode())
        else:
            digest.update(array.tobytes())
    return digest.hexdigest()


def _fingerprint(identity: dict) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- progress
class _Progress:
    """A one-line text progress bar on stderr: chunks done, instances/s and ETA."""

    def __init__(self, n_chunks: int, n_instances: int, enabled: bool, stream=None):
        self.n_chunks = n_chunks
        self.n_instances = n_instances
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.computed = 0  # instances computed in this call (not resumed)

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = round(seconds)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def show(self, chunks_done: int, instances_done: int, resumed: int = 0) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * chunks_done // max(self.n_chunks, 1)
        elapsed = time.perf_counter() - self.start
        rate = self.computed / elapsed if elapsed > 0 and self.computed else 0.0
        left = self.n_instances - instances_done
        eta = self._clock(left / rate) if rate > 0 else ("0:00:00" if left == 0 else "?")
        line = (
            f"sweep [{'#' * filled}{'.' * (width - filled)}] {chunks_done}/{self.n_chunks} "
            f"chunks, {instances_done}/{self.n_instances} instances"
            + (f" ({resumed} chunks resumed)" if resumed else "")
            + f", {rate:.1f} instances/s, elapsed {self._clock(elapsed)}, ETA {eta}"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _machine() -> dict:
    """The machine this runs on: host, system, cores, RAM and library versions."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        import psutil

        ram = int(psutil.virtual_memory().total)
    except ImportError:
        try:
            ram = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            ram = None
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("numba", "zarr", "dask", "distributed"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return {
        "host": socket.gethostname(),
        "system": platform.platform(),
        "processor": platform.machine(),
        "cores": cores,
        "ram_bytes": ram,
        "versions": versions,
    }


# --------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class _ChunkJob:
    """Everything a chunk's task needs (sent to every task: small; the model is read
    from the store by workers that do not have it)."""

    store: str
    fingerprint: str
    model_sha256: str
    layout: StoreLayout
    options: RunOptions
    configure: Callable
    backend: str
    engine_options: dict
    #: Engine threads per Dask worker address (from the workers' own reports).
    engine_threads: dict = field(default_factory=dict)
    #: The model itself for the in-process loop; None on Dask workers.
    model: CellModel | None = None


@functools.lru_cache(maxsize=4)
def _model_from_store(store: str, model_sha256: str) -> CellModel:
    """The model saved in the store (``model/npz``), read once per process."""
    from .sweep_store import read_model_bytes

    with np.load(io.BytesIO(read_model_bytes(store)), allow_pickle=False) as arrays:
        model = CellModel.from_arrays(arrays)
    found = _fingerprint_model(model)
    if found != model_sha256:
        raise ValueError(f"the model in {store} is {found[:12]}…, the sweep's {model_sha256[:12]}…")
    return model


def _engine_threads(job: _ChunkJob) -> int | None:
    """CPU threads for the engine of a task on a Dask worker (None outside Dask: the
    engine's default, every core)."""
    if "workers" in job.engine_options:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    if worker.address in job.engine_threads:
        return job.engine_threads[worker.address]
    return max(1, _machine()["cores"] // max(1, worker.state.nthreads))


def _extra_values(layout: StoreLayout, returned, n: int) -> dict[str, np.ndarray]:
    """The arrays ``configure`` returned, checked against the declared ones."""
    if not layout.extra:
        return {}
    if not isinstance(returned, Mapping) or set(returned) != set(layout.extra):
        found = sorted(returned) if isinstance(returned, Mapping) else type(returned).__name__
        raise ValueError(
            f"configure must return a dict with the extra_arrays {sorted(layout.extra)}, "
            f"got {found}"
        )
    values = {}
    for name, spec in layout.extra.items():
        value = np.asarray(returned[name])
        if value.shape != (n, *spec.shape):
            raise ValueError(
                f"configure returned {name} of shape {value.shape}, expected {(n, *spec.shape)}"
            )
        values[name] = np.ascontiguousarray(value.astype(spec.dtype, copy=False))
    return values


def _compute_chunk(job: _ChunkJob, chunk: int) -> dict:
    """Run one chunk and write it to the store (the task of both schedulers).

    Returns a summary: the chunk, its instances, seconds, host and process, and the
    time of its done marker.
    """
    began = time.perf_counter()
    layout = job.layout
    start, stop = layout.bounds(chunk)
    model = job.model if job.model is not None else _model_from_store(job.store, job.model_sha256)
    indices = np.arange(start, stop, dtype=np.int64)
    indices.flags.writeable = False
    engine_options = dict(job.engine_options)
    threads = _engine_threads(job)
    if threads is not None:
        engine_options["workers"] = threads
    engine = Engine(model, stop - start, backend=job.backend, **engine_options)
    extra = _extra_values(layout, job.configure(engine, indices), stop - start)
    result = engine.run(job.options)
    arrays = {"v": np.ascontiguousarray(result.v)}
    if layout.spike_capacity is not None:
        times = np.full((stop - start, layout.spike_capacity), np.nan)
        counts = np.zeros(stop - start, dtype=np.int64)
        for j, spikes in enumerate(result.spikes):
            kept = spikes[: layout.spike_capacity]
            times[j, : kept.size] = kept
            counts[j] = kept.size
        arrays["spike_times"], arrays["spike_count"] = times, counts
    arrays.update(result.records)
    arrays.update(extra)
    del engine, result
    finished = write_chunk(job.store, job.fingerprint, chunk, start, arrays)
    return {
        "chunk": chunk,
        "instances": stop - start,
        "seconds": time.perf_counter() - began,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": finished,
    }


# --------------------------------------------------------------------------- Dask
def _describe_worker(backend: str, dask_worker=None) -> dict:
    """What a Dask worker reports (run on every worker with ``client.run``): its machine,
    threads, memory limit, and the default budget of :func:`_available_memory` there."""
    budget, source = _available_memory(backend)
    limit = getattr(getattr(dask_worker, "memory_manager", None), "memory_limit", None)
    return {
        "machine": _machine(),
        "nthreads": int(dask_worker.state.nthreads) if dask_worker is not None else 1,
        "memory_limit": int(limit) if limit else None,
        "budget_bytes": int(budget),
        "budget_source": source,
    }


def _workers_of(client, backend: str) -> dict[str, dict]:
    """Every worker's report (:func:`_describe_worker`) plus ``engine_threads`` (its host's
    cores shared among the host's worker threads) and ``task_budget_bytes``: the memory
    one of its tasks may use. A device's budget is shared among the worker's threads; the
    host's available RAM among all worker threads on the host, and no task gets more
    than :data:`RAM_FRACTION` of its worker's memory limit shared among its threads."""
    if not client.scheduler_info().get("workers"):
        client.wait_for_workers(1)
    reports = client.run(_describe_worker, backend)
    host_threads: dict[str, int] = {}
    for report in reports.values():
        host = report["machine"]["host"]
        host_threads[host] = host_threads.get(host, 0) + report["nthreads"]
    for report in reports.values():
        sharing = host_threads[report["machine"]["host"]]
        report["engine_threads"] = max(1, report["machine"]["cores"] // sharing)
        if "device" in report["budget_source"]:
            report["task_budget_bytes"] = report["budget_bytes"] // report["nthreads"]
            continue
        budget = report["budget_bytes"] // sharing
        if report["memory_limit"]:
            budget = min(budget, int(report["memory_limit"] * RAM_FRACTION) // report["nthreads"])
        report["task_budget_bytes"] = budget
    return reports


def _run_on_client(client, job: _ChunkJob, todo: list[int], done: Callable) -> None:
    """Submit the chunks as tasks and call ``done(summary)`` as each finishes."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(_compute_chunk, job, c, key=f"dhs-sweep-chunk-{c:05d}-{token}", pure=False)
        for c in todo
    ]
    try:
        for future in as_completed(futures):
            done(future.result())  # raises the task's error
    except BaseException:
        client.cancel(futures)  # what is written stays written; a rerun resumes
        raise


# --------------------------------------------------------------------------- sweep
ENGINE_OPTIONS = ("chunk", "workers", "scheme", "lanes")


def _positive(name: str, value) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
    ):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_names(record_names, extra) -> None:
    from .sweep_store import RESERVED

    seen = set()
    for name in (*record_names, *extra):
        if not isinstance(name, str) or not name or "/" in name or name.startswith("__"):
            raise ValueError(f"{name!r} cannot name an array of the store")
        if name in RESERVED or name in seen or name == "model":
            raise ValueError(f"the store already has an array {name!r}")
        seen.add(name)
    for name, spec in extra.items():
        if not isinstance(spec, ExtraArray):
            raise ValueError(f"extra_arrays[{name!r}] must be an ExtraArray, got {spec!r}")


def _round_to_inner(size: int, layout: StoreLayout) -> int:
    """A chunk size rounded down to a multiple of the inner chunks (when it is larger)."""
    largest = max(
        int(np.prod(a["shape"], dtype=np.int64)) * np.dtype(a["dtype"]).itemsize
        for a in layout.arrays().values()
    )
    inner = max(1, sweep_store.INNER_CHUNK_BYTES // max(1, largest))
    return size // inner * inner if size > inner else size


def _model_bytes(model: CellModel) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **model.to_arrays())
    return buffer.getvalue()


def _choose_chunk_size(
    chunk_size: int | None,
    memory_budget_bytes: int | None,
    workers: dict,
    backend: str,
    per_instance: int,
    layout: StoreLayout,
    existing: dict | None,
) -> tuple[int, int | None, str]:
    """The chunk size, the memory budget it comes from and a description of the budget
    (module doc: Memory). ``layout`` gives the instances and the stored arrays."""
    n_instances = layout.n_instances
    if chunk_size is not None:
        return min(int(chunk_size), n_instances), None, "chunk_size given"
    if memory_budget_bytes is not None:
        budget, source = int(memory_budget_bytes), "memory_budget_bytes given"
    elif workers:
        smallest = min(workers.values(), key=lambda report: report["task_budget_bytes"])
        budget = smallest["task_budget_bytes"]
        source = (
            f"the smallest share of a worker's memory ({smallest['budget_source']} on "
            f"{smallest['machine']['host']}, shared by its tasks)"
        )
    else:
        budget, source = _available_memory(backend)
    size = max(1, min(n_instances, budget // per_instance))
    if budget < per_instance:
        warnings.warn(
            f"one instance needs about {per_instance} bytes, more than the budget of "
            f"{budget} bytes; running one instance per chunk",
            RuntimeWarning,
            stacklevel=3,
        )
    if workers:
        threads = sum(report["nthreads"] for report in workers.values())
        balanced = max(1, -(-n_instances // (CHUNKS_PER_THREAD * threads)))
        if balanced < size:
            size = balanced
            source += f"; at most {balanced} for {CHUNKS_PER_THREAD} chunks per thread"
    size = _round_to_inner(size, layout)
    if existing is not None and isinstance(existing.get("chunk_size"), int):
        if existing["chunk_size"] != size:
            source += f"; resumed with the existing chunk size {existing['chunk_size']}"
        size = existing["chunk_size"]
    return min(size, n_instances), budget, source


def sweep(
    model: CellModel,
    n_instances: int,
    configure: Callable,
    store: str | os.PathLike,
    *,
    tstop: float | RunOptions,
    dt: float = 0.025,
    record_nodes=None,
    record=(),
    record_every: int = 1,
    spike_node=None,
    spike_threshold: float = -20.0,
    spike_method: str = "neuron",
    max_spikes: int | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    backend: str = "cpu",
    engine_options: dict | None = None,
    extra_arrays: Mapping[str, ExtraArray] | None = None,
    tag=None,
    client=None,
    verify: bool = True,
    progress: bool = True,
    load: bool = True,
) -> SweepResult:
    """Run ``n_instances`` instances in chunks into a Zarr store; resume if interrupted.

    Parameters
    ----------
    model : CellModel
    n_instances : int
        Instances in the whole sweep (global indices ``0 .. n_instances - 1``).
    configure : callable
        ``configure(engine, instance_indices)`` sets up one chunk: ``engine`` is a fresh
        :class:`Engine` with ``len(instance_indices)`` instances, and
        ``instance_indices`` (int64, read-only) the global index of each of them (local
        instance ``j`` is global instance ``instance_indices[j]``; pass local positions
        to ``set_events(..., instances=...)``). It must set up every instance as a
        function of its global index only (module doc). With ``extra_arrays`` it returns
        a dict of their values for the chunk's instances; otherwise its return value is
        ignored. With ``client``, it must be picklable (module doc).
    store : str or path-like
        The directory of the Zarr store (created; calling :func:`sweep` again with the
        same store resumes). With ``client``, every worker must see it (a shared file
        system).
    tstop : float or RunOptions
        Run length in ms, or all the run's settings at once (then ``dt`` ...
        ``max_spikes`` are ignored).
    dt, record_nodes, record, record_every, spike_node, spike_threshold, spike_method, \
max_spikes
        As :meth:`Engine.run` (times in ms, threshold in mV). ``max_spikes`` is also the
        capacity of ``spike_times`` in the store (default: as many as can occur, which
        is large; set it when spikes are sparse).
    chunk_size : int, optional
        Instances per chunk. Default: from the memory budget (module doc); when
        resuming, the existing sweep's chunk size (an explicit ``chunk_size`` that
        differs from it raises ValueError).
    memory_budget_bytes : int, optional
        Memory for one chunk in bytes, used when ``chunk_size`` is not given. Default:
        measured (module doc).
    backend : str, default "cpu"
        Passed to :class:`Engine` (``"cuda"`` on a ``LocalCUDACluster``).
    engine_options : dict, optional
        More keyword arguments for :class:`Engine` (``chunk``, ``workers``, ``scheme``,
        ``lanes``); they do not change the results, so they are not part of the
        fingerprint. On Dask workers ``workers`` defaults to the host's cores shared
        among the host's worker threads.
    extra_arrays : dict of str to ExtraArray, optional
        Per-instance arrays that ``configure`` returns and the store keeps beside the
        results (the inputs each instance was given, its drawn parameters).
    tag : JSON-serialisable, optional
        A description of what ``configure`` does (its parameters, a version). It is
        part of the fingerprint, so resuming with another tag raises ValueError. The
        function itself cannot be compared; only its name is recorded.
    client : distributed.Client or str, optional
        Run the chunks as Dask tasks on this client's cluster (or on the scheduler at
        this address). Default: one chunk after another in this process, the engine
        using every core (measured faster than a local cluster on one machine:
        ``dhs/engine/SWEEPS.md``).
    verify : bool, default True
        When resuming, read every finished chunk back (checksums included) and compute
        again those that are damaged or missing. False trusts the done markers.
    progress : bool, default True
        Show a progress bar on stderr (chunks done, instances/s, ETA).
    load : bool, default True
        Return the assembled results (:func:`load_sweep`). With False, ``v`` and
        ``spikes`` are None and only the metadata is returned (for sweeps larger than
        memory: open the store with ``xarray.open_zarr``).

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        Invalid arguments; the store holds a sweep with other settings (the message
        names the differences); ``store`` exists and is not a sweep store.
    """
    if not isinstance(model, CellModel):
        raise ValueError(f"model must be a dhs.engine.CellModel, got {type(model).__name__}")
    if isinstance(n_instances, bool) or not isinstance(n_instances, (int, np.integer)):
        raise ValueError(f"n_instances must be a positive integer, got {n_instances!r}")
    if n_instances < 1:
        raise ValueError(f"n_instances must be a positive integer, got {n_instances}")
    if not callable(configure):
        raise ValueError("configure must be a function configure(engine, instance_indices)")
    _positive("chunk_size", chunk_size)
    _positive("memory_budget_bytes", memory_budget_bytes)
    if client is not None and not isinstance(client, str) and not hasattr(client, "submit"):
        raise ValueError(f"client must be a distributed.Client or an address, got {client!r}")
    path = os.fspath(store)
    if "://" in path:
        raise ValueError(f"store must be a directory path (shared by the workers), got {path!r}")
    path = os.path.abspath(path)
    n_instances = int(n_instances)
    engine_options = dict(engine_options or {})
    unknown = sorted(set(engine_options) - set(ENGINE_OPTIONS))
    if unknown:
        raise ValueError(f"engine_options takes {list(ENGINE_OPTIONS)}, not {unknown}")
    options = run_options(
        tstop,
        dt,
        record_nodes,
        record,
        record_every,
        spike_node,
        spike_threshold,
        spike_method,
        max_spikes,
    )
    records = [model.node(r) for r in options.record_nodes]
    spike = None if options.spike_node is None else model.node(options.spike_node)
    options = dataclasses.replace(options, record_nodes=tuple(records), spike_node=spike)
    record_names = tuple(f"{name}@{where}" for name, where in options.record)
    extra = dict(extra_arrays or {})
    _check_names(record_names, extra)
    if options.record:
        Engine(model, 1)._probes(options.record)  # a bad record raises before any work
    try:
        json.dumps(tag)
    except TypeError as error:
        raise ValueError(f"tag must be JSON-serialisable: {error}") from None
    settings = {
        "tstop": float(options.tstop),
        "dt": float(options.dt),
        "n_steps": options.n_steps,
        "record_nodes": records,
        "record": [[name, where] for name, where in options.record],
        "record_every": int(options.record_every),
        "spike_node": spike,
        "spike_threshold": float(options.spike_threshold),
        "spike_method": options.spike_method,
        "max_spikes": options.max_spikes,
        "backend": backend,
        "tag": tag,
    }
    model_hash = _fingerprint_model(model)
    t = _time(options)
    capacity = options.kept_spikes if spike is not None else None
    estimate = estimate_bytes_per_instance(model, options)
    parts = {
        **estimate["parts"],
        "stored_spikes": 0 if capacity is None else 8 * (capacity + 1),
        "extra_arrays": sum(
            int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
            for s in extra.values()
        ),
    }
    per_instance = int(sum(parts.values()))
    existing = read_attributes(path)

    own_client = isinstance(client, str)
    if own_client:
        from distributed import Client

        client = Client(client)
    try:
        workers = _workers_of(client, backend) if client is not None else {}
        size, budget, source = _choose_chunk_size(
            chunk_size,
            memory_budget_bytes,
            workers,
            backend,
            per_instance,
            StoreLayout(n_instances, 1, t, tuple(records), record_names, capacity, extra),
            existing,
        )
        layout = StoreLayout(n_instances, size, t, tuple(records), record_names, capacity, extra)
        identity = _identity(
            {
                "format": FORMAT,
                "model_sha256": model_hash,
                "settings": settings,
                "n_instances": n_instances,
                "chunk_size": size,
                "extra_arrays": {name: spec.describe() for name, spec in extra.items()},
            }
        )
        fingerprint = _fingerprint(identity)
        if existing is None:
            attributes = {
                **identity,
                "fingerprint": fingerprint,
                "n_chunks": layout.n_chunks,
                "n_records": len(records),
                "n_times": int(t.size),
                "spikes": spike is not None,
                "spike_capacity": capacity,
                "records": list(record_names),
                "run_options": dataclasses.asdict(options),
                "model_summary": model.summary(),
                "configure": getattr(configure, "__qualname__", type(configure).__qualname__),
                "memory": {
                    "bytes_per_instance": per_instance,
                    "parts": parts,
                    "chunk_bytes": per_instance * size,
                    "budget_bytes": budget,
                    "budget_source": source,
                },
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "runs": [],
            }
            try:
                create_store(path, layout, attributes, _model_bytes(model))
            except OSError:  # another process created it meanwhile: resume that one
                existing = read_attributes(path)
                if existing is None:
                    raise
        if existing is not None:
            if existing.get("fingerprint") != fingerprint:
                raise ValueError(_difference_message(path, existing, identity))
            remove_stale_files(path)
        todo = _chunks_to_compute(path, layout, verify)
        if client is not None and todo:
            _check_picklable(configure)
        run = {
            "id": uuid.uuid4().hex,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished": None,
            "scheduler": "in-process" if client is None else f"dask {client.scheduler.address}",
            "client": _machine(),
            "workers": [
                {
                    "address": address,
                    "host": r["machine"]["host"],
                    "cores": r["machine"]["cores"],
                    "nthreads": r["nthreads"],
                    "memory_limit": r["memory_limit"],
                    "engine_threads": r["engine_threads"],
                    "task_budget_bytes": r["task_budget_bytes"],
                }
                for address, r in workers.items()
            ],
            "chunks_to_compute": len(todo),
            "chunks_computed": 0,
            "chunks_by_host": {},
        }
        if todo:
            update_attributes(path, lambda a: a.setdefault("runs", []).append(run))
        job = _ChunkJob(
            path,
            fingerprint,
            model_hash,
            layout,
            options,
            configure,
            backend,
            engine_options,
            {address: r["engine_threads"] for address, r in workers.items()},
            model if client is None else None,
        )
        n_chunks = layout.n_chunks
        resumed = n_chunks - len(todo)
        bar = _Progress(n_chunks, n_instances, progress)
        remaining = sum(stop - start for start, stop in map(layout.bounds, todo))
        state = {"chunks": resumed, "instances": n_instances - remaining}
        bar.show(state["chunks"], state["instances"], resumed)

        def done(summary: dict) -> None:
            state["chunks"] += 1
            state["instances"] += summary["instances"]
            bar.computed += summary["instances"]
            run["chunks_computed"] += 1
            hosts = run["chunks_by_host"]
            hosts[summary["host"]] = hosts.get(summary["host"], 0) + 1
            bar.show(state["chunks"], state["instances"], resumed)

        error = None
        try:
            if client is None:
                for c in todo:
                    done(_compute_chunk(job, c))
            else:
                _run_on_client(client, job, todo, done)
        except BaseException as raised:
            error = raised
            raise
        finally:
            bar.close()
            if todo:
                run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                if error is not None:
                    run["error"] = repr(error)
                _record_run(path, run)
    finally:
        if own_client:
            client.close()
    if load:
        return load_sweep(path)
    return SweepResult(t, None, np.array(records, dtype=np.int64), None, read_attributes(path))


def _time(options: RunOptions) -> np.ndarray:
    from .integrate import time_grid

    return time_grid(float(options.dt), options.n_steps)[0][:: int(options.record_every)].copy()


def _identity(identity: dict) -> dict:
    """The identity as it reads back from the store's JSON attributes."""
    from .sweep_store import _json

    return _json(identity)


def _difference_message(path: str, existing: dict, identity: dict) -> str:
    differences = [
        f"{key}: {existing.get(key)!r} there, {identity[key]!r} now"
        for key in ("model_sha256", "n_instances", "chunk_size", "extra_arrays")
        if existing.get(key) != identity[key]
    ]
    old = existing.get("settings", {})
    differences += [
        f"{key}: {old.get(key)!r} there, {value!r} now"
        for key, value in identity["settings"].items()
        if old.get(key) != value
    ]
    return (
        f"{path} holds a sweep with other settings, so it cannot be resumed with these "
        f"({'; '.join(differences) or 'fingerprint differs'}); use another store, or the "
        "same settings to resume it"
    )


def _chunks_to_compute(path: str, layout: StoreLayout, verify: bool) -> list[int]:
    """The chunks without a done marker, and with ``verify`` the damaged finished ones
    (whose markers are cleared)."""
    done = finished_chunks(path)
    todo = [c for c in range(layout.n_chunks) if not done[c]]
    if verify:
        for c in np.flatnonzero(done).tolist():
            if not chunk_is_readable(path, layout, c):
                clear_marker(path, c)
                todo.append(c)
    return sorted(todo)


def _check_picklable(configure: Callable) -> None:
    import cloudpickle

    try:
        cloudpickle.dumps(configure)
    except Exception as error:
        raise ValueError(
            f"configure cannot be sent to Dask workers ({error}); make it a module-level "
            "function, or an instance of a module-level class with __call__"
        ) from error


def _record_run(path: str, run: dict) -> None:
    """Store the finished run's record (replacing the one written at its start)."""

    def replace(attributes: dict) -> None:
        runs = attributes.setdefault("runs", [])
        for k, entry in enumerate(runs):
            if entry.get("id") == run["id"]:
                runs[k] = run
                return
        runs.append(run)

    try:
        update_attributes(path, replace)
    except Exception as error:  # the results are written; only the log entry is lost
        warnings.warn(f"could not record the run in {path}: {error}", RuntimeWarning, stacklevel=3)


def load_sweep(store: str | os.PathLike, *, partial: bool = False) -> SweepResult:
    """Assemble the results of a sweep from its store.

    Parameters
    ----------
    store : str or path-like
        A store written by :func:`sweep`.
    partial : bool, default False
        Also load a sweep that is incomplete or still running: only the chunks whose
        done marker is set count, the others read as NaN (``v``, ``records``) or None
        (``spikes``); ``finished`` says which instances are computed.

    Returns
    -------
    SweepResult
        ``v`` of shape ``(n_instances, n_records, n_times)`` in mV, ``spikes`` (ms) per
        instance, ``records``, ``extra``, and the store's attributes as ``metadata``.
        The whole sweep is held in memory (``xarray.open_zarr`` reads it lazily).

    Raises
    ------
    ValueError
        No sweep there; or (unless ``partial``) the sweep is incomplete: the message
        lists the chunks that are not finished; or finished chunks are damaged. Running
        :func:`sweep` again with the same settings completes or repairs it.
    """
    from .sweep_store import _zarr

    path = os.fspath(store)
    attributes = read_attributes(path)
    if attributes is None:
        raise ValueError(f"{path} holds no sweep")
    group = _zarr().open_group(path, mode="r")
    layout = _layout_of(attributes, group)
    done = finished_chunks(path)
    missing = np.flatnonzero(~done).tolist()
    if missing and not partial:
        shown = ", ".join(str(c) for c in missing[:20]) + (" …" if len(missing) > 20 else "")
        raise ValueError(
            f"the sweep in {path} is incomplete: {len(missing)} of {layout.n_chunks} chunks "
            f"not finished: chunks {shown}; run sweep() again with the same settings to "
            "finish it (or load_sweep(..., partial=True))"
        )
    n, size = layout.n_instances, layout.chunk_size
    finished = np.repeat(done, size)[:n]
    try:
        values = {name: group[name][:] for name in layout.arrays()}
    except Exception as error:
        raise ValueError(_damaged_message(path, layout, done)) from error
    v = values["v"]
    bad = [
        c
        for c in np.flatnonzero(done).tolist()
        if (v.size and np.isnan(v[slice(*layout.bounds(c))]).all())
        or ("spike_count" in values and (values["spike_count"][slice(*layout.bounds(c))] < 0).any())
    ]
    if bad:
        raise ValueError(_damaged_message(path, layout, done))
    v[~finished] = np.nan
    spikes = None
    if layout.spike_capacity is not None:
        times, counts = values["spike_times"], values["spike_count"]
        spikes = [times[i, : counts[i]].copy() if finished[i] else None for i in range(n)]
    records = {name: values[name] for name in layout.record_names}
    for array in records.values():
        array[~finished] = np.nan
    return SweepResult(
        t=layout.time,
        v=v,
        record_nodes=np.array(layout.record_nodes, dtype=np.int64),
        spikes=spikes,
        metadata=attributes,
        records=records,
        extra={name: values[name] for name in layout.extra},
        finished=finished,
    )


def _damaged_message(path: str, layout: StoreLayout, done: np.ndarray) -> str:
    damaged = [c for c in np.flatnonzero(done).tolist() if not chunk_is_readable(path, layout, c)]
    return (
        f"the sweep in {path} has damaged or missing files in finished chunks "
        f"{', '.join(map(str, damaged)) or '(none found on a second read)'}; run sweep() "
        "again with the same settings (verify=True) to compute them again"
    )


def _layout_of(attributes: dict, group) -> StoreLayout:
    """The layout of an existing store, from its attributes."""
    extra = {}
    for name, spec in (attributes.get("extra_arrays") or {}).items():
        fill = spec.get("fill_value")
        extra[name] = ExtraArray(
            shape=tuple(spec["shape"]),
            dtype=spec["dtype"],
            dimensions=tuple(spec["dimensions"]),
            fill_value=None if fill in (None, "NaN") else fill,
            units=spec.get("units", ""),
            description=spec.get("description", ""),
        )
    return StoreLayout(
        n_instances=int(attributes["n_instances"]),
        chunk_size=int(attributes["chunk_size"]),
        time=group["time"][:],
        record_nodes=tuple(attributes["settings"]["record_nodes"]),
        record_names=tuple(attributes.get("records", ())),
        spike_capacity=attributes.get("spike_capacity"),
        extra=extra,
    )

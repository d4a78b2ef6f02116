"""Parameter sweeps: many instances of one model, run in chunks that survive interruption.

:func:`sweep` runs ``n_instances`` instances of a :class:`~dhs.engine.CellModel` in
chunks of ``chunk_size`` instances. Each chunk gets a fresh :class:`~dhs.engine.Engine`,
which the user's ``configure(engine, instance_indices)`` sets up (parameters with
:meth:`Engine.set`, events with :meth:`Engine.set_events`); the chunk is run and its
results are written to ``directory/chunk_NNNNN.npz`` before the next chunk starts. A
killed sweep (Ctrl-C, SIGKILL, a power cut) resumes where it stopped: calling
:func:`sweep` again with the same arguments skips every chunk whose file is present and
readable, and computes the rest. :func:`load_sweep` assembles the results.

Exact resumption
----------------
``configure`` receives the *global* indices of the chunk's instances
(``instance_indices[j]`` is the global index of the engine's local instance ``j``), and
must set up each instance as a function of its global index only: not of the chunk it
falls in, of the order of calls, or of a random generator carried from one call to the
next (derive random numbers per instance, e.g. ``np.random.default_rng([seed, i])``).
Then every instance is the same whichever chunk computes it and whenever, and since the
engine's instances never interact, a resumed sweep, a sweep in other chunk sizes and a
single :meth:`Engine.run` over all instances give identical results, bit for bit.

Files
-----
``sweep.json``
    The manifest: the sweep's settings, the chunk size, the memory estimate and a
    *fingerprint* (SHA-256 of the model's arrays, the run settings, ``n_instances``,
    ``chunk_size``, ``backend`` and ``tag``). Resuming with anything that changes the
    fingerprint raises :class:`ValueError` instead of mixing results.
``chunk_00012.npz``
    Chunk 12: ``v`` (mV, shape ``(n, n_records, n_times)``), ``instances`` (global
    indices), ``spike_times`` (ms, all the chunk's spikes, instance after instance) with
    ``spike_offsets`` (instance ``j``'s spikes are
    ``spike_times[spike_offsets[j]:spike_offsets[j + 1]]``), and the fingerprint.

Every file is written to a temporary name in the same directory, flushed to disk and
then renamed with :func:`os.replace` (atomic), so a file under its final name is always
complete; a chunk file that is truncated or unreadable anyway (a copy gone wrong, a
full disk) is detected on resumption and computed again. One directory holds one sweep,
written by one process at a time.

Memory
------
The chunk size is ``chunk_size`` if given, or the largest that keeps the estimated
memory of one chunk within a budget: ``memory_budget_bytes``, or by default
:data:`RAM_FRACTION` of the available RAM (``psutil`` if installed, else
``os.sysconf``) for the CPU backend and :data:`DEVICE_FRACTION` of the free device
memory for ``backend="cuda"``. :func:`estimate_bytes_per_instance` is the estimate (the
engine's per-instance parameters and state, its recording buffer, the transposed copy
that :class:`RunResult` returns, the spike buffer and the model's events); the manifest
and the result's ``metadata["memory"]`` state it with its parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .integrate import Engine, time_grid
from .model import CellModel
from .options import RunOptions

__all__ = ["SweepResult", "estimate_bytes_per_instance", "load_sweep", "sweep"]

FORMAT = "dhs.engine.sweep/1"
MANIFEST = "sweep.json"
RAM_FRACTION = 0.25  # of the available RAM: the default budget of one CPU chunk
DEVICE_FRACTION = 0.5  # of the free device memory: the default budget of one GPU chunk
EVENT_BYTES = 96  # per event and instance: the engine's event arrays and their sorting
_CHUNK_KEYS = ("v", "instances", "fingerprint")
# State variables per mechanism instance (unknown mechanisms: 4), and parameters the
# engine derives per instance for a run.


@dataclass
class SweepResult:
    """The assembled results of a sweep (what :func:`load_sweep` returns).

    Attributes
    ----------
    t : ndarray, shape (n_times,)
        Times of the samples in ms (NEURON's accumulated t, from 0).
    v : ndarray, shape (n_instances, n_records, n_times) or None
        Membrane potential in mV at ``record_nodes``, instances in global index order
        (None from ``sweep(..., load=False)``).
    record_nodes : ndarray of int64, shape (n_records,)
    spikes : list of ndarray or None
        Spike times in ms per instance (None without ``spike_node``, or when not
        loaded).
    metadata : dict
        The manifest (``sweep.json``): settings, ``chunk_size``, ``n_chunks``,
        ``fingerprint`` and ``memory`` (``bytes_per_instance``, ``parts``,
        ``chunk_bytes``, ``budget_bytes``, ``budget_source``).
    """

    t: np.ndarray
    v: np.ndarray | None
    record_nodes: np.ndarray
    spikes: list | None
    metadata: dict = field(default_factory=dict)


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
    n = model.n
    fields = 0
    terms = 0
    for table in model.mechanisms.values():
        mechanism = table.mechanism
        optional = set(mechanism.translation.optional)
        fields += table.count * sum(1 for f in mechanism.fields if f not in optional)
        if mechanism.has_current:
            terms += 2 * table.count
    ions = sum(5 * table.node.size for table in model.ions.values())
    parameters = 8 * (n + 1)
    state = 8 * (3 * n + fields + terms + ions + n) + 9  # v, rhs, d; fields; v_final; flag
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


# --------------------------------------------------------------------------- files
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


def _chunk_name(c: int) -> str:
    return f"chunk_{c:05d}.npz"


def _atomic_write(path: str, write: Callable) -> None:
    """Write ``path`` through a temporary file in its directory and :func:`os.replace`."""
    directory, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        descriptor = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass


def _read_chunk(path: str, fingerprint: str, start: int, stop: int, spikes: bool, shape):
    """The arrays of a finished chunk, or None if the file is missing or unreadable.

    Raises ValueError when it is readable but belongs to another sweep.
    """
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = _CHUNK_KEYS + (("spike_times", "spike_offsets") if spikes else ())
            arrays = {key: data[key] for key in keys}  # reads and CRC-checks every array
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if str(arrays["fingerprint"]) != fingerprint:
        raise ValueError(
            f"{path} belongs to another sweep (fingerprint {str(arrays['fingerprint'])[:12]}…, "
            f"this sweep {fingerprint[:12]}…); use another directory or delete it"
        )
    n = stop - start
    ok = np.array_equal(arrays["instances"], np.arange(start, stop)) and arrays["v"].shape == (
        n,
        *shape,
    )
    if spikes:
        offsets = arrays["spike_offsets"]
        ok = ok and (
            offsets.shape == (n + 1,)
            and offsets[0] == 0
            and offsets[-1] == arrays["spike_times"].size
            and bool(np.all(np.diff(offsets) >= 0))
        )
    return arrays if ok else None


def _read_manifest(directory: str) -> dict | None:
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as stream:
        manifest = json.load(stream)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    return manifest


def _remove_stale_temporaries(directory: str) -> None:
    for name in os.listdir(directory):
        if name.endswith(".tmp") and (name.startswith(".chunk_") or name.startswith(".sweep.")):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


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


# --------------------------------------------------------------------------- sweep
def sweep(
    model: CellModel,
    n_instances: int,
    configure: Callable,
    directory: str | os.PathLike,
    *,
    tstop: float,
    dt: float = 0.025,
    record_nodes=None,
    record_every: int = 1,
    spike_node=None,
    spike_threshold: float = -20.0,
    spike_method: str = "neuron",
    max_spikes: int | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    backend: str = "cpu",
    engine_options: dict | None = None,
    tag=None,
    progress: bool = True,
    load: bool = True,
) -> SweepResult:
    """Run ``n_instances`` instances in chunks, each written to disk; resume if interrupted.

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
        function of its global index only (module doc): that is what makes a resumed
        or differently chunked sweep identical to an uninterrupted one. Its return value
        is ignored.
    directory : str or path-like
        Where the manifest and the chunk files go (created if needed). Calling
        :func:`sweep` again with the same directory resumes.
    tstop, dt, record_nodes, record_every, spike_node, spike_threshold, spike_method, \
max_spikes
        As :meth:`Engine.run` (times in ms, threshold in mV).
    chunk_size : int, optional
        Instances per chunk. Default: from the memory budget; when resuming, the
        existing sweep's chunk size (an explicit ``chunk_size`` that differs from it
        raises ValueError).
    memory_budget_bytes : int, optional
        Memory for one chunk in bytes, used when ``chunk_size`` is not given. Default:
        :data:`RAM_FRACTION` of the available RAM (CPU) or :data:`DEVICE_FRACTION` of
        the free device memory (``backend="cuda"``).
    backend : str, default "cpu"
        Passed to :class:`Engine`.
    engine_options : dict, optional
        More keyword arguments for :class:`Engine` (``chunk``, ``workers``); they do not
        change the results, so they are not part of the
        fingerprint.
    tag : JSON-serialisable, optional
        A description of what ``configure`` does (its parameters, a version). It is
        part of the fingerprint, so resuming with another tag raises ValueError. The
        function itself cannot be compared; only its name is recorded.
    progress : bool, default True
        Show a progress bar on stderr (chunks done, instances/s, ETA).
    load : bool, default True
        Return the assembled results (:func:`load_sweep`). With False, ``v`` and
        ``spikes`` are None and only the metadata is returned (for sweeps larger than
        memory; read the chunk files one by one).

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        Invalid arguments; the directory holds a sweep with other settings (the message
        names the differences); a chunk file belongs to another sweep.
    """
    if not isinstance(model, CellModel):
        raise ValueError(f"model must be a dhs.engine.CellModel, got {type(model).__name__}")
    if isinstance(n_instances, bool) or not isinstance(n_instances, (int, np.integer)):
        raise ValueError(f"n_instances must be a positive integer, got {n_instances!r}")
    if n_instances < 1:
        raise ValueError(f"n_instances must be a positive integer, got {n_instances}")
    if not callable(configure):
        raise ValueError("configure must be a function configure(engine, instance_indices)")
    for name, value in (("chunk_size", chunk_size), ("memory_budget_bytes", memory_budget_bytes)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    n_instances = int(n_instances)
    directory = os.fspath(directory)
    engine_options = dict(engine_options or {})
    records = [model.node(r) for r in (record_nodes if record_nodes is not None else [])]
    spike = None if spike_node is None else model.node(spike_node)
    # the one checked set of run settings, for the engine and for the memory estimate
    options = RunOptions(
        tstop,
        dt,
        tuple(records),
        (),
        record_every,
        spike,
        spike_threshold,
        spike_method,
        max_spikes,
    )
    tstop, dt, record_every = options.tstop, options.dt, options.record_every
    n_steps = options.n_steps
    n_times = options.n_samples
    settings = {
        "tstop": float(tstop),
        "dt": float(dt),
        "n_steps": n_steps,
        "record_nodes": records,
        "record_every": int(record_every),
        "spike_node": spike,
        "spike_threshold": float(spike_threshold),
        "spike_method": spike_method,
        "max_spikes": None if max_spikes is None else int(max_spikes),
        "backend": backend,
        "tag": tag,
    }
    try:
        json.dumps(tag)
    except TypeError as error:
        raise ValueError(f"tag must be JSON-serialisable: {error}") from None
    model_hash = _fingerprint_model(model)

    estimate = estimate_bytes_per_instance(model, options)
    per_instance = estimate["total"]
    os.makedirs(directory, exist_ok=True)
    existing = _read_manifest(directory)
    if chunk_size is not None:
        size, budget, source = int(chunk_size), None, "chunk_size given"
    else:
        if memory_budget_bytes is not None:
            budget, source = int(memory_budget_bytes), "memory_budget_bytes given"
        else:
            budget, source = _available_memory(backend)
        size = max(1, min(n_instances, budget // per_instance))
        if budget < per_instance:
            warnings.warn(
                f"one instance needs about {per_instance} bytes, more than the budget of "
                f"{budget} bytes; running one instance per chunk",
                RuntimeWarning,
                stacklevel=2,
            )
        if existing is not None and isinstance(existing.get("chunk_size"), int):
            if existing["chunk_size"] != size:
                source += f"; resumed with the existing chunk size {existing['chunk_size']}"
            size = existing["chunk_size"]
    size = min(size, n_instances)
    n_chunks = -(-n_instances // size)
    identity = {
        "format": FORMAT,
        "model_sha256": model_hash,
        "settings": settings,
        "n_instances": n_instances,
        "chunk_size": size,
    }
    fingerprint = _fingerprint(identity)
    manifest = {
        **identity,
        "fingerprint": fingerprint,
        "n_chunks": n_chunks,
        "n_records": len(records),
        "n_times": n_times,
        "spikes": spike is not None,
        "model_summary": model.summary(),
        "configure": getattr(configure, "__qualname__", repr(configure)),
        "memory": {
            "bytes_per_instance": per_instance,
            "parts": estimate["parts"],
            "chunk_bytes": per_instance * size,
            "budget_bytes": budget,
            "budget_source": source,
        },
    }
    if existing is not None:
        if existing.get("fingerprint") != fingerprint:
            differences = [
                f"{key}: {existing.get(key)!r} there, {identity[key]!r} now"
                for key in ("model_sha256", "n_instances", "chunk_size")
                if existing.get(key) != identity[key]
            ]
            old = existing.get("settings", {})
            differences += [
                f"{key}: {old.get(key)!r} there, {value!r} now"
                for key, value in settings.items()
                if old.get(key) != value
            ]
            raise ValueError(
                f"{directory} holds a sweep with other settings, so it cannot be resumed "
                f"with these ({'; '.join(differences) or 'fingerprint differs'}); use another "
                "directory, or the same settings to resume it"
            )
        manifest["memory"] = existing.get("memory", manifest["memory"])
        manifest["created"] = existing.get("created")
    # Finished chunks (this raises, before anything is written, if a chunk file belongs
    # to another sweep).
    shape = (len(records), n_times)
    spikes_on = spike is not None
    todo = []
    for c in range(n_chunks):
        start, stop = c * size, min(n_instances, (c + 1) * size)
        path = os.path.join(directory, _chunk_name(c))
        if _read_chunk(path, fingerprint, start, stop, spikes_on, shape) is None:
            todo.append(c)
    if existing is None:
        manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        _atomic_write(os.path.join(directory, MANIFEST), lambda stream: stream.write(text))
    _remove_stale_temporaries(directory)
    resumed = n_chunks - len(todo)
    done_instances = n_instances - sum(min(n_instances, (c + 1) * size) - c * size for c in todo)
    bar = _Progress(n_chunks, n_instances, progress)
    bar.show(resumed, done_instances, resumed)
    chunks_done = resumed
    try:
        for c in todo:
            start, stop = c * size, min(n_instances, (c + 1) * size)
            indices = np.arange(start, stop, dtype=np.int64)
            indices.flags.writeable = False
            engine = Engine(model, stop - start, backend=backend, **engine_options)
            configure(engine, indices)
            result = engine.run(options)
            arrays = {
                "v": np.ascontiguousarray(result.v),
                "instances": indices,
                "fingerprint": np.array(fingerprint),
            }
            if spikes_on:
                counts = np.array([s.size for s in result.spikes], dtype=np.int64)
                arrays["spike_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
                arrays["spike_times"] = (
                    np.concatenate(result.spikes) if result.spikes else np.zeros(0)
                ).astype(np.float64)
            del engine, result
            _atomic_write(
                os.path.join(directory, _chunk_name(c)),
                lambda stream, arrays=arrays: np.savez(stream, **arrays),
            )
            chunks_done += 1
            done_instances += stop - start
            bar.computed += stop - start
            bar.show(chunks_done, done_instances, resumed)
    finally:
        bar.close()
    if load:
        return load_sweep(directory)
    t = time_grid(float(dt), n_steps)[0][:: int(record_every)].copy()
    return SweepResult(t, None, np.array(records, dtype=np.int64), None, manifest)


def load_sweep(directory: str | os.PathLike) -> SweepResult:
    """Assemble the results of a finished sweep.

    Parameters
    ----------
    directory : str or path-like
        A directory written by :func:`sweep`.

    Returns
    -------
    SweepResult
        ``v`` of shape ``(n_instances, n_records, n_times)`` in mV, ``spikes`` (ms) per
        instance, and the manifest as ``metadata``. The whole sweep is held in memory.

    Raises
    ------
    ValueError
        No manifest; or the sweep is incomplete: the message lists the chunks (and
        their files) that are missing or unreadable. Running :func:`sweep` again with
        the same settings completes it.
    """
    directory = os.fspath(directory)
    manifest = _read_manifest(directory)
    if manifest is None:
        raise ValueError(f"{directory} holds no sweep ({MANIFEST} is missing)")
    n_instances = manifest["n_instances"]
    size = manifest["chunk_size"]
    n_chunks = manifest["n_chunks"]
    fingerprint = manifest["fingerprint"]
    settings = manifest["settings"]
    spikes_on = manifest["spikes"]
    shape = (manifest["n_records"], manifest["n_times"])
    v = np.empty((n_instances, *shape))
    spikes = [None] * n_instances if spikes_on else None
    missing = []
    for c in range(n_chunks):
        start, stop = c * size, min(n_instances, (c + 1) * size)
        arrays = _read_chunk(
            os.path.join(directory, _chunk_name(c)), fingerprint, start, stop, spikes_on, shape
        )
        if arrays is None:
            missing.append(c)
            continue
        v[start:stop] = arrays["v"]
        if spikes_on:
            offsets, times = arrays["spike_offsets"], arrays["spike_times"]
            for j in range(stop - start):
                spikes[start + j] = times[offsets[j] : offsets[j + 1]].copy()
    if missing:
        shown = ", ".join(str(c) for c in missing[:20]) + (" …" if len(missing) > 20 else "")
        files = ", ".join(_chunk_name(c) for c in missing[:5]) + (", …" if len(missing) > 5 else "")
        raise ValueError(
            f"the sweep in {directory} is incomplete: {len(missing)} of {n_chunks} chunks "
            f"missing or unreadable: chunks {shown} ({files}); run sweep() again with the "
            "same settings to finish it"
        )
    t = time_grid(settings["dt"], settings["n_steps"])[0][:: settings["record_every"]].copy()
    return SweepResult(
        t=t,
        v=v,
        record_nodes=np.array(settings["record_nodes"], dtype=np.int64),
        spikes=spikes,
        metadata=manifest,
    )

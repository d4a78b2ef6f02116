"""NEURON's fixed step (``secondorder = 0``) for many instances of one cell model.

The time loop is generated for the model's mechanisms (:mod:`dhs.engine.kernel`);
this module owns the storage and the instances' parameters and events, and runs the
generated loop on the CPU (chunks of instances, one Python thread per worker, the
kernel releasing the GIL) or on CUDA (:mod:`dhs.engine.cuda`). The order of the
phases and every sum follow NEURON's (``dhs/engine/DESIGN.md``), so fp64 results on
the CPU equal NEURON's bit for bit.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .. import checks
from ..backends import resolve_backend
from . import kernel
from .inputs import poisson_times
from .model import CellModel
from .options import RunOptions

__all__ = ["Engine", "RunResult", "chunk_plan", "time_grid"]

CACHE_LINE = 64  # bytes


def time_grid(dt: float, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """NEURON's times: ``t_grid[k]`` after k steps and ``t_mid[k]`` in the middle of step k.

    NEURON advances ``t += 0.5 * dt`` twice per step, so ``t_grid`` carries its
    accumulated round-off (``t_grid[800]`` is not exactly 20 for dt = 0.025); the
    engine uses the very same values.
    """
    t_grid = np.empty(n_steps + 1)
    t_mid = np.empty(n_steps)
    t = 0.0
    half = 0.5 * dt
    t_grid[0] = t
    for k in range(n_steps):
        t = t + half
        t_mid[k] = t
        t = t + half
        t_grid[k + 1] = t
    return t_grid, t_mid


@dataclass
class RunResult:
    """What :meth:`Engine.run` returns.

    Attributes
    ----------
    t : ndarray, shape (n_times,)
        Times of the samples in ms (NEURON's accumulated t, starting at 0).
    v : ndarray, shape (n_instances, n_records, n_times)
        Membrane potential in mV at ``record_nodes``.
    record_nodes : ndarray of int64, shape (n_records,)
    spikes : list of ndarray or None
        Spike times in ms per instance (None without ``spike_node``).
    v_final : ndarray, shape (n_instances, n_nodes)
        Every node's potential in mV at the end of the run.
    dt : float
    n_steps : int
    records : dict of str to ndarray, shape (n_instances, n_times)
        The variables of ``record``, keyed ``"name@where"`` (``"cai@soma(0.5)"``).
    """

    t: np.ndarray
    v: np.ndarray
    record_nodes: np.ndarray
    spikes: list | None
    v_final: np.ndarray
    dt: float
    n_steps: int
    records: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _PreparedRun:
    """A run's kernel arguments (:meth:`Engine._prepare`)."""

    layout: kernel.Layout
    head: dict
    arrays: dict
    starts: np.ndarray
    bounds: list[int]
    width: int
    record_nodes: np.ndarray
    spike_node: int


def _aligned_empty(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data start on a cache line."""
    size = math.prod(shape)
    itemsize = np.dtype(dtype).itemsize
    buffer = np.empty(size + CACHE_LINE // itemsize, dtype)
    offset = (-buffer.ctypes.data % CACHE_LINE) // itemsize
    return buffer[offset : offset + size].reshape(shape)


def chunk_plan(n_instances: int, width: int, workers: int) -> tuple[np.ndarray, list[int]]:
    """How the CPU engine splits the instances into chunks and the chunks into workers.

    The instances are split into ``workers`` contiguous groups of equal size (within 1),
    and each group into chunks of ``width`` instances and one narrower last chunk, so
    every worker gets the same work.

    Returns
    -------
    starts : ndarray of int64, shape (n_chunks + 1,)
        Chunk c holds instances ``starts[c] .. starts[c + 1] - 1``.
    bounds : list of int, length ``workers + 1``
        Worker w runs chunks ``bounds[w] .. bounds[w + 1] - 1``.
    """
    starts = [0]
    bounds = [0]
    for w in range(workers):
        end = (w + 1) * n_instances // workers
        while starts[-1] < end:
            starts.append(min(end, starts[-1] + width))
        bounds.append(len(starts) - 1)
    return np.array(starts, dtype=np.int64), bounds


def _chunk_major(values: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``(..., N)`` -> ``(n_chunks, ..., width)``: chunk c holds instances ``starts[c] ..``
    in its first columns; the columns past them repeat its last instance (finite
    numbers, never read)."""
    values = np.asarray(values, dtype=np.float64)
    n_chunks = starts.size - 1
    out = _aligned_empty((n_chunks, *values.shape[:-1], width))
    for c in range(n_chunks):
        start, stop = starts[c], starts[c + 1]
        out[c, ..., : stop - start] = values[..., start:stop]
        out[c, ..., stop - start :] = values[..., stop - 1 : stop]
    return out


def _slots(starts: np.ndarray, width: int) -> np.ndarray:
    """Instance q's row in a chunk-major array viewed as ``(n_chunks * width, ...)``."""
    counts = np.diff(starts)
    chunk = np.repeat(np.arange(counts.size), counts)
    return chunk * width + (np.arange(starts[-1]) - starts[chunk])


def _default_workers() -> int:
    """CPU threads for a run: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _ion_variable(name: str, ions) -> tuple[str, str] | None:
    """``(ion, field)`` of an NMODL ion variable name (``ena``, ``cai``, ``ica``)."""
    for ion in ions:
        for field_name, candidate in (
            ("e", f"e{ion}"),
            ("ci", f"{ion}i"),
            ("co", f"{ion}o"),
            ("i", f"i{ion}"),
        ):
            if name == candidate:
                return ion, field_name
    return None


class Engine:
    """Run ``n_instances`` copies of a :class:`CellModel` with NEURON's fixed step.

    Parameters
    ----------
    model : CellModel
    n_instances : int, default 1
    backend : {"cpu", "auto", "cuda"}
        ``"cuda"``: the whole run on an NVIDIA GPU; ``"auto"``
        (:func:`dhs.backends.resolve_backend`): ``"cuda"`` when a real GPU is present,
        else ``"cpu"``. :attr:`backend` says which one runs.
    chunk : int, default 16
        Instances advanced together by one CPU thread (the inner, vectorised loop).
        Results do not depend on it.
    workers : int, optional
        CPU threads for the run (default: the cores this process may use).

    Notes
    -----
    :meth:`set` takes every parameter of every mechanism (``"pas.g"``,
    ``"NaTa_t.gNaTa_tbar"``, ``"IClamp.amp"``), the ions' initial values (``"ena"``,
    ``"cai"``, ...), ``"cm"`` and ``"v_init"``, per instance, and for point processes
    per object (``target=``). :meth:`set_events` sets each synapse's incoming events.
    GLOBALs are one value per model (``model.mechanisms[name].globals``).
    """

    def __init__(
        self,
        model: CellModel,
        n_instances: int = 1,
        backend: str = "cpu",
        *,
        chunk: int = 16,
        workers: int | None = None,
    ):
        checks.instance_of("model", model, CellModel, "a dhs.engine.CellModel")
        n_instances = checks.positive_int("n_instances", n_instances)
        chunk = checks.positive_int("chunk", chunk)
        workers = checks.optional_positive_int("workers", workers)
        checks.one_of("backend", backend, ("cpu", "auto", "cuda"))
        backend = resolve_backend(backend)
        self.model = model
        self.n_instances = int(n_instances)
        self.backend = backend
        self.chunk = int(chunk)
        self.workers = None if workers is None else int(workers)
        n = self.n_instances
        self._values: dict[str, np.ndarray] = {}
        for name, table in model.mechanisms.items():
            for p, values in table.params.items():
                self._values[f"{name}.{p}"] = np.repeat(values[:, None], n, axis=1)
        for ion, table in model.ions.items():
            for field_name, label in (("e", f"e{ion}"), ("ci", f"{ion}i"), ("co", f"{ion}o")):
                self._values[label] = np.repeat(getattr(table, field_name)[:, None], n, axis=1)
        self._values["cm"] = np.repeat(model.cm[:, None], n, axis=1)
        self._values["v_init"] = np.full(n, model.v_init)
        self._membrane = model.cm > 0
        self._receivers = [
            name for name, t in model.mechanisms.items() if t.mechanism.receives_events
        ]
        self._shared_events: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._instance_events: dict[tuple[str, int], dict[int, tuple]] = {}
        self._bulk_events: list[tuple] = []
        self._poisson: list[tuple] = []
        for kind in self._receivers:
            events = model.events[kind]
            for s in range(model.mechanisms[kind].count):
                self._shared_events[(kind, s)] = events.of(s)

    # ----------------------------------------------------------------- parameters
    @property
    def parameter_names(self) -> list[str]:
        """Every name :meth:`set` and :meth:`get` accept."""
        return list(self._values)

    def _resolve(self, name: str) -> str:
        if name.endswith(".delay") and name not in self._values:
            name = name.removesuffix(".delay") + ".del"  # NEURON's Python name of ``del``
        if name not in self._values:
            close = [known for known in self._values if known.split(".")[-1] == name.split(".")[-1]]
            hint = f"; did you mean {close}" if close else ""
            raise ValueError(f"unknown parameter {name!r}{hint}; known: {self.parameter_names}")
        return name

    def _rows(self, name: str, target) -> np.ndarray | None:
        """The rows of ``name``'s table that ``target`` picks (None: all)."""
        if target is None:
            return None
        mechanism = name.split(".", 1)[0]
        table = self.model.mechanisms.get(mechanism)
        if table is None or not table.mechanism.is_point_process:
            raise ValueError(f"{name}: target= picks point processes; {mechanism!r} is not one")
        picks = target if isinstance(target, (list, tuple, np.ndarray)) else [target]
        rows = []
        for pick in picks:
            if isinstance(pick, (int, np.integer)) and not isinstance(pick, bool):
                row = int(pick)
                if not 0 <= row < table.count:
                    raise ValueError(f"{name}: target {row} is outside 0..{table.count - 1}")
            else:
                label = str(pick)  # a NEURON object prints as its hoc name, "IClamp[1]"
                kind, row = self.model.point_process(label)
                if kind != mechanism:
                    raise ValueError(f"{name}: target {label!r} is a {kind}, not a {mechanism}")
            rows.append(row)
        return np.array(rows, dtype=np.int64)

    def get(self, name: str) -> np.ndarray:
        """A copy of a parameter: ``(n_instances, m)`` (m mechanism instances, ion nodes,
        or nodes for ``"cm"``), or ``(n_instances,)`` for ``"v_init"``."""
        return self._values[self._resolve(name)].T.copy()

    def set(self, name: str, values, target=None) -> None:
        """Set a parameter per instance.

        Parameters
        ----------
        name : str
            ``"<mechanism>.<parameter>"`` (units of its ``.mod`` file), an ion's initial
            value (``"ena"`` mV, ``"cai"`` mM, ...), ``"cm"`` (µF/cm²) or ``"v_init"``
            (mV).
        values : float or array_like
            A scalar (all instances, all locations); ``(n_instances,)`` (one value per
            instance, at every location); ``(n_instances, n_nodes)`` per node for a
            density mechanism, an ion or ``"cm"`` (nodes without it are ignored);
            ``(n_instances, m)`` per point process (or per picked target).
        target : int, str, NEURON point process, or a sequence of them, optional
            Only these point processes: rows of the mechanism's table, labels such as
            ``"IClamp[1]"``, or the NEURON objects themselves (matched by hoc name).
            Without it every instance of the mechanism is set.
        """
        name = self._resolve(name)
        store = self._values[name]
        n = self.n_instances
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: values must be finite")
        if name == "v_init":
            if target is not None:
                raise ValueError("v_init takes no target")
            if values.shape not in ((), (n,)):
                raise ValueError(f"v_init: values must be a scalar or ({n},), got {values.shape}")
            store[:] = values
            return
        rows = self._rows(name, target)
        m = store.shape[0] if rows is None else rows.size
        if values.ndim == 0:
            new = np.broadcast_to(values, (m, n))
        elif values.shape == (n,):
            new = np.broadcast_to(values[None, :], (m, n))
        elif values.ndim == 2 and values.shape[0] == n and values.shape[1] == m:
            new = values.T
        elif (
            values.ndim == 2
            and values.shape[0] == n
            and values.shape[1] == self.model.n
            and rows is None
        ):
            new = values[:, self._nodes_of(name)].T
        else:
            raise ValueError(
                f"{name}: values of shape {values.shape} do not fit {n} instances "
                f"(a scalar, ({n},), ({n}, {m}) or ({n}, n_nodes))"
            )
        if rows is not None:
            store[rows] = new
        elif name == "cm":
            store[self._membrane] = new[self._membrane]
        else:
            store[:] = new

    def _nodes_of(self, name: str) -> np.ndarray:
        if name == "cm":
            return np.arange(self.model.n)
        variable = _ion_variable(name, self.model.ions)
        if variable is not None:
            return self.model.ions[variable[0]].node
        table = self.model.mechanisms[name.split(".", 1)[0]]
        if table.mechanism.is_point_process:
            raise ValueError(
                f"{name}: a point process takes ({self.n_instances}, {table.count}) values"
            )
        return table.node

    # ----------------------------------------------------------------- events
    def _synapse_key(self, kind: str, synapse: int) -> tuple[str, int]:
        if kind not in self._receivers:
            raise ValueError(f"only {self._receivers} receive events, not {kind!r}")
        count = self.model.mechanisms[kind].count
        if isinstance(synapse, str):
            found, synapse = self.model.point_process(synapse)
            if found != kind:
                raise ValueError(f"{synapse!r} is a {found}, not a {kind}")
        if not 0 <= synapse < count:
            raise ValueError(f"{kind} {synapse} does not exist (the model has {count})")
        return kind, int(synapse)

    def _weights(self, kind: str, weights, shape: tuple[int, ...]) -> np.ndarray:
        n_arguments = max(1, len(self.model.mechanisms[kind].mechanism.net_receive_arguments))
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim >= 1 and weights.shape[-1] == n_arguments and n_arguments > 1:
            full = np.broadcast_to(weights, (*shape, n_arguments)).copy()
        else:
            full = np.zeros((*shape, n_arguments))
            full[..., 0] = np.broadcast_to(weights, shape)
        return full

    def set_events(self, kind: str, synapse, times, weights, instances=None) -> None:
        """Replace the incoming events of one synapse.

        Parameters
        ----------
        kind : str
            A point process with a NET_RECEIVE block.
        synapse : int or str
            Its row in the model's table, or its label (``"ExpSyn[3]"``).
        times : array_like
            Arrival times in ms.
        weights : float or array_like
            ``NetCon.weight[0]`` per time or one for all; ``(len(times), n_arguments)``
            for a NET_RECEIVE with several arguments.
        instances : int or sequence of int, optional
            The instances that get these events; default all (which also drops earlier
            per-instance settings of this synapse).
        """
        key = self._synapse_key(kind, synapse)
        times = np.atleast_1d(np.asarray(times, dtype=np.float64)).ravel()
        weights = self._weights(kind, weights, times.shape)
        if not (np.isfinite(times).all() and np.isfinite(weights).all()):
            raise ValueError("event times and weights must be finite")
        order = np.argsort(times, kind="stable")
        pair = (times[order], weights[order])
        if instances is None:
            self._shared_events[key] = pair
            self._instance_events.pop(key, None)
            return
        chosen = np.atleast_1d(np.asarray(instances, dtype=np.int64))
        if chosen.size and (chosen.min() < 0 or chosen.max() >= self.n_instances):
            raise ValueError(f"instances must lie in 0..{self.n_instances - 1}")
        per = self._instance_events.setdefault(key, {})
        for instance in chosen.tolist():
            per[instance] = pair

    def events(self, kind: str, synapse, instance: int = 0):
        """``(times, weights)`` set for one synapse in one instance by :meth:`set_events`."""
        key = self._synapse_key(kind, synapse)
        return self._instance_events.get(key, {}).get(instance, self._shared_events[key])

    def _synapse_rows(self, kind: str, synapses) -> np.ndarray:
        if kind not in self._receivers:
            raise ValueError(f"only {self._receivers} receive events, not {kind!r}")
        rows = np.atleast_1d(np.asarray(synapses))
        if rows.dtype.kind not in "iu":
            raise ValueError(f"synapses must be integer rows of the {kind} table")
        count = self.model.mechanisms[kind].count
        bad = rows[(rows < 0) | (rows >= count)]
        if bad.size:
            raise ValueError(f"{kind} {int(bad[0])} does not exist (the model has {count})")
        return rows.astype(np.int64).ravel()

    def add_events(self, kind: str, synapses, instances, times, weights) -> None:
        """Add events in bulk, on top of those of :meth:`set_events`: event j reaches
        synapse ``synapses[j]`` of instance ``instances[j]`` at ``times[j]`` ms with
        weight ``weights[j]`` (all broadcast together)."""
        synapses, instances, times, weights = np.broadcast_arrays(
            np.asarray(synapses),
            np.asarray(instances),
            np.asarray(times, dtype=np.float64),
            np.asarray(weights, dtype=np.float64),
        )
        rows = self._synapse_rows(kind, synapses)
        columns = np.asarray(instances).ravel()
        if columns.dtype.kind not in "iu":
            raise ValueError("instances must be integers")
        if columns.size and (columns.min() < 0 or columns.max() >= self.n_instances):
            raise ValueError(f"instances must lie in 0..{self.n_instances - 1}")
        times = times.ravel().copy()
        weights = self._weights(kind, weights.ravel(), times.shape)
        if not (np.isfinite(times).all() and np.isfinite(weights).all()):
            raise ValueError("event times and weights must be finite")
        if rows.size:
            self._bulk_events.append((columns.astype(np.int64), kind, rows, times, weights))

    def add_poisson(
        self,
        kind: str,
        synapses,
        rate_hz: float,
        weight: float,
        *,
        seed: int,
        start: float = 0.0,
        stop: float | None = None,
        instance_ids=None,
    ) -> None:
        """Seeded Poisson background input on ``synapses``, different in every instance.

        Instance q gets :func:`dhs.engine.inputs.poisson_times` ``(rate_hz, start, stop,
        seed=seed, instance=instance_ids[q], n_synapses=len(synapses))``, train s on
        ``synapses[s]``, so NEURON can be given the same times for any single trial.
        ``stop`` defaults to the run's ``tstop``; ``instance_ids`` to ``0 ..
        n_instances - 1`` (a sweep passes its global indices).
        """
        rows = self._synapse_rows(kind, synapses)
        if instance_ids is None:
            instance_ids = np.arange(self.n_instances)
        instance_ids = np.asarray(instance_ids)
        if instance_ids.shape != (self.n_instances,) or instance_ids.dtype.kind not in "iu":
            raise ValueError(f"instance_ids must be {self.n_instances} integers")
        if instance_ids.size and instance_ids.min() < 0:
            raise ValueError("instance_ids must be non-negative")
        poisson_times(
            rate_hz, start, start if stop is None else stop, seed=seed, instance=0, n_synapses=0
        )
        if not math.isfinite(weight):
            raise ValueError(f"weight must be finite, got {weight!r}")
        if rows.size:
            self._poisson.append(
                (
                    kind,
                    rows,
                    float(rate_hz),
                    float(weight),
                    int(seed),
                    float(start),
                    None if stop is None else float(stop),
                    instance_ids.astype(np.int64),
                )
            )

    def _event_arrays(
        self, t_mid: np.ndarray, groups: np.ndarray, tstop: float, kinds: dict[str, int]
    ) -> dict[str, np.ndarray]:
        """The events sorted by (group, step, time); group g owns ``ptr[g]:ptr[g + 1]``."""
        n = self.n_instances
        n_weights = max(
            [1]
            + [
                max(1, len(self.model.mechanisms[k].mechanism.net_receive_arguments))
                for k in self._receivers
            ]
        )
        parts = []  # (column, kind, row, time, weight)

        def add(column, kind, row, time, weight):
            padded = np.zeros((time.size, n_weights))
            padded[:, : weight.shape[1]] = weight
            parts.append((column, kinds[kind], row, time, padded))

        for (kind, s), (times, weights) in self._shared_events.items():
            per = self._instance_events.get((kind, s), {})
            plain = np.setdiff1d(np.arange(n), np.fromiter(per, np.int64, len(per)))
            if times.size and plain.size:
                column = np.repeat(plain, times.size)
                add(
                    column,
                    kind,
                    np.full(column.size, s),
                    np.tile(times, plain.size),
                    np.tile(weights, (plain.size, 1)),
                )
            for instance, (t_i, w_i) in per.items():
                if t_i.size:
                    add(np.full(t_i.size, instance), kind, np.full(t_i.size, s), t_i, w_i)
        for column, kind, rows, times, weights in self._bulk_events:
            add(column, kind, rows, times, weights)
        for kind, rows, rate, weight, seed, start, stop, ids in self._poisson:
            stop = tstop if stop is None else stop
            for q in range(n):
                trains = poisson_times(
                    rate,
                    start,
                    max(start, stop),
                    seed=seed,
                    instance=int(ids[q]),
                    n_synapses=rows.size,
                )
                time = np.concatenate(trains)
                add(
                    np.full(time.size, q),
                    kind,
                    np.repeat(rows, [t.size for t in trains]),
                    time,
                    np.full((time.size, 1), weight),
                )
        if parts:
            column = np.concatenate([p[0] for p in parts]).astype(np.int64)
            kind = np.concatenate([np.full(p[0].size, p[1], np.int64) for p in parts])
            row = np.concatenate([p[2] for p in parts]).astype(np.int64)
            time = np.concatenate([p[3] for p in parts])
            weight = np.concatenate([p[4] for p in parts])
        else:
            column = row = kind = np.zeros(0, np.int64)
            time = np.zeros(0)
            weight = np.zeros((0, n_weights))
        # Delivered before step k: the first k with t_mid[k] >= time.
        step = np.searchsorted(t_mid, time, side="left").astype(np.int64)
        keep = step < t_mid.size
        column, kind, row, time, weight, step = (
            x[keep] for x in (column, kind, row, time, weight, step)
        )
        group = np.searchsorted(groups, column, side="right") - 1
        order = np.lexsort((time, step, group))
        column, kind, row, time, weight, step, group = (
            x[order] for x in (column, kind, row, time, weight, step, group)
        )
        ptr = np.searchsorted(group, np.arange(groups.size), side="left").astype(np.int64)
        return {
            "ev_ptr": ptr,
            "ev_step": step,
            "ev_column": column,
            "ev_kind": kind,
            "ev_row": row,
            "ev_time": time,
            "ev_weight": np.ascontiguousarray(weight),
        }

    # ----------------------------------------------------------------- recording
    def _probes(self, records) -> tuple[list[tuple[int, int, int]], dict[str, set[str]]]:
        """(kind, field, row) of each recorded variable, and the optional fields the
        recordings need stored."""
        model = self.model
        ions = list(model.ions)
        names = list(model.mechanisms)
        probes = []
        extra: dict[str, set[str]] = {}
        for name, where in records:
            variable = _ion_variable(name, ions)
            if variable is not None:
                ion, field_name = variable
                node = model.node(where)
                rows = np.flatnonzero(model.ions[ion].node == node)
                if not rows.size:
                    raise ValueError(f"record {name}@{where}: the ion {ion} is not at that node")
                probes.append(
                    (1 + ions.index(ion), kernel.ION_FIELDS.index(field_name), int(rows[0]))
                )
                continue
            if "." not in name:
                raise ValueError(
                    f"record {name!r}: expected an ion variable (ena, cai, ica, ...) "
                    "or '<mechanism>.<variable>'"
                )
            mechanism_name, variable_name = name.split(".", 1)
            if mechanism_name not in model.mechanisms:
                raise ValueError(f"record {name!r}: the model has no mechanism {mechanism_name!r}")
            table = model.mechanisms[mechanism_name]
            mechanism = table.mechanism
            if variable_name not in mechanism.fields:
                raise ValueError(
                    f"record {name!r}: {mechanism_name} has no variable "
                    f"{variable_name!r}; it has {list(mechanism.fields)}"
                )
            if mechanism.is_point_process:
                if isinstance(where, (int, np.integer)):
                    row = int(where)
                else:
                    found, row = model.point_process(str(where))
                    if found != mechanism_name:
                        raise ValueError(f"record {name}@{where}: {where} is a {found}")
                if not 0 <= row < table.count:
                    raise ValueError(f"record {name}@{where}: no such {mechanism_name}")
            else:
                node = model.node(where)
                rows = np.flatnonzero(table.node == node)
                if not rows.size:
                    raise ValueError(f"record {name}@{where}: {mechanism_name} is not at that node")
                row = int(rows[0])
            extra.setdefault(mechanism_name, set()).add(variable_name)
            probes.append((1 + len(ions) + names.index(mechanism_name), -1, row))
        return probes, extra

    def layout(self, extra: dict[str, set[str]] | None = None) -> kernel.Layout:
        """The kernel layout of this model (with ``extra`` optional fields stored)."""
        extra = extra or {}
        mechanisms = tuple(t.mechanism for t in self.model.mechanisms.values())
        stored = []
        for mechanism in mechanisms:
            optional = set(mechanism.translation.optional)
            wanted = extra.get(mechanism.name, set())
            stored.append(tuple(f for f in mechanism.fields if f not in optional or f in wanted))
        return kernel.Layout(mechanisms, tuple(self.model.ions), tuple(stored))

    # ----------------------------------------------------------------- running
    def run(
        self,
        tstop: float | RunOptions,
        dt: float = 0.025,
        record_nodes=None,
        record_every: int = 1,
        spike_node=None,
        spike_threshold: float = -20.0,
        *,
        spike_method: str = "neuron",
        max_spikes: int | None = None,
        record=(),
    ) -> RunResult:
        """Initialise (``finitialize(v_init)``) and run to ``tstop``.

        Parameters
        ----------
        tstop : float or RunOptions
            End time in ms, or all the settings at once (the other arguments are then
            ignored). The others are those of :class:`~dhs.engine.options.RunOptions`.

        Returns
        -------
        RunResult
        """
        if isinstance(tstop, RunOptions):
            options = tstop
        else:
            options = RunOptions(
                tstop,
                dt,
                () if record_nodes is None else tuple(record_nodes),
                tuple(record),
                record_every,
                spike_node,
                spike_threshold,
                spike_method,
                max_spikes,
            )
        prepared = self._prepare(options)
        layout, head, arrays = prepared.layout, prepared.head, prepared.arrays
        starts, bounds, width = prepared.starts, prepared.bounds, prepared.width
        n_instances, n_nodes = self.n_instances, self.model.n
        record_node_index, spike = prepared.record_nodes, prepared.spike_node
        if self.backend == "cuda":
            from .cuda import run_cuda

            run_cuda(layout, head, arrays, n_instances)
        else:
            module = kernel.load(layout)
            values = [head[name] for name in kernel.DRIVER_ARGUMENTS] + [
                arrays[name] for name in kernel.argument_names(layout)
            ]
            if len(bounds) == 2:
                module.run_chunks(0, starts.size - 1, *values)
            else:
                with ThreadPoolExecutor(len(bounds) - 1) as pool:
                    jobs = [
                        pool.submit(module.run_chunks, bounds[w], bounds[w + 1], *values)
                        for w in range(len(bounds) - 1)
                    ]
                    for job in jobs:
                        job.result()
        spike_n, spike_t = head["spike_n"], head["spike_t"]
        spikes = None
        if spike >= 0:
            if np.any(spike_n > spike_t.shape[1]):
                warnings.warn(
                    f"more than max_spikes={spike_t.shape[1]} spikes in some instances; "
                    "the later ones are not kept",
                    RuntimeWarning,
                    stacklevel=2,
                )
            spikes = [
                spike_t[q, : min(int(spike_n[q]), spike_t.shape[1])].copy()
                for q in range(n_instances)
            ]
        recorded = head["rec"]
        n_v = record_node_index.size
        v_final = arrays["v"].transpose(0, 2, 1).reshape(-1, n_nodes)[_slots(starts, width)]
        return RunResult(
            t=head["t_grid"][:: options.record_every].copy(),
            v=np.ascontiguousarray(recorded[:, :n_v].transpose(2, 1, 0)),
            record_nodes=record_node_index,
            spikes=spikes,
            v_final=v_final,
            dt=options.dt,
            n_steps=options.n_steps,
            records={
                f"{name}@{where}": np.ascontiguousarray(recorded[:, n_v + r].T)
                for r, (name, where) in enumerate(options.record)
            },
        )

    def _prepare(self, options: RunOptions) -> _PreparedRun:
        """Everything a run's kernel takes: the layout, the driver's arrays and the
        model's, chunk-major."""
        model = self.model
        n_instances = self.n_instances
        n_steps = options.n_steps
        record_node_index = np.array([model.node(r) for r in options.record_nodes], dtype=np.int64)
        probes, extra = self._probes(options.record)
        layout = self.layout(extra)
        for index, (name, _where) in enumerate(options.record):
            kind, field_index, row = probes[index]
            if field_index < 0:
                k = kind - 1 - len(model.ions)
                probes[index] = (kind, layout.stored[k].index(name.split(".", 1)[1]), row)
        probes = [(0, 0, int(node)) for node in record_node_index] + probes
        spike = -1 if options.spike_node is None else model.node(options.spike_node)
        t_grid, t_mid = time_grid(options.dt, n_steps)

        if self.backend == "cuda":
            width = n_instances
            starts, bounds = np.array([0, n_instances], dtype=np.int64), [0, 1]
            groups = np.arange(n_instances + 1, dtype=np.int64)  # events per instance
        else:
            width = self.chunk
            workers = min(self.workers or _default_workers(), n_instances)
            starts, bounds = chunk_plan(n_instances, width, workers)
            groups = starts
        arrays = self._arrays(layout, starts, width, options)
        kinds = {name: k for k, name in enumerate(model.mechanisms)}
        head = {
            "starts": starts,
            "n_steps": n_steps,
            "t_grid": t_grid,
            "t_mid": t_mid,
            "cfac": 0.001 * (1.0 / options.dt),
            **self._event_arrays(t_mid, groups, n_steps * options.dt, kinds),
            "rec_kind": np.array([p[0] for p in probes], np.int64),
            "rec_field": np.array([p[1] for p in probes], np.int64),
            "rec_row": np.array([p[2] for p in probes], np.int64),
            "rec_every": options.record_every,
            "rec": np.zeros((options.n_samples, len(probes), n_instances)),
            "spike_node": spike,
            "threshold": float(options.spike_threshold),
            "interpolate": options.spike_method == "interpolate",
            "spike_t": np.zeros((n_instances, max(options.kept_spikes, 0))),
            "spike_n": np.zeros(n_instances, np.int64),
            "spike_flag": np.zeros((starts.size - 1, width), np.uint8),
            "spike_v": np.zeros((starts.size - 1, width)),
        }
        return _PreparedRun(layout, head, arrays, starts, bounds, width, record_node_index, spike)

    def cuda_ptx(
        self, options: RunOptions, cc: tuple[int, int] = (9, 0), *, contract: bool = False
    ) -> str:
        """PTX of this model's CUDA kernel for a run with ``options``, FMA contraction
        off as the engine runs it (unless ``contract``); needs the CUDA compiler
        libraries but no GPU."""
        from .cuda import compile_ptx

        prepared = self._prepare(options)
        return compile_ptx(prepared.layout, prepared.head, prepared.arrays, cc, contract=contract)

    def _arrays(
        self, layout: kernel.Layout, starts: np.ndarray, width: int, options: RunOptions
    ) -> dict[str, np.ndarray]:
        """Every array the generated kernel takes, chunk-major."""
        model = self.model
        n_chunks = starts.size - 1
        values = self._values
        arrays: dict[str, np.ndarray] = {
            "parent": model.parent,
            "a": model.a,
            "b": model.b,
            "diam": model.diam,
            "area": model.area,
            "cm": _chunk_major(values["cm"], starts, width),
            "v_init": _chunk_major(values["v_init"], starts, width),
            "scalars": np.array([options.dt, model.celsius]),
        }
        for name in ("v", "rhs", "d"):
            arrays[name] = _aligned_empty((n_chunks, model.n, width))
        for s, (ion, table) in enumerate(model.ions.items()):
            store = np.zeros((len(kernel.ION_FIELDS), table.node.size, self.n_instances))
            store[0] = values[f"e{ion}"]
            store[1] = values[f"{ion}i"]
            store[2] = values[f"{ion}o"]
            arrays[f"ion{s}"] = _chunk_major(store, starts, width)
            arrays[f"ion{s}_node"] = table.node
            arrays[f"ion{s}_style"] = table.style
            arrays[f"ion{s}_constants"] = np.array([table.ci0, table.co0, table.valence])
        for k, (name, table) in enumerate(model.mechanisms.items()):
            mechanism = layout.mechanisms[k]
            stored = layout.stored[k]
            store = np.zeros((len(stored), table.count, self.n_instances))
            for f, field_name in enumerate(stored):
                if field_name in table.params:
                    store[f] = values[f"{name}.{field_name}"]
            arrays[f"m{k}"] = (
                _chunk_major(store, starts, width)
                if table.count
                else np.zeros((n_chunks, len(stored), 0, width))
            )
            arrays[f"m{k}_node"] = table.node
            arrays[f"m{k}_globals"] = np.array(
                [table.globals[g] for g in mechanism.globals] or [0.0]
            )
            if mechanism.is_point_process:
                arrays[f"m{k}_mfact"] = 1.0e2 / model.area[table.node]
            for use in mechanism.ions:
                ion_nodes = model.ions[use.ion].node
                position = np.full(model.n, -1, np.int64)
                position[ion_nodes] = np.arange(ion_nodes.size)
                arrays[f"m{k}_ion_{use.ion}"] = position[table.node]
            for spec in mechanism.translation.tables:
                table_values, limits = _build_table(mechanism, spec, table, model.celsius)
                arrays[f"m{k}_table_{spec.function}"] = table_values
                arrays[f"m{k}_limits_{spec.function}"] = limits
        return arrays


def _build_table(mechanism, spec, table, celsius: float) -> tuple[np.ndarray, np.ndarray]:
    """A TABLE's values, built as NEURON builds it (from the GLOBALs and celsius)."""
    module = mechanism.module
    build = getattr(module, f"build_{spec.function}")
    out = np.zeros((len(spec.variables), spec.points + 1))
    known = {"celsius": celsius, **table.globals}
    missing = [name for name in spec.inputs if name not in known]
    if missing:
        raise ValueError(
            f"{mechanism.name}: the TABLE of {spec.function} depends on {missing}, "
            "which are not GLOBALs"
        )
    low, mfac = build(out, *[known[name] for name in spec.inputs])
    return out, np.array([low, mfac])

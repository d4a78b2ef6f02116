"""NEURON's fixed step (``secondorder = 0``) for many instances of one cell model.

The time loop is generated for the model's mechanisms (:mod:`dhs.engine.kernel`);
this module owns the storage and the instances' parameters and events, and runs the
generated loop on the CPU (chunks of instances, one Python thread per worker, the
kernel releasing the GIL) or on CUDA (:mod:`dhs.engine.cuda`). The order of the
phases and every sum follow NEURON's (``dhs/engine/DESIGN.md``), so fp64 results on
the CPU equal NEURON's bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import checks
from ..backends import resolve_backend
from . import kernel, storage
from .execute import PreparedRun, execute
from .inputs import poisson_times
from .model import CellModel
from .options import RunOptions, run_options

__all__ = ["Batch", "Engine", "RunResult", "time_grid"]


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
    chunk : int, optional
        Instances advanced together by one CPU thread (the inner, vectorised loop).
        Default: :func:`dhs.engine.storage.auto_width` (64, and no wider than a
        worker's share of the instances: a single instance runs a path of its own,
        without loops over instances). Results do not depend on it.
    workers : int, optional
        CPU threads for the run (default: the cores this process may use).
    scheme : {"auto", "thread", "lanes"}
        CUDA only: one thread per instance, or one block of ``lanes`` threads per
        instance stepping through its cell's Hu schedule (DHS). ``"auto"`` picks one
        with :func:`dhs.engine.cuda.choose_scheme`; :attr:`scheme_choice` says which and
        why. Results do not depend on it beyond the last bits.
    lanes : int, default 32
        Threads per instance of the ``lanes`` scheme (k of the Hu schedule).

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
        chunk: int | None = None,
        workers: int | None = None,
        scheme: str = "auto",
        lanes: int = 32,
    ):
        checks.instance_of("model", model, CellModel, "a dhs.engine.CellModel")
        n_instances = checks.positive_int("n_instances", n_instances)
        chunk = checks.optional_positive_int("chunk", chunk)
        workers = checks.optional_positive_int("workers", workers)
        checks.one_of("backend", backend, ("cpu", "auto", "cuda"))
        checks.one_of("scheme", scheme, ("auto", "thread", "lanes"))
        lanes = checks.thread_count("lanes", lanes)
        backend = resolve_backend(backend)
        self.model = model
        self.n_instances = int(n_instances)
        self.backend = backend
        self.chunk = chunk
        self.workers = workers
        self.requested_scheme = scheme
        self.lanes = lanes
        self.scheme_choice = None
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
        try:
            if weights.shape == (*shape, n_arguments) or (
                weights.ndim >= 1 and weights.shape[-1] == n_arguments and n_arguments > 1
            ):
                return np.broadcast_to(weights, (*shape, n_arguments)).copy()
            full = np.zeros((*shape, n_arguments))
            full[..., 0] = np.broadcast_to(weights, shape)
        except ValueError:
            raise ValueError(
                f"{kind}: weights of shape {weights.shape} do not fit {shape[0] if shape else 1} "
                f"events with {n_arguments} NET_RECEIVE argument(s): give one weight, one per "
                f"event, or ({shape[0] if shape else 1}, {n_arguments})"
            ) from None
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
            plain = (
                np.setdiff1d(np.arange(n), np.fromiter(per, np.int64, len(per)))
                if per
                else np.arange(n)
            )
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

    def plan(self, extra: dict[str, set[str]] | None = None, scheme: str = "cpu"):
        """The kernel plan of this model (with ``extra`` optional fields stored)."""
        extra = extra or {}
        mechanisms = tuple(t.mechanism for t in self.model.mechanisms.values())
        stored = []
        for mechanism in mechanisms:
            optional = set(mechanism.translation.optional)
            wanted = extra.get(mechanism.name, set())
            stored.append(tuple(f for f in mechanism.fields if f not in optional or f in wanted))
        return kernel.KernelPlan(mechanisms, tuple(self.model.ions), tuple(stored), scheme)

    @property
    def scheme(self) -> str:
        """The kernel scheme a run takes: ``"cpu"``, or on CUDA ``"thread"`` or
        ``"lanes"`` (``"auto"`` resolved by the cost model)."""
        if self.backend != "cuda":
            return "cpu"
        if self.requested_scheme != "auto":
            return self.requested_scheme
        if self.scheme_choice is None:
            from .cuda import choose_scheme, device_multiprocessors

            numbering = storage.dhs_numbering(self.model, self.lanes)
            phases = 4 + 2 * sum(
                ("current" in m.phases) + ("state" in m.phases)
                for m in (t.mechanism for t in self.model.mechanisms.values())
            )
            self.scheme_choice = choose_scheme(
                self.model.n,
                self.n_instances,
                int(numbering.component_steps.max()),
                phases,
                self.lanes,
                device_multiprocessors(),
            )
        return self.scheme_choice.scheme

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
        workers = min(self.workers or storage.default_workers(), self.n_instances)
        prepared = self._prepare(options, workers)
        execute([prepared], self.backend, workers)
        return self._finish(prepared, options)

    def _finish(self, prepared: PreparedRun, options: RunOptions) -> RunResult:
        """The :class:`RunResult` of a run that has been executed."""
        head, n_instances, n_nodes = prepared.head, self.n_instances, self.model.n
        spike_n, spike_t = head["spike_n"], head["spike_t"]
        spikes = None
        if prepared.spike_node >= 0:
            if np.any(spike_n > spike_t.shape[1]):
                warnings.warn(
                    f"more than max_spikes={spike_t.shape[1]} spikes in some instances; "
                    "the later ones are not kept",
                    RuntimeWarning,
                    stacklevel=3,
                )
            spikes = [
                spike_t[q, : min(int(spike_n[q]), spike_t.shape[1])].copy()
                for q in range(n_instances)
            ]
        recorded = head["rec"]
        n_v = prepared.record_nodes.size
        v_final = (
            prepared.arrays["v"]
            .transpose(0, 2, 1)
            .reshape(-1, n_nodes)[storage.slots(prepared.starts, prepared.width)]
        )
        if prepared.index_of is not None:
            v_final = v_final[:, prepared.index_of]
        return RunResult(
            t=head["t_grid"][:: options.record_every].copy(),
            v=np.ascontiguousarray(recorded[:, :n_v].transpose(2, 1, 0)),
            record_nodes=prepared.record_nodes,
            spikes=spikes,
            v_final=np.ascontiguousarray(v_final),
            dt=options.dt,
            n_steps=options.n_steps,
            records={
                f"{name}@{where}": np.ascontiguousarray(recorded[:, n_v + r].T)
                for r, (name, where) in enumerate(options.record)
            },
        )

    def _prepare(self, options: RunOptions, workers: int = 1) -> PreparedRun:
        """Everything a run's kernel takes: the plan, the driver's arrays and the
        model's, chunk-major (CPU chunks balanced over ``workers``)."""
        model = self.model
        n_instances = self.n_instances
        n_steps = options.n_steps
        record_node_index = np.array([model.node(r) for r in options.record_nodes], dtype=np.int64)
        probes, extra = self._probes(options.record)
        scheme = self.scheme
        plan = self.plan(extra, scheme)
        for index, (name, _where) in enumerate(options.record):
            kind, field_index, row = probes[index]
            if field_index < 0:
                k = kind - 1 - len(model.ions)
                probes[index] = (kind, plan.stored[k].index(name.split(".", 1)[1]), row)
        numbering = storage.dhs_numbering(model, self.lanes) if scheme == "lanes" else None
        index_of = None if numbering is None else numbering.index_of
        kernel_node = (lambda node: int(node)) if index_of is None else (
            lambda node: int(index_of[node]))  # fmt: skip
        probes = [(0, 0, kernel_node(node)) for node in record_node_index] + probes
        spike = -1 if options.spike_node is None else model.node(options.spike_node)
        t_grid, t_mid = time_grid(options.dt, n_steps)
        if scheme == "thread":
            width = n_instances
            starts = np.array([0, n_instances], dtype=np.int64)
        elif scheme == "lanes":
            width = 1
            starts = np.arange(n_instances + 1, dtype=np.int64)
        else:
            workers = max(1, workers)
            width = self.chunk or storage.auto_width(n_instances, workers)
            starts, _ = storage.chunk_plan(n_instances, min(width, n_instances), workers)
            # the rows are as wide as the widest chunk, not wider (lanes no chunk uses
            # would still be streamed through the caches)
            width = int(np.diff(starts).max())
            if width == 1:
                plan = dataclasses.replace(plan, scalar=True)
        groups = starts if scheme != "thread" else np.arange(n_instances + 1, dtype=np.int64)
        arrays = self._arrays(plan, starts, width, options, numbering)
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
            "spike_node": -1 if spike < 0 else kernel_node(spike),
            "threshold": float(options.spike_threshold),
            "interpolate": options.spike_method == "interpolate",
            "spike_t": np.zeros((n_instances, max(options.kept_spikes, 0))),
            "spike_n": np.zeros(n_instances, np.int64),
            "spike_flag": np.zeros((starts.size - 1, width), np.uint8),
            "spike_v": np.zeros((starts.size - 1, width)),
        }
        rows = model.n + sum(table.count for table in model.mechanisms.values())
        return PreparedRun(
            plan=plan,
            head=head,
            arrays=arrays,
            starts=starts,
            width=width,
            n_instances=n_instances,
            lanes=self.lanes,
            record_nodes=record_node_index,
            spike_node=spike,
            index_of=index_of,
            cost=np.diff(starts).astype(np.float64) * rows,
        )

    def cuda_ptx(
        self, options: RunOptions, cc: tuple[int, int] = (9, 0), *, contract: bool = False
    ) -> str:
        """PTX of this model's CUDA kernel (in its :attr:`scheme`, ``"thread"`` on a
        machine without a GPU unless ``scheme`` was given) for a run with ``options``,
        FMA contraction off as the engine runs it (unless ``contract``); needs the
        CUDA compiler libraries but no GPU."""
        from .cuda import compile_ptx

        scheme = self.requested_scheme if self.requested_scheme != "auto" else (
            self.scheme if self.backend == "cuda" else "thread")  # fmt: skip
        saved = self.backend, self.requested_scheme
        self.backend, self.requested_scheme = "cuda", scheme
        try:
            prepared = self._prepare(options)
        finally:
            self.backend, self.requested_scheme = saved
        return compile_ptx(prepared, cc, contract=contract)

    def _arrays(
        self,
        plan: kernel.KernelPlan,
        starts: np.ndarray,
        width: int,
        options: RunOptions,
        numbering=None,
    ) -> dict[str, np.ndarray]:
        """Every array the generated kernel takes, chunk-major; node-indexed ones in the
        DHS numbering when ``numbering`` is given (``lanes``)."""
        model = self.model
        n_chunks = starts.size - 1
        values = self._values
        if numbering is None:
            node_of = np.arange(model.n)
            index_of = node_of
            parent = model.parent
        else:
            node_of, index_of, parent = numbering.node_of, numbering.index_of, numbering.parent
        arrays: dict[str, np.ndarray] = {
            "parent": parent,
            "a": model.a[node_of],
            "b": model.b[node_of],
            "diam": model.diam[node_of],
            "area": model.area[node_of],
            "cm": storage.chunk_major(values["cm"][node_of], starts, width),
            "v_init": storage.chunk_major(values["v_init"], starts, width),
            "scalars": np.array([options.dt, model.celsius]),
        }
        for name in ("v", "rhs", "d"):
            arrays[name] = storage.aligned_empty((n_chunks, model.n, width))
        if plan.scheme == "lanes":
            arrays |= {
                "node_ptr": numbering.node_ptr,
                "step_ptr": numbering.step_ptr,
                "step_lo": numbering.step_lo,
                "step_hi": numbering.step_hi,
                "child_ptr": numbering.child_ptr,
                "child_index": numbering.child_index,
                "identity": np.arange(model.n, dtype=np.int64),
            }
        else:
            block_ptr = storage.node_blocks(model.n)
            arrays["block_ptr"] = block_ptr
            arrays["cross_ptr"], arrays["cross_child"] = storage.cross_block_children(
                model.parent, block_ptr
            )
        for s, (ion, table) in enumerate(model.ions.items()):
            store = np.zeros((len(kernel.ION_FIELDS), table.node.size, self.n_instances))
            store[0] = values[f"e{ion}"]
            store[1] = values[f"{ion}i"]
            store[2] = values[f"{ion}o"]
            arrays[f"ion{s}"] = storage.chunk_major(store, starts, width)
            arrays[f"ion{s}_node"] = index_of[table.node]
            arrays[f"ion{s}_style"] = table.style
            arrays[f"ion{s}_constants"] = np.array([table.ci0, table.co0, table.valence])
            if plan.scheme != "lanes":
                arrays[f"ion{s}_block"] = storage.block_bounds(table.node, block_ptr)
        for k, (name, table) in enumerate(model.mechanisms.items()):
            mechanism = plan.mechanisms[k]
            stored = plan.stored[k]
            store = np.zeros((len(stored), table.count, self.n_instances))
            for f, field_name in enumerate(stored):
                if field_name in table.params:
                    store[f] = values[f"{name}.{field_name}"]
            arrays[f"m{k}"] = (
                storage.chunk_major(store, starts, width)
                if table.count
                else storage.aligned_empty((n_chunks, len(stored), 0, width))
            )
            nodes = index_of[table.node]
            arrays[f"m{k}_node"] = nodes
            arrays[f"m{k}_globals"] = np.array(
                [table.globals[g] for g in mechanism.globals] or [0.0]
            )
            sorted_nodes = nodes
            if mechanism.is_point_process:
                arrays[f"m{k}_mfact"] = 1.0e2 / model.area[table.node]
                order = storage.point_order(nodes)
                arrays[f"m{k}_order"] = order
                sorted_nodes = nodes[order]
                if plan.scheme == "lanes":
                    arrays[f"m{k}_unit_ptr"] = storage.unit_ptr(sorted_nodes)
            if plan.scheme != "lanes":
                arrays[f"m{k}_block"] = storage.block_bounds(sorted_nodes, block_ptr)
            for use in mechanism.ions:
                ion_nodes = model.ions[use.ion].node
                position = np.full(model.n, -1, np.int64)
                position[ion_nodes] = np.arange(ion_nodes.size)
                arrays[f"m{k}_ion_{use.ion}"] = position[table.node]
            for spec in mechanism.translation.tables:
                table_values, limits = storage.build_table(
                    mechanism, spec, table.globals, model.celsius
                )
                arrays[f"m{k}_table_{spec.function}"] = table_values
                arrays[f"m{k}_limits_{spec.function}"] = limits
        return arrays


class Batch:
    """Instances of several cell models, different morphologies and mechanism sets, run
    together.

    Each :class:`Engine` keeps its own model, instances, parameters and inputs; a batch
    runs all of them at once. On the CPU the chunks of every engine are shared out
    among the worker threads in contiguous shares of equal cost; on CUDA each engine's
    kernel is launched on its own stream. Every instance's result is the one its engine
    gives alone: the same generated code on the same numbers.

    Parameters
    ----------
    engines : sequence of Engine
        All on the same backend.
    workers : int, optional
        CPU threads (default: the cores this process may use).
    """

    def __init__(self, engines, *, workers: int | None = None):
        engines = list(engines)
        if not engines:
            raise ValueError("a Batch needs at least one Engine")
        for index, engine in enumerate(engines):
            checks.instance_of(f"engines[{index}]", engine, Engine, "a dhs.engine.Engine")
        backends = {engine.backend for engine in engines}
        if len(backends) > 1:
            raise ValueError(f"the engines of a Batch must share a backend, got {sorted(backends)}")
        self.engines = engines
        self.backend = engines[0].backend
        self.workers = checks.optional_positive_int("workers", workers)

    @property
    def n_instances(self) -> int:
        return sum(engine.n_instances for engine in self.engines)

    def run(self, options) -> list[RunResult]:
        """Run every engine's instances.

        Parameters
        ----------
        options : RunOptions or sequence of RunOptions
            One for all (its nodes named in every model, or none), or one per engine;
            every run has the same ``tstop`` and ``dt``.

        Returns
        -------
        list of RunResult
            One per engine, in order.
        """
        if isinstance(options, RunOptions):
            options = [options] * len(self.engines)
        options = list(options)
        if len(options) != len(self.engines):
            raise ValueError(
                f"options: one RunOptions, or one per engine ({len(self.engines)}), "
                f"got {len(options)}"
            )
        for index, option in enumerate(options):
            checks.instance_of(f"options[{index}]", option, RunOptions, "a RunOptions")
        timing = {(option.tstop, option.dt) for option in options}
        if len(timing) > 1:
            raise ValueError(f"the runs of a Batch share tstop and dt, got {sorted(timing)}")
        workers = min(self.workers or storage.default_workers(), self.n_instances)
        prepared = [
            engine._prepare(option, workers if engine.n_instances >= workers else 1)
            for engine, option in zip(self.engines, options, strict=True)
        ]
        execute(prepared, self.backend, workers)
        return [
            engine._finish(run, option)
            for engine, run, option in zip(self.engines, prepared, options, strict=True)
        ]

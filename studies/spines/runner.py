"""The runner of the spine study: :class:`SpineExperiment` runs the trials of one
(model, pattern) on the batched engine, every count and trial together in one
:class:`dhs.engine.Batch` (full-spine: one :class:`dhs.engine.Engine` per count with an
instance per trial; few-spine: one single-instance engine per trial, on that trial's own
model), and single trials natively in NEURON to check and time it. ``DESIGN.md`` says
how the trials get their models."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
from neuron import h

from dhs.engine import CellModel
from neuron_bridge.export import export_model
from neuron_bridge.morphology import Cell, node_count
from neuron_bridge.patterns import NeuronEvents, TrialInputs, synapse_rows, trial_inputs
from neuron_bridge.spines import (
    FFactor,
    Spines,
    add_spines,
    add_spines_at,
    apply_f_factor,
    spine_sites,
)

from .cell import build_cell, set_membrane
from .sampling import draw_active, draw_background, pattern_stream
from .settings import MODELS, CellSetup, Protocol
from .statistics import spiked_in_window, threshold_50, threshold_interval

__all__ = ["FULL_SPINE_GROUP", "ConditionResult", "NativeTrial", "SpineExperiment"]

#: The synapse of the study's spine heads.
SYNAPSE = "AmpaNmda"
#: Full-spine trials per engine: each engine holds the synapses of its own trials only.
#: Measured at count 120 on 2 workers (s per trial): 2: 0.33, 4: 0.42, 8: 0.33, 12: 0.31,
#: 16: 0.26, 24: 0.32, 48: 0.31 (chunks of 8 per worker beat fewer synapses per engine).
FULL_SPINE_GROUP = 16


@dataclass
class ConditionResult:
    """The trials of one (model, pattern) on the engine.

    Attributes
    ----------
    model, pattern : str
    counts : ndarray of int64, shape (m,)
    spiked : ndarray of bool, shape (m, trials)
        A spike in the window after the activation.
    early : ndarray of bool, shape (m, trials)
        A spike before the activation (background alone).
    first_spike : ndarray, shape (m, trials)
        ms after the activation of the first spike in the window (nan without).
    t : ndarray
        Sample times of ``soma_v`` in ms.
    soma_v : ndarray, shape (m, trials, n_times)
        mV at soma(0.5).
    run_seconds : float
        Wall time in s of the one :meth:`dhs.engine.Batch.run` that ran every count.
    build_seconds : ndarray, shape (m,)
        Wall time in s per count of drawing the inputs, building and exporting the
        model, and making the engines (few-spine: each trial's model too).
    n_nodes, n_synapses : ndarray of int64, shape (m, trials)
        Size of the engine model each trial ran on (matrix rows, AmpaNmda synapses):
        full-spine, its count's shared model; few-spine, the trial's own.
    backend : str
        The engine backend that ran (``"cpu"`` or ``"cuda"``).
    """

    model: str
    pattern: str
    counts: np.ndarray
    spiked: np.ndarray
    early: np.ndarray
    first_spike: np.ndarray
    t: np.ndarray
    soma_v: np.ndarray
    run_seconds: float
    build_seconds: np.ndarray
    n_nodes: np.ndarray
    n_synapses: np.ndarray
    backend: str

    @property
    def name(self) -> str:
        return f"{self.model}-spine {self.pattern}"

    @property
    def trials(self) -> int:
        return int(self.spiked.shape[1])

    @property
    def probability(self) -> np.ndarray:
        """Spike probability per count."""
        return self.spiked.mean(axis=1)

    def threshold(self) -> float:
        """:func:`threshold_50` of this condition."""
        return threshold_50(self.counts, self.spiked.sum(axis=1), self.trials)

    def summary(self) -> dict:
        """JSON-ready numbers (no traces)."""
        k = self.spiked.sum(axis=1)
        low, high = threshold_interval(self.counts, k, self.trials)
        return {
            "model": self.model,
            "pattern": self.pattern,
            "counts": self.counts.tolist(),
            "trials": self.trials,
            "spiking_trials": k.tolist(),
            "probability": self.probability.tolist(),
            "early_spike_trials": self.early.sum(axis=1).tolist(),
            "spiked_per_trial": self.spiked.astype(int).tolist(),
            "threshold_50": _json_float(self.threshold()),
            "threshold_95ci": [_json_float(low), _json_float(high)],
            "engine_run_seconds": float(self.run_seconds),
            "build_seconds": float(self.build_seconds.sum()),
            "build_seconds_per_count": self.build_seconds.tolist(),
            "n_nodes": self.n_nodes.tolist(),
            "n_synapses": self.n_synapses.tolist(),
            "backend": self.backend,
        }


def _json_float(value: float):
    return None if not math.isfinite(value) else float(value)


@dataclass
class NativeTrial:
    """One trial run natively by NEURON (:meth:`SpineExperiment.run_native`).

    Attributes
    ----------
    seconds : float
        Wall time of ``finitialize`` + ``continuerun``.
    spikes : ndarray
        Somatic spike times in ms.
    t, soma_v : ndarray
        The somatic potential (every step).
    n_nodes : int
        Matrix rows of the NEURON model of this trial.
    """

    seconds: float
    spikes: np.ndarray
    t: np.ndarray
    soma_v: np.ndarray
    n_nodes: int


class SpineExperiment:
    """The cell, its spine sites, the background sites, and the runs.

    Parameters
    ----------
    setup : CellSetup, optional
    protocol : Protocol, optional
    cell : Cell, optional
        An already built cell (default: :func:`build_cell` of ``setup``). Its membrane
        is used as it is; ``setup`` still gives the spines and ``v_init``.

    Notes
    -----
    NEURON holds one model per process: at most one spine model exists at a time (the
    full-spine spines are kept between calls until a few-spine model is needed), and
    :meth:`delete` removes everything.
    """

    def __init__(
        self,
        setup: CellSetup | None = None,
        protocol: Protocol | None = None,
        cell: Cell | None = None,
    ):
        from neuron_bridge.compile_mod import load_mod_mechanisms

        load_mod_mechanisms()
        self.setup = CellSetup() if setup is None else setup
        self.protocol = Protocol() if protocol is None else protocol
        self.cell = build_cell(self.setup) if cell is None else cell
        self.soma = self.cell.soma[0]
        self.sites = spine_sites(self.cell, self.setup.spines, seed=self.setup.spine_seed)
        if len(self.sites) < self.protocol.n_background:
            raise ValueError(
                f"the cell has {len(self.sites)} spine sites, fewer than n_background = "
                f"{self.protocol.n_background}"
            )
        self.background = draw_background(
            len(self.sites), self.protocol.n_background, self.protocol.seed
        )
        self.candidates = np.setdiff1d(np.arange(len(self.sites)), self.background)
        self._spines: _SpineModel | None = None
        self._whole: dict[str, _WholeModel] = {}

    # -------------------------------------------------------------- inputs
    def _stream(self, pattern: str, count: int) -> list[int]:
        return pattern_stream(self.protocol.seed, pattern, count)

    def active_sites(self, pattern: str, count: int, trials: int) -> list[np.ndarray]:
        """Activated sites (indices into :attr:`sites`) of trials ``0 .. trials - 1`` at
        ``count``; the first trials do not depend on how many are drawn."""
        rng = np.random.default_rng(self._stream(pattern, count))
        p = self.protocol
        return draw_active(
            self.sites,
            pattern,
            count,
            trials,
            rng,
            candidates=self.candidates,
            cluster_size=p.cluster_size,
            cluster_length=p.cluster_length,
        )

    def inputs(self, pattern: str, count: int, trials: int, active=None) -> TrialInputs:
        """The :class:`~neuron_bridge.patterns.TrialInputs` of ``trials`` trials (or of
        the given ``active`` site lists) at ``count``."""
        p = self.protocol
        if active is None:
            active = self.active_sites(pattern, count, trials)
        seed = int(np.random.SeedSequence(self._stream(pattern, count)).generate_state(1)[0])
        return trial_inputs(
            self.sites,
            active,
            self.background,
            activation_time=p.activation_time,
            activation_weight=p.activation_weight,
            background_rate_hz=p.background_rate_hz,
            background_weight=p.weight_background,
            seed=seed,
            background_stop=p.tstop,
        )

    # -------------------------------------------------------------- models
    def _release_spines(self) -> None:
        if self._spines is not None:
            self._spines.delete()
            self._spines = None

    def _full_spines(self) -> _SpineModel:
        if self._spines is None or self._spines.mode != "full":
            self._release_spines()
            spines = add_spines(self.cell, self.setup.spines, seed=self.setup.spine_seed)
            self._spines = _SpineModel("full", spines, spines.explicit.copy(), None)
        return self._spines

    def _few_spines(self, at) -> _SpineModel:
        """The F-factor, then explicit spines at the sites ``at`` (indices into
        :attr:`sites`), with the membrane the dendrite had before the F-factor."""
        self._release_spines()
        params = self.setup.spines
        at = np.asarray(at, dtype=np.int64)
        passive_only = None if self.setup.f_factor_active else {"hh": []}
        record = apply_f_factor(
            self.cell, params.f_factor, params.min_distance, conductances=passive_only
        )
        spines = add_spines_at(self.cell, self.sites.subset(at), params, f_factor=record)
        return _SpineModel("few", spines, at, record)

    def rediscretize(self, segment_length: float) -> None:
        """Set a new longest segment length (µm) and the membrane again
        (:func:`set_membrane`); the spine sites, background and patterns stay."""
        self._release_spines()
        self._whole.clear()
        self.setup = replace(self.setup, segment_length=segment_length)
        set_membrane(self.cell, self.setup)

    def delete(self) -> None:
        """Delete the spines and the cell's sections."""
        self._release_spines()
        self._whole.clear()
        self.cell.delete()

    def _whole_model(self, model: str) -> _WholeModel:
        """The spine model with an explicit spine and an AmpaNmda at every site,
        exported once per model (``DESIGN.md``, Trials on the engine)."""
        if model not in self._whole:
            every_site = np.arange(len(self.sites))
            spines = self._full_spines() if model == "full" else self._few_spines(every_site)
            synapses = spines.synapses(every_site, nmda_ratio=self.protocol.nmda_ratio)
            try:
                exported = export_model(self.setup.v_init)
                rows = synapse_rows(synapses)
                spine_nodes = spines.nodes(every_site)
            finally:
                synapses.clear()
                if model == "few":
                    spines.delete()
            self._whole[model] = _WholeModel(exported, rows, spine_nodes)
        return self._whole[model]

    # -------------------------------------------------------------- engine
    def run_count(
        self,
        model: str,
        pattern: str,
        count: int,
        trials: int,
        *,
        backend: str = "auto",
        record_nodes=(),
        active=None,
    ) -> dict:
        """Run ``trials`` trials at one count on the engine, together in one
        :class:`dhs.engine.Batch` (``DESIGN.md``, Trials on the engine).

        Parameters
        ----------
        model : {"full", "few"}
        pattern : {"distributed", "clustered"}
        count, trials : int
        backend : str, default "auto"
            :class:`dhs.engine.Engine` backend.
        record_nodes : sequence of (section, x)
            Extra points on the cell to record besides soma(0.5).
        active : list of array_like of int, optional
            The activated sites of each trial (default :meth:`active_sites`).

        Returns
        -------
        dict
            ``t`` (ms, the sample times), ``v`` (mV, shape ``(trials, 1 +
            len(record_nodes), n_times)``, soma first), ``spikes`` (somatic spike times
            in ms, one array per trial), ``inputs``, ``backend``, ``run_seconds`` (wall
            time of :meth:`Batch.run`), ``build_seconds`` (drawing the inputs, building
            and exporting the model, making the engines), ``n_nodes`` and ``n_synapses``
            (int64 arrays of shape ``(trials,)``: matrix rows and AmpaNmda synapses of
            the model each trial ran on).
        """
        built = self._build_count(model, pattern, count, trials, backend, record_nodes, active)
        (run,), seconds = self._run_batch([built])
        return {**run, "run_seconds": seconds, "build_seconds": built.build_seconds}

    def run_condition(
        self, model: str, pattern: str, counts, trials: int, *, backend: str = "auto", progress=None
    ) -> ConditionResult:
        """All counts of one (model, pattern): the engines of every count and trial run
        together in one :class:`dhs.engine.Batch`.

        ``progress``: a function called with a line of text after each count is built
        and for each count after the run."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 1 or counts.size == 0 or np.any(np.diff(counts) <= 0):
            raise ValueError("counts must be a non-empty increasing sequence")
        p = self.protocol
        built = []
        for count in counts.tolist():
            built.append(self._build_count(model, pattern, count, trials, backend, (), None))
            if progress is not None:
                b = built[-1]
                progress(
                    f"{model}-spine {pattern:11s} count {count:4d}: built {len(b.engines)} "
                    f"engine(s) of {_span(b.n_nodes)} rows and {_span(b.n_synapses)} "
                    f"synapses in {b.build_seconds:.1f} s"
                )
        rows, seconds = self._run_batch(built)
        spiked, early, first = [], [], []
        for count, r in zip(counts.tolist(), rows, strict=True):
            spikes = r["spikes"]
            spiked.append(spiked_in_window(spikes, p.activation_time, p.tstop))
            early.append(spiked_in_window(spikes, -math.inf, p.activation_time))
            first.append(
                [
                    float(s[(s > p.activation_time) & (s <= p.tstop)][0] - p.activation_time)
                    if np.any((s > p.activation_time) & (s <= p.tstop))
                    else math.nan
                    for s in spikes
                ]
            )
            if progress is not None:
                progress(
                    f"{model}-spine {pattern:11s} count {count:4d}: p = {spiked[-1].mean():.2f}"
                )
        if progress is not None:
            progress(
                f"{model}-spine {pattern}: {len(counts) * trials} trials in "
                f"{sum(len(b.engines) for b in built)} engine(s), one Batch: engine "
                f"{seconds:.1f} s on {rows[0]['backend']}"
            )
        return ConditionResult(
            model=model,
            pattern=pattern,
            counts=counts,
            spiked=np.array(spiked),
            early=np.array(early),
            first_spike=np.array(first),
            t=rows[0]["t"],
            soma_v=np.stack([r["v"][:, 0, :] for r in rows]),
            run_seconds=seconds,
            build_seconds=np.array([b.build_seconds for b in built]),
            n_nodes=np.stack([b.n_nodes for b in built]),
            n_synapses=np.stack([b.n_synapses for b in built]),
            backend=rows[0]["backend"],
        )

    def _build_count(
        self, model: str, pattern: str, count: int, trials: int, backend: str, record_nodes, active
    ) -> _CountEngines:
        """The engines of one (model, pattern, count), with their trials' events.

        Every engine runs a subset of :meth:`_whole_model`: full-spine, every node and
        the synapses of a group of :data:`FULL_SPINE_GROUP` trials, one instance per
        trial; few-spine, per trial one single-instance engine without the explicit
        spines (and synapses) of the sites the trial does not use, which is the model
        NEURON builds for that trial alone.
        """
        from dhs.engine import Engine, RunOptions

        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        start = time.perf_counter()
        p = self.protocol
        inputs = self.inputs(pattern, count, trials, active)
        whole = self._whole_model(model)
        points = [(self.soma, 0.5), *record_nodes]
        record = np.array([whole.node_of(section, x) for section, x in points], dtype=np.int64)
        pool_row = whole.synapse_row[inputs.site_index]  # of pool synapse k, in the whole model
        synapse_table = whole.model.mechanisms[SYNAPSE]

        def options(record_index: np.ndarray) -> RunOptions:
            return RunOptions(
                p.tstop,
                p.dt,
                record_nodes=tuple(record_index.tolist()),
                record_every=p.record_every,
                spike_node=int(record_index[0]),
                spike_threshold=p.spike_threshold,
            )

        def used(trial: int) -> np.ndarray:
            """Pool synapses of one trial: its activated ones and the background."""
            return np.union1d(inputs.active[trial], inputs.background)

        def engine_rows(kept: np.ndarray) -> np.ndarray:
            """Row of each pool synapse in an engine that keeps the ``kept`` rows of the
            whole model's table (-1: not in that engine)."""
            return np.where(kept[pool_row], (np.cumsum(kept) - 1)[pool_row], -1)

        engines, run_options, where, n_nodes, n_synapses = [], [], [], [], []
        n_trials = inputs.n_trials
        if model == "full":
            for first in range(0, n_trials, FULL_SPINE_GROUP):
                group = list(range(first, min(first + FULL_SPINE_GROUP, n_trials)))
                kept = np.zeros(synapse_table.count, dtype=bool)
                for q in group:
                    kept[pool_row[used(q)]] = True
                engine = Engine(
                    whole.model.subset(point_processes={SYNAPSE: kept}),
                    n_instances=len(group),
                    backend=backend,
                )
                inputs.to_engine(engine, engine_rows(kept), trials=group)
                engines.append(engine)
                run_options.append(options(record))
                where += [(len(engines) - 1, k) for k in range(len(group))]
                n_nodes += [whole.model.n] * len(group)
                n_synapses += [int(kept.sum())] * len(group)
        else:
            on_cell = np.ones(whole.model.n, dtype=bool)
            on_cell[np.concatenate(whole.spine_nodes)] = False
            if not on_cell[record].all():
                raise ValueError("record_nodes must be on the cell, not on a spine")
            for q in range(n_trials):
                keep = on_cell.copy()
                for site in inputs.site_index[used(q)].tolist():
                    keep[whole.spine_nodes[site]] = True
                trial_model = whole.model.subset(keep)
                engine = Engine(trial_model, n_instances=1, backend=backend)
                inputs.to_engine(engine, engine_rows(keep[synapse_table.node]), trials=[q])
                engines.append(engine)
                run_options.append(options((np.cumsum(keep) - 1)[record]))
                where.append((q, 0))
                n_nodes.append(trial_model.n)
                n_synapses.append(trial_model.mechanisms[SYNAPSE].count)
        return _CountEngines(
            inputs=inputs,
            engines=engines,
            options=run_options,
            where=where,
            n_nodes=np.array(n_nodes, dtype=np.int64),
            n_synapses=np.array(n_synapses, dtype=np.int64),
            build_seconds=time.perf_counter() - start,
        )

    @staticmethod
    def _run_batch(built: list[_CountEngines]) -> tuple[list[dict], float]:
        """Run the engines of several counts in one :class:`dhs.engine.Batch`; per count
        its ``t``, ``v``, ``spikes``, ``inputs``, ``backend``, ``n_nodes`` and
        ``n_synapses``, and the wall time of the run."""
        from dhs.engine import Batch

        engines = [engine for b in built for engine in b.engines]
        options = [option for b in built for option in b.options]
        batch = Batch(engines)
        start = time.perf_counter()
        results = batch.run(options)
        seconds = time.perf_counter() - start
        rows = []
        first = 0
        for b in built:
            mine = results[first : first + len(b.engines)]
            first += len(b.engines)
            rows.append(
                {
                    "t": mine[0].t,
                    "v": np.stack([mine[e].v[q] for e, q in b.where]),
                    "spikes": [mine[e].spikes[q] for e, q in b.where],
                    "inputs": b.inputs,
                    "backend": batch.backend,
                    "n_nodes": b.n_nodes,
                    "n_synapses": b.n_synapses,
                }
            )
        return rows, seconds

    # -------------------------------------------------------------- NEURON
    def run_native(
        self, model: str, inputs: TrialInputs, trial: int, record_nodes=()
    ) -> NativeTrial:
        """One trial in NEURON itself, with only that trial's synapses.

        Full-spine: every spine, synapses at the trial's activated and background sites.
        Few-spine: the F-factor and explicit spines at exactly those sites. The events
        are the trial's (:meth:`TrialInputs.events`), so the engine's instance of this
        trial gets the same input.

        ``record_nodes``: extra (section, x) points, recorded into
        :attr:`NativeTrial.soma_v` after the soma (shape ``(1 + len, n_times)``) when
        given.
        """
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        p = self.protocol
        used = np.union1d(inputs.active[trial], inputs.background).astype(np.int64)
        sites = inputs.site_index[used]
        spines = self._full_spines() if model == "full" else self._few_spines(sites)
        made = spines.synapses(sites, nmda_ratio=p.nmda_ratio)
        synapses: list = [None] * inputs.n_synapses
        for k, synapse in zip(used.tolist(), made, strict=True):
            synapses[k] = synapse
        events = NeuronEvents(synapses, *inputs.events(trial))
        h.dt = p.dt
        h.steps_per_ms = 1.0 / p.dt
        t = h.Vector().record(h._ref_t)
        points = [self.soma(0.5)] + [section(x) for section, x in record_nodes]
        traces = [h.Vector().record(point._ref_v) for point in points]
        detector = h.NetCon(self.soma(0.5)._ref_v, None, sec=self.soma)
        detector.threshold = p.spike_threshold
        spikes = h.Vector()
        detector.record(spikes)
        rows = node_count()
        try:
            start = time.perf_counter()
            h.finitialize(self.setup.v_init)
            h.continuerun(p.tstop)
            seconds = time.perf_counter() - start
            v = np.array([trace.as_numpy() for trace in traces])
            native = NativeTrial(
                seconds=seconds,
                spikes=spikes.as_numpy().copy(),
                t=t.as_numpy().copy(),
                soma_v=v if record_nodes else v[0],
                n_nodes=rows,
            )
        finally:
            events.release()
            del detector, traces, t
            made.clear()
            synapses.clear()
            if model == "few":
                spines.delete()
        return native


@dataclass(eq=False)
class _SpineModel:
    """Spines built on the cell: explicit spine ``k`` sits at ``site[k]`` (an index
    into the experiment's sites); ``f_factor`` is undone with the spines."""

    mode: str
    spines: Spines
    site: np.ndarray
    f_factor: FFactor | None

    def spine_of(self, sites) -> list[int]:
        """Explicit spine numbers of site indices."""
        lookup = {int(site): k for k, site in enumerate(self.site.tolist())}
        return [lookup[int(site)] for site in np.asarray(sites).tolist()]

    def synapses(self, sites, **attributes) -> list:
        """An ``AmpaNmda`` at ``head(0.5)`` of the spine of each site, in order."""
        made = []
        for k in self.spine_of(sites):
            synapse = h.AmpaNmda(self.spines.heads[k](0.5))
            for name, value in attributes.items():
                setattr(synapse, name, value)
            made.append(synapse)
        return made

    def nodes(self, sites) -> list[np.ndarray]:
        """Per site, every node of its explicit spine's neck and head (their segments
        and their 1-ends), in NEURON's current numbering."""
        made = []
        for k in self.spine_of(sites):
            sections = (self.spines.necks[k], self.spines.heads[k])
            made.append(
                np.array(
                    [seg.node_index() for sec in sections for seg in [*sec, sec(1)]],
                    dtype=np.int64,
                )
            )
        return made

    def delete(self) -> None:
        self.spines.delete()
        if self.f_factor is not None:
            self.f_factor.undo()


@dataclass(eq=False)
class _WholeModel:
    """A spine model with an explicit spine and a synapse at every site, exported:
    ``synapse_row[site]`` is the site's synapse in the :data:`SYNAPSE` table,
    ``spine_nodes[site]`` the nodes of its spine (neck, head and their 1-ends)."""

    model: CellModel
    synapse_row: np.ndarray
    spine_nodes: list[np.ndarray]

    def node_of(self, section, x: float) -> int:
        """The model's node of the point ``section(x)``, ``0 < x <= 1``, by its name."""
        if not 0.0 < x <= 1.0:
            raise ValueError(f"record at 0 < x <= 1 of a section, got x = {x}")
        if x == 1.0:
            return self.model.node(f"{section.name()}(1)")
        nseg = section.nseg
        center = (min(int(x * nseg), nseg - 1) + 0.5) / nseg  # NEURON's segment of x
        return self.model.node(f"{section.name()}({center:g})")


@dataclass(eq=False)
class _CountEngines:
    """The engines of one (model, pattern, count), with their trials' events.

    ``where[q]`` is trial ``q``'s (engine, instance); ``options`` one
    :class:`dhs.engine.RunOptions` per engine (its model's numbering of the soma and the
    recorded points); ``n_nodes``, ``n_synapses`` per trial."""

    inputs: TrialInputs
    engines: list
    options: list
    where: list[tuple[int, int]]
    n_nodes: np.ndarray
    n_synapses: np.ndarray
    build_seconds: float


def _span(values: np.ndarray) -> str:
    """``"a"`` or ``"a–b"``: the range of some integers, for progress lines."""
    low, high = int(np.min(values)), int(np.max(values))
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"

"""Synapse sites on a dendritic tree and the input patterns of the spine experiment.

Most of this module is plain numpy; NEURON is imported only by the two helpers that
talk to a live NEURON model (:meth:`TrialInputs.to_neuron` and :func:`synapse_rows`).

Geometry
--------
:class:`SectionTree`
    The sections of one cell as a tree of cables: length, parent, where on the parent
    each section attaches (``parent_x``) and with which of its own ends
    (``attach_end``, NEURON's ``orientation()``), and which sections are dendrites.
    It computes exact path distances (arc length along the tree; a section is a line of
    length ``L`` whatever its ``nseg``), also within a segment, where NEURON's
    ``h.distance`` would move the point to the segment's centre.
    :func:`neuron_bridge.spines.section_tree` builds one from a :class:`~neuron_bridge.Cell`.
:class:`Sites`
    Points ``(section, x)`` on such a tree with their path distance from the soma:
    the spine positions of :func:`neuron_bridge.spines.spine_sites`, or any subset.

Input patterns (each returns indices into a :class:`Sites`, sorted, without repeats)
-------------------------------------------------------------------------------------
:func:`distributed`
    ``n`` sites drawn uniformly without replacement. On spine positions placed by the
    density rule this is ``n`` synapses uniform over the spiny dendrite.
:func:`clustered`
    ``n`` sites drawn uniformly among those within path distance ``length / 2`` of a
    centre, so the cluster spans at most ``length`` µm of dendrite (exactly ``length``
    on an unbranched stretch). The centre is given, or drawn uniformly among the sites
    (redrawn while fewer than ``n`` sites lie near it, which steers random clusters away
    from dendritic tips shorter than ``length / 2``).

Trials on one model (:func:`trial_inputs`)
------------------------------------------
Every site any trial uses gets a synapse (the *pool*); trial ``q`` is only a set of
events: one at ``activation_time`` on each activated pool synapse, seeded Poisson trains
(:func:`dhs.engine.inputs.poisson_times` with ``instance=q``) on the background ones. The
same :class:`TrialInputs` feeds the engine (:meth:`TrialInputs.to_engine`, all trials)
and NEURON (:meth:`TrialInputs.to_neuron`, one trial) to the bit. Why a pool:
``neuron_bridge/DESIGN.md``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dhs import checks
from dhs.engine.inputs import poisson_times

__all__ = [
    "NeuronEvents",
    "SectionTree",
    "Sites",
    "TrialInputs",
    "clustered",
    "distributed",
    "synapse_rows",
    "trial_inputs",
]

RngLike = np.random.Generator | int | None


def _generator(rng: RngLike) -> np.random.Generator:
    """A numpy Generator from a Generator (used as is), a non-negative int seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    try:
        return np.random.default_rng(checks.non_negative_int("rng seed", rng))
    except TypeError:
        raise checks.ArgumentTypeError(
            f"rng must be a numpy Generator, a seed or None, got {rng!r}"
        ) from None


# ------------------------------------------------------------------------------ geometry
@dataclass(frozen=True, eq=False)
class SectionTree:
    """The sections of a cell as a tree of cables (NEURON-free).

    Attributes
    ----------
    names : tuple of str
        Section names (``sec.name()``), for messages and look-ups.
    length : ndarray of float, shape (n,)
        ``L`` in µm.
    parent : ndarray of int64, shape (n,)
        Index of the parent section, -1 for a root.
    parent_x : ndarray of float, shape (n,)
        Where on the parent the section attaches (0..1; ignored for roots).
    attach_end : ndarray of float, shape (n,)
        The section's own end at the parent: 0 normally, 1 for a reversed section
        (NEURON's ``sec.orientation()``).
    dendrite : ndarray of bool, shape (n,)
        Sections that may carry spines and synapses (neither soma nor axon).
    origin : (int, float)
        The point path distances are measured from: ``(soma index, 0.5)``.
    """

    names: tuple
    length: np.ndarray
    parent: np.ndarray
    parent_x: np.ndarray
    attach_end: np.ndarray
    dendrite: np.ndarray
    origin: tuple
    _children: tuple = field(default=(), repr=False)
    _lookup: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        arrays = {
            "length": np.array(self.length, dtype=np.float64),
            "parent": np.array(self.parent, dtype=np.int64),
            "parent_x": np.array(self.parent_x, dtype=np.float64),
            "attach_end": np.array(self.attach_end, dtype=np.float64),
            "dendrite": np.array(self.dendrite, dtype=bool),
        }
        for name, array in arrays.items():
            if array.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if not (np.isfinite(arrays["length"]).all() and (arrays["length"] >= 0).all()):
            raise ValueError("length must be finite and non-negative")
        parent = arrays["parent"]
        if ((parent < -1) | (parent >= n) | (parent == np.arange(n))).any():
            raise ValueError("parent must hold -1 or the index of another section")
        children: list[list[int]] = [[] for _ in range(n)]
        for child, mother in enumerate(parent.tolist()):
            if mother >= 0:
                children[mother].append(child)
        object.__setattr__(self, "_children", tuple(tuple(c) for c in children))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "_lookup", {name: i for i, name in enumerate(self.names)})
        origin = (self.index(self.origin[0]), float(self.origin[1]))
        object.__setattr__(self, "origin", origin)

    @property
    def n(self) -> int:
        """Number of sections."""
        return len(self.names)

    def index(self, section) -> int:
        """The index of ``section``: an index, a name, or an object with ``.name()`` (a
        NEURON section)."""
        if isinstance(section, (int, np.integer)) and not isinstance(section, bool):
            if not 0 <= section < self.n:
                raise ValueError(f"section index {section} is outside 0..{self.n - 1}")
            return int(section)
        name = section if isinstance(section, str) else getattr(section, "name", lambda: None)()
        if name not in self._lookup:
            raise ValueError(f"section {name or section!r} is not in this tree")
        return self._lookup[name]

    def distance_profile(self, section, x: float) -> tuple[np.ndarray, np.ndarray]:
        """Path distance from the point ``(section, x)`` to every section.

        Along a section the distance from a point is ``entry_distance + |x' -
        entry_x| * L``: the path enters the section at ``entry_x`` (the point itself,
        the attachment point of the child branch that leads to it, or the section's
        own end at its parent). Sections not connected to the point get ``inf``.

        Returns
        -------
        entry_x, entry_distance : ndarray, shape (n,)
            Dimensionless (0..1) and µm.
        """
        start = self.index(section)
        x = checks.finite_number("x", x)
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"x must lie in [0, 1], got {x}")
        entry_x = np.full(self.n, np.nan)
        entry_d = np.full(self.n, np.inf)
        entry_x[start], entry_d[start] = x, 0.0
        queue = deque([start])
        seen = np.zeros(self.n, dtype=bool)
        seen[start] = True
        length, parent, parent_x, end = self.length, self.parent, self.parent_x, self.attach_end
        while queue:
            s = queue.popleft()
            here_x, here_d, L = entry_x[s], entry_d[s], length[s]
            mother = parent[s]
            if mother >= 0 and not seen[mother]:
                seen[mother] = True
                entry_x[mother] = parent_x[s]
                entry_d[mother] = here_d + abs(end[s] - here_x) * L
                queue.append(mother)
            for child in self._children[s]:
                if not seen[child]:
                    seen[child] = True
                    entry_x[child] = end[child]
                    entry_d[child] = here_d + abs(parent_x[child] - here_x) * L
                    queue.append(child)
        return entry_x, entry_d

    def path_distance(self, section, x: float, sections, xs) -> np.ndarray:
        """Path distances in µm from ``(section, x)`` to the points ``(sections[k],
        xs[k])`` (indices into this tree)."""
        entry_x, entry_d = self.distance_profile(section, x)
        sections = np.asarray(sections, dtype=np.int64)
        xs = np.asarray(xs, dtype=np.float64)
        return entry_d[sections] + np.abs(xs - entry_x[sections]) * self.length[sections]

    def soma_distance(self, sections, xs) -> np.ndarray:
        """Path distances in µm from :attr:`origin` (soma(0.5))."""
        return self.path_distance(*self.origin, sections, xs)

    def spiny_intervals(self, min_distance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The parts of the dendrites farther than ``min_distance`` µm from the origin.

        Returns
        -------
        section, x_start, x_end : ndarray, shape (m,)
            Intervals ``[x_start, x_end]`` of positive length, at most two per
            section (two only for a section the origin's path runs through the
            middle of), in section order.
        """
        min_distance = checks.finite_number(
            "min_distance", min_distance, non_negative=True, unit="µm"
        )
        entry_x, entry_d = self.distance_profile(*self.origin)
        found: list[tuple[int, float, float]] = []
        for s in np.flatnonzero(self.dendrite).tolist():
            L, xe, de = self.length[s], entry_x[s], entry_d[s]
            if not (L > 0 and math.isfinite(de)):
                continue
            if de >= min_distance:
                found.append((s, 0.0, 1.0))
                continue
            reach = (min_distance - de) / L  # |x - xe| must exceed this
            if xe - reach > 0.0:
                found.append((s, 0.0, xe - reach))
            if xe + reach < 1.0:
                found.append((s, xe + reach, 1.0))
        section = np.array([f[0] for f in found], dtype=np.int64)
        start = np.array([f[1] for f in found], dtype=np.float64)
        stop = np.array([f[2] for f in found], dtype=np.float64)
        return section, start, stop

    def qualifying_length(self, min_distance: float) -> float:
        """Dendritic length in µm farther than ``min_distance`` from the origin."""
        section, start, stop = self.spiny_intervals(min_distance)
        return float(np.sum((stop - start) * self.length[section]))


@dataclass(frozen=True, eq=False)
class Sites:
    """Points on a :class:`SectionTree`: ``(section[k], x[k])``.

    Attributes
    ----------
    tree : SectionTree
    section : ndarray of int64, shape (m,)
        Section indices into ``tree``.
    x : ndarray of float, shape (m,)
        Positions along the sections (0..1).
    soma_distance : ndarray of float, shape (m,)
        Path distance in µm from the tree's origin (soma(0.5)), computed here.
    """

    tree: SectionTree
    section: np.ndarray
    x: np.ndarray
    soma_distance: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        section = np.array(self.section, dtype=np.int64).ravel()
        x = np.array(self.x, dtype=np.float64).ravel()
        if section.shape != x.shape:
            raise ValueError(f"section and x differ in length ({section.size} != {x.size})")
        if section.size and (section.min() < 0 or section.max() >= self.tree.n):
            raise ValueError(f"section indices must lie in 0..{self.tree.n - 1}")
        if not (np.isfinite(x).all() and ((x >= 0) & (x <= 1)).all()):
            raise ValueError("x must lie in [0, 1]")
        distance = self.tree.soma_distance(section, x)
        for array in (section, x, distance):
            array.setflags(write=False)
        object.__setattr__(self, "section", section)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "soma_distance", distance)

    def __len__(self) -> int:
        return int(self.section.size)

    def subset(self, indices) -> Sites:
        """The sites ``indices`` (in that order)."""
        indices = self._indices(indices, "indices")
        return Sites(self.tree, self.section[indices], self.x[indices])

    def distance_from(self, section, x: float) -> np.ndarray:
        """Path distance in µm from the point ``(section, x)`` to every site."""
        return self.tree.path_distance(section, x, self.section, self.x)

    def names(self) -> list[str]:
        """``"section(x)"`` for every site."""
        return [f"{self.tree.names[s]}({x:g})" for s, x in zip(self.section, self.x, strict=True)]

    def _indices(self, indices, name: str) -> np.ndarray:
        """Site indices, flattened, each in ``0..len(self) - 1``."""
        return checks.index_array(name, np.ravel(indices), len(self))


# ------------------------------------------------------------------------------ patterns
def distributed(sites: Sites, n: int, rng: RngLike = None) -> np.ndarray:
    """``n`` distinct sites drawn uniformly at random.

    Parameters
    ----------
    sites : Sites
        Candidate sites (e.g. every spine position of
        :func:`neuron_bridge.spines.spine_sites`, which are uniform over the spiny
        dendrite, so the draw is uniform over the spiny dendrite too).
    n : int
        Number of sites, at most ``len(sites)``.
    rng : numpy Generator, int seed or None

    Returns
    -------
    ndarray of int64, shape (n,)
        Sorted indices into ``sites``.
    """
    n = checks.non_negative_int("n", n)
    if n > len(sites):
        raise ValueError(f"n = {n} is more than the {len(sites)} sites")
    chosen = _generator(rng).choice(len(sites), size=n, replace=False)
    return np.sort(chosen).astype(np.int64)


def clustered(
    sites: Sites,
    n: int,
    length: float = 20.0,
    center=None,
    rng: RngLike = None,
    *,
    max_tries: int = 1000,
) -> np.ndarray:
    """``n`` distinct sites within ``length`` µm of dendrite around a centre.

    The cluster's sites are drawn uniformly among the sites whose path distance from
    the centre is at most ``length / 2``, so any two of them are at most ``length``
    apart along the dendrite.

    Parameters
    ----------
    sites : Sites
    n : int
        Number of sites in the cluster.
    length : float, default 20
        Extent of the cluster along the dendrite in µm.
    center : (section, x), int or None
        The centre: a point (``section`` an index, a name or a NEURON section), or the
        index of a site. ``None`` draws the centre uniformly among the sites, again
        (up to ``max_tries`` times) while fewer than ``n`` sites lie within
        ``length / 2`` of it.
    rng : numpy Generator, int seed or None
    max_tries : int, default 1000
        Random centres tried before giving up.

    Returns
    -------
    ndarray of int64, shape (n,)
        Sorted indices into ``sites``.

    Raises
    ------
    ValueError
        When fewer than ``n`` sites lie around the given centre, or no random centre
        with ``n`` sites around it was found.
    """
    n = checks.non_negative_int("n", n)
    length = checks.finite_number("length", length, non_negative=True, unit="µm")
    max_tries = checks.non_negative_int("max_tries", max_tries)
    generator = _generator(rng)
    if n > len(sites):
        raise ValueError(f"n = {n} is more than the {len(sites)} sites")
    if center is not None:
        if isinstance(center, (int, np.integer)) and not isinstance(center, bool):
            index = sites._indices([center], "center")[0]
            point = (int(sites.section[index]), float(sites.x[index]))
        else:
            try:
                section, x = center
            except (TypeError, ValueError):
                raise ValueError(
                    f"center must be (section, x), a site index or None, got {center!r}"
                ) from None
            point = (sites.tree.index(section), x)
        near = np.flatnonzero(sites.distance_from(*point) <= 0.5 * length)
        if near.size < n:
            raise ValueError(
                f"only {near.size} sites lie within length/2 = {0.5 * length:g} µm of the "
                f"center {center!r}; n = {n} were asked for"
            )
        return np.sort(generator.choice(near, size=n, replace=False)).astype(np.int64)
    for _ in range(max_tries):
        index = int(generator.integers(len(sites)))
        near = np.flatnonzero(
            sites.distance_from(int(sites.section[index]), float(sites.x[index])) <= 0.5 * length
        )
        if near.size >= n:
            return np.sort(generator.choice(near, size=n, replace=False)).astype(np.int64)
    raise ValueError(
        f"no random center with n = {n} sites within length/2 = {0.5 * length:g} µm was "
        f"found in max_tries = {max_tries} tries"
    )


# ------------------------------------------------------------------------- trial inputs
@dataclass(frozen=True, eq=False)
class TrialInputs:
    """The synaptic input of every trial, as events on one pool of synapses.

    Attributes
    ----------
    sites : Sites
        The pool: synapse ``k`` of the model sits at ``sites.section[k], sites.x[k]``.
    site_index : ndarray of int64
        For each pool synapse, its index in the site table the pool was built from.
    active : tuple of ndarray of int64
        Per trial, the pool synapses activated together at ``activation_time``.
    background : ndarray of int64
        Pool synapses receiving Poisson background input (the same in every trial).
    activation_time : float
        ms.
    activation_weight : float
        NetCon weight of an activation event in µS.
    background_rate_hz : float
        Rate of each background train in Hz.
    background_weight : float
        µS.
    seed : int
        Seed of the background trains; trial ``q`` gets
        ``poisson_times(rate, start, stop, seed=seed, instance=q, n_synapses=len(background))``.
    background_start, background_stop : float
        The background trains cover ``[start, stop)`` in ms.
    """

    sites: Sites
    site_index: np.ndarray
    active: tuple
    background: np.ndarray
    activation_time: float
    activation_weight: float
    background_rate_hz: float
    background_weight: float
    seed: int
    background_start: float
    background_stop: float

    @property
    def n_trials(self) -> int:
        return len(self.active)

    @property
    def n_synapses(self) -> int:
        """Size of the pool."""
        return len(self.sites)

    def _trial(self, trial) -> int:
        trial = checks.non_negative_int("trial", trial)
        if trial >= self.n_trials:
            raise ValueError(f"trial {trial} does not exist (there are {self.n_trials})")
        return trial

    def background_times(self, trial: int) -> list[np.ndarray]:
        """The background trains of ``trial``, one per :attr:`background` synapse (ms).

        Trial numbers seed the trains, so a trial's input does not depend on which
        other trials run with it."""
        return poisson_times(
            self.background_rate_hz, self.background_start, self.background_stop,
            seed=self.seed, instance=trial, n_synapses=int(self.background.size),
        )  # fmt: skip

    def events(self, trial: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every event of one trial: pool synapse, time (ms), weight (µS), sorted by time."""
        trial = self._trial(trial)
        active = self.active[trial]
        trains = self.background_times(trial)
        synapse = np.concatenate(
            [active, np.repeat(self.background, [train.size for train in trains])]
        ).astype(np.int64)
        time = np.concatenate([np.full(active.size, self.activation_time), *trains])
        weight = np.concatenate(
            [np.full(active.size, self.activation_weight),
             np.full(time.size - active.size, self.background_weight)]
        )  # fmt: skip
        order = np.argsort(time, kind="stable")
        return synapse[order], time[order], weight[order]

    def to_engine(self, engine, rows, kind: str = "AmpaNmda", trials=None) -> None:
        """Give every engine instance the events of one trial.

        Parameters
        ----------
        engine : dhs.engine.Engine
            Its model holds the pool's synapses (built from the NEURON model they were
            placed in, :func:`neuron_bridge.export_model`).
        rows : sequence of int
            Row of pool synapse ``k`` in the engine's ``kind`` table
            (:func:`synapse_rows`).
        kind : str, default "AmpaNmda"
        trials : sequence of int, optional
            The trial each instance runs; default instance ``q`` runs trial ``q``.

        Activations go in with :meth:`~dhs.engine.Engine.add_events`, the background with
        :meth:`~dhs.engine.Engine.add_poisson` (seeded by the trial number), both on
        top of events the model already has.
        """
        rows = np.asarray(rows)
        if rows.shape != (self.n_synapses,) or rows.dtype.kind not in "iu":
            raise ValueError(f"rows must be {self.n_synapses} integer rows, one per pool synapse")
        if trials is None:
            trials = np.arange(engine.n_instances)
        trials = np.asarray(trials)
        if trials.shape != (engine.n_instances,) or trials.dtype.kind not in "iu":
            raise ValueError(f"trials must be {engine.n_instances} integers, one per instance")
        for trial in trials.tolist():
            self._trial(trial)
        instances = np.concatenate(
            [np.full(self.active[t].size, q) for q, t in enumerate(trials.tolist())]
        ).astype(np.int64)
        synapses = np.concatenate([rows[self.active[t]] for t in trials.tolist()])
        engine.add_events(
            kind, synapses.astype(np.int64), instances, self.activation_time,
            self.activation_weight,
        )  # fmt: skip
        if self.background.size:
            engine.add_poisson(
                kind, rows[self.background].astype(np.int64), self.background_rate_hz,
                self.background_weight, seed=self.seed, start=self.background_start,
                stop=self.background_stop, instance_ids=trials.astype(np.int64),
            )  # fmt: skip

    def to_neuron(self, synapses: Sequence, trial: int) -> NeuronEvents:
        """Send one trial's events to NEURON point processes (kept in the result).

        ``synapses[k]`` is pool synapse ``k``. The events are scheduled with
        ``NetCon.event`` at every ``finitialize``; keep the returned object while
        NEURON runs and call :meth:`NeuronEvents.release` afterwards. Such NetCons have
        no source, so :func:`neuron_bridge.export_model` does not export these events:
        give them to the engine with :meth:`to_engine`.
        """
        if len(synapses) != self.n_synapses:
            raise ValueError(
                f"synapses must hold the {self.n_synapses} pool synapses, got {len(synapses)}"
            )
        return NeuronEvents(list(synapses), *self.events(trial))


def trial_inputs(
    sites: Sites,
    active,
    background=(),
    *,
    activation_time: float,
    activation_weight: float,
    background_rate_hz: float = 0.0,
    background_weight: float = 0.0,
    seed: int = 0,
    background_start: float = 0.0,
    background_stop: float = 0.0,
) -> TrialInputs:
    """Build the synapse pool and the events of every trial.

    Parameters
    ----------
    sites : Sites
        The site table the patterns were drawn from.
    active : sequence of array_like of int
        Per trial, the indices into ``sites`` activated together (e.g. from
        :func:`distributed` or :func:`clustered`).
    background : array_like of int
        Indices into ``sites`` that receive Poisson background input in every trial.
    activation_time : float
        ms.
    activation_weight : float
        µS per activated synapse.
    background_rate_hz, background_weight : float
        Hz per background synapse; µS.
    seed : int
        Seed of the background trains.
    background_start, background_stop : float
        ms; the background trains cover ``[background_start, background_stop)``, which
        must not be empty when there is background input.

    Returns
    -------
    TrialInputs
        The pool is every site used, sorted by site index, without repeats.
    """
    if isinstance(active, np.ndarray) and active.ndim == 1:
        raise ValueError("active must be a sequence of index arrays, one per trial")
    active = [sites._indices(a, "active") for a in active]
    for q, chosen in enumerate(active):
        if np.unique(chosen).size != chosen.size:
            raise ValueError(f"active[{q}] repeats a site")
    background = sites._indices(background, "background")
    if np.unique(background).size != background.size:
        raise ValueError("background repeats a site")
    pool = np.unique(np.concatenate([*active, background, np.zeros(0, np.int64)]))
    position = {int(site): k for k, site in enumerate(pool.tolist())}

    def to_pool(indices: np.ndarray) -> np.ndarray:
        pooled = np.array([position[int(i)] for i in indices.tolist()], dtype=np.int64)
        pooled.setflags(write=False)
        return pooled

    checks.finite_number("activation_weight", activation_weight, non_negative=True, unit="µS")
    checks.finite_number("background_weight", background_weight, non_negative=True, unit="µS")
    checks.finite_number("activation_time", activation_time, non_negative=True, unit="ms")
    if background.size and background_rate_hz > 0 and not background_stop > background_start:
        raise ValueError(
            f"background_stop ({background_stop} ms) must be after background_start "
            f"({background_start} ms) for background input at {background_rate_hz} Hz"
        )
    # poisson_times checks the rate, the interval and the seed
    poisson_times(background_rate_hz, background_start, background_stop, seed=seed, instance=0,
                  n_synapses=0)  # fmt: skip
    pool.setflags(write=False)
    return TrialInputs(
        sites=sites.subset(pool),
        site_index=pool,
        active=tuple(to_pool(a) for a in active),
        background=to_pool(background),
        activation_time=float(activation_time),
        activation_weight=float(activation_weight),
        background_rate_hz=float(background_rate_hz),
        background_weight=float(background_weight),
        seed=int(seed),
        background_start=float(background_start),
        background_stop=float(background_stop),
    )


# -------------------------------------------------------------------------------- NEURON
class NeuronEvents:
    """Events sent to NEURON point processes with ``NetCon.event`` at each
    ``finitialize`` (an ``FInitializeHandler``), so that a NEURON model runs a trial
    natively. One source-less NetCon per (synapse, weight).

    Parameters
    ----------
    synapses : list of NEURON point processes
    synapse, time, weight : ndarray
        Event ``j`` reaches ``synapses[synapse[j]]`` at ``time[j]`` ms with weight
        ``weight[j]`` µS.
    """

    def __init__(self, synapses: list, synapse, time, weight):
        from neuron import h

        synapse = np.asarray(synapse, dtype=np.int64)
        time = np.asarray(time, dtype=np.float64)
        weight = np.asarray(weight, dtype=np.float64)
        self._groups: list[tuple[object, np.ndarray]] = []
        pairs = sorted({(int(s), float(w)) for s, w in zip(synapse, weight, strict=True)})
        for s, w in pairs:
            netcon = h.NetCon(None, synapses[s])
            netcon.weight[0] = w
            times = np.sort(time[(synapse == s) & (weight == w)])
            self._groups.append((netcon, times))
        self.n_events = int(time.size)
        self._handler = h.FInitializeHandler(1, self._send)

    def _send(self) -> None:
        for netcon, times in self._groups:
            for t in times.tolist():
                netcon.event(t)

    @property
    def netcons(self) -> list:
        return [netcon for netcon, _ in self._groups]

    def release(self) -> None:
        """Drop the NetCons and the handler (NEURON deletes them)."""
        self._groups = []
        self._handler = None


def synapse_rows(synapses: Sequence, kind: str = "AmpaNmda") -> np.ndarray:
    """Rows of NEURON point processes in :func:`neuron_bridge.export_model`'s ``kind``
    table (what :meth:`dhs.engine.Engine.add_events` takes), in the order given."""
    from .export import point_process_order

    row_of = {obj.hname(): k for k, obj in enumerate(point_process_order(kind))}
    rows = []
    for synapse in synapses:
        name = synapse.hname()
        if name not in row_of:
            raise ValueError(f"{name} is not a located {kind}")
        rows.append(row_of[name])
    return np.array(rows, dtype=np.int64)

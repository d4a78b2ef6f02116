"""Dendritic spines for any NEURON cell: explicit spines, the F-factor, few-spine models.

Explicit spines (:func:`add_spines`, :func:`add_spines_at`)
    Each spine is two new sections, a *neck* attached to the dendrite at the spine's
    position and a *head* attached to the neck's far end, each with ``nseg = 1``.
    Defaults (:class:`SpineParameters`) are those of the DeepDendrite spine experiment
    (Zhang et al. 2023, after Eyal et al. 2018): neck 1.35 µm long and 0.25 µm wide,
    head area 2.8 µm² (a cylinder with ``L = diam``, whose lateral area ``pi diam L``
    is what NEURON counts), 1.3 spines per µm on dendrite farther than 60 µm (path
    distance from ``soma(0.5)``).

Where the spines go (:func:`spine_sites`)
    The qualifying dendrite is the exact part of each dendritic section beyond
    ``min_distance`` (partial sections count partially; :func:`qualifying_length`).
    The number of spines is ``floor(density * qualifying_length + 0.5)``, and their
    positions are drawn independently and uniformly along the qualifying length with
    ``numpy.random.default_rng(seed)`` (a Poisson process conditioned on its total), so
    the total follows the density rule to half a spine while the count per section
    fluctuates as it would in a Poisson process. Sites are sorted by section (the
    cell's section order) and position. A spine attaches to the dendrite's node
    nearest its position (NEURON's ``connect``); the exact position is kept.

Spine membrane
    Copied from the parent segment (the one containing the spine's position): ``cm``
    and, when the parent has ``pas``, ``pas`` with its ``g`` and ``e``. Active
    channels (``hh`` and every other mechanism) are **not** copied: spines are
    passive. The axial resistivity of both sections is ``neck_ra`` (default: the
    parent section's ``Ra``).

The F-factor (:func:`apply_f_factor`)
    The alternative to explicit spines (Eyal et al. 2018): in every dendritic segment
    whose centre lies farther than ``min_distance`` from the soma, ``cm`` and every
    conductance density are multiplied by ``F`` (1.9 in the paper). A conductance
    density is a PARAMETER of a density mechanism whose name begins with ``g``
    (``pas.g``; ``hh.gnabar``, ``hh.gkbar``, ``hh.gl``; ``gbar`` of most .mod files),
    unless ``conductances`` names them. :func:`area_matched_f_factor` gives the ``F``
    that adds exactly the expected spine membrane area.

Few-spine models (``add_spines(mode="few", at=...)``)
    The F-factor everywhere beyond ``min_distance`` plus explicit spines only at the
    given sites (where synapses are active), with the membrane the parent had before the
    F-factor. The few explicit spines add their area on top of the F-factor (their share
    is negligible when they are few).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from neuron import h

from dhs import checks

from .morphology import Cell
from .patterns import SectionTree, Sites

__all__ = [
    "FFactor",
    "SpineParameters",
    "Spines",
    "add_spines",
    "add_spines_at",
    "apply_f_factor",
    "area_matched_f_factor",
    "qualifying_length",
    "section_tree",
    "spine_sites",
    "spine_synapses",
]

MODES = ("full", "few")


def _number(value, name: str, *, positive: bool = False) -> float:
    """A finite float, positive or non-negative, else ValueError naming the parameter."""
    return checks.finite_number(name, value, positive=positive, non_negative=not positive)


@dataclass(frozen=True)
class SpineParameters:
    """Geometry, density and placement of spines; all lengths in µm.

    Attributes
    ----------
    neck_length : float, default 1.35
        µm.
    neck_diameter : float, default 0.25
        µm.
    head_area : float, default 2.8
        µm²; the head is a cylinder with ``L = diam = sqrt(head_area / pi)``.
    density : float, default 1.3
        Spines per µm of qualifying dendrite.
    min_distance : float, default 60
        Spines (and the F-factor) only beyond this path distance from soma(0.5), µm.
    neck_ra : float or None, default None
        Axial resistivity of neck and head in Ω·cm; None: the parent section's ``Ra``.
    f_factor : float, default 1.9
        The F-factor of the few-spine mode (dimensionless).
    """

    neck_length: float = 1.35
    neck_diameter: float = 0.25
    head_area: float = 2.8
    density: float = 1.3
    min_distance: float = 60.0
    neck_ra: float | None = None
    f_factor: float = 1.9

    def __post_init__(self) -> None:
        for name in ("neck_length", "neck_diameter", "head_area", "f_factor"):
            object.__setattr__(self, name, _number(getattr(self, name), name, positive=True))
        for name in ("density", "min_distance"):
            object.__setattr__(self, name, _number(getattr(self, name), name))
        if self.neck_ra is not None:
            object.__setattr__(self, "neck_ra", _number(self.neck_ra, "neck_ra", positive=True))

    @property
    def head_diameter(self) -> float:
        """Diameter (and length) of the head in µm."""
        return math.sqrt(self.head_area / math.pi)

    @property
    def spine_area(self) -> float:
        """Membrane area of one spine in µm²: the neck's lateral area plus the head's."""
        return math.pi * self.neck_diameter * self.neck_length + self.head_area


# ------------------------------------------------------------------------------ geometry
def _soma(cell: Cell):
    if not isinstance(cell, Cell):
        raise ValueError(f"cell must be a neuron_bridge.Cell, got {type(cell).__name__}")
    somas = cell.soma
    if not somas:
        raise ValueError(f"cell {cell.name!r} has no soma section (distances start there)")
    return somas[0]


def section_tree(cell: Cell) -> SectionTree:
    """The cell's sections as a :class:`~neuron_bridge.patterns.SectionTree` (same
    order as ``cell.sections``), with path distances measured from ``soma(0.5)``.

    A section whose parent is not part of the cell is taken as a root."""
    soma = _soma(cell)
    sections = list(cell.sections)
    index = {sec: i for i, sec in enumerate(sections)}
    dendrites = set(cell.dendrites)
    parent, parent_x = [], []
    for sec in sections:
        above = sec.parentseg()
        inside = above is not None and above.sec in index
        parent.append(index[above.sec] if inside else -1)
        parent_x.append(above.x if inside else 0.0)
    return SectionTree(
        names=tuple(sec.name() for sec in sections),
        length=[sec.L for sec in sections],
        parent=parent,
        parent_x=parent_x,
        attach_end=[sec.orientation() for sec in sections],
        dendrite=[sec in dendrites for sec in sections],
        origin=(index[soma], 0.5),
    )


def qualifying_length(cell: Cell, min_distance: float = 60.0) -> float:
    """Length in µm of the cell's dendrites farther than ``min_distance`` µm (path
    distance) from ``soma(0.5)``; sections that cross the threshold count in part."""
    min_distance = _number(min_distance, "min_distance")
    return section_tree(cell).qualifying_length(min_distance)


def spine_sites(cell: Cell, params: SpineParameters | None = None, *, seed: int = 0) -> Sites:
    """Where the density rule puts spines (see the module docstring); nothing is built.

    Parameters
    ----------
    cell : Cell
    params : SpineParameters, optional
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; the same seed gives the same sites.

    Returns
    -------
    Sites
        ``floor(density * qualifying_length + 0.5)`` sites, sorted by section and x.
    """
    params = SpineParameters() if params is None else params
    seed = checks.non_negative_int("seed", seed)
    tree = section_tree(cell)
    section, start, stop = tree.spiny_intervals(params.min_distance)
    lengths = (stop - start) * tree.length[section]
    total = float(lengths.sum())
    count = math.floor(params.density * total + 0.5)
    rng = np.random.default_rng(int(seed))
    along = rng.uniform(0.0, total, size=count)  # µm along the concatenated intervals
    bounds = np.concatenate(([0.0], np.cumsum(lengths)))
    which = np.clip(np.searchsorted(bounds, along, side="right") - 1, 0, max(section.size - 1, 0))
    sec_of = section[which]
    fraction = np.clip((along - bounds[which]) / np.where(lengths > 0, lengths, 1.0)[which], 0, 1)
    x = start[which] + fraction * (stop[which] - start[which])
    order = np.lexsort((x, sec_of))
    return Sites(tree, sec_of[order], np.clip(x[order], 0.0, 1.0))


# ------------------------------------------------------------------------------ F-factor
def _mechanism_parameters(name: str) -> list[str]:
    """PARAMETER names of a density mechanism, without the ``_<name>`` suffix."""
    standard = h.MechanismStandard(name, 1)
    found = h.ref("")
    names = []
    for i in range(int(standard.count())):
        standard.name(found, i)
        full = found[0]
        suffix = f"_{name}"
        names.append(full[: -len(suffix)] if full.endswith(suffix) else full)
    return names


def _segment_index(section, x: float) -> int:
    """Index of the segment of ``section`` that contains ``x``."""
    return min(int(x * section.nseg), int(section.nseg) - 1)


@dataclass(eq=False)
class FFactor:
    """What :func:`apply_f_factor` changed, so that it can be undone.

    Attributes
    ----------
    factor : float
    min_distance : float
        µm.
    scaled : list of (section, int)
        The scaled segments as (section, segment index).
    parameters : dict of str to tuple of str
        Per mechanism, the parameters that were scaled.
    originals : dict
        ``(section, segment index) -> (cm, {(mechanism, parameter): value})`` before
        scaling.
    """

    factor: float
    min_distance: float
    scaled: list = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    originals: dict = field(default_factory=dict)
    active: bool = True

    def original_membrane(self, segment) -> tuple[float, dict]:
        """``(cm, {(mechanism, parameter): value})`` of ``segment`` before the F-factor
        (its present values where it was not scaled)."""
        section = segment.sec
        key = (section, _segment_index(section, segment.x))
        if self.active and key in self.originals:
            cm, values = self.originals[key]
            return cm, dict(values)
        return segment.cm, {}

    def undo(self) -> None:
        """Put back the original ``cm`` and conductances (idempotent)."""
        if not self.active:
            return
        for (section, k), (cm, values) in self.originals.items():
            segment = section((k + 0.5) / section.nseg)
            segment.cm = cm
            for (mechanism, parameter), value in values.items():
                setattr(getattr(segment, mechanism), parameter, value)
        self.active = False


def apply_f_factor(
    cell: Cell,
    factor: float = 1.9,
    min_distance: float = 60.0,
    *,
    conductances: Mapping[str, Sequence[str]] | None = None,
) -> FFactor:
    """Fold spines into the dendrite: multiply ``cm`` and conductance densities by ``F``.

    Every segment of ``cell.dendrites`` whose centre is farther than ``min_distance``
    µm (path distance from ``soma(0.5)``) from the soma gets ``cm *= factor`` and, for
    every density mechanism it has (ions excepted), every conductance density ``*=
    factor``: the PARAMETERs whose names begin with ``g`` (``pas.g``, ``hh.gnabar``,
    ``hh.gkbar``, ``hh.gl``, ...), or the ones ``conductances`` lists for that mechanism
    (``{"hh": ["gnabar"]}``; mechanisms not in it keep the ``g`` rule). Reversal
    potentials and everything else stay. Calling it twice scales twice.

    Returns
    -------
    FFactor
        The record of the change (:meth:`FFactor.undo` reverts it).
    """
    factor = _number(factor, "factor", positive=True)
    min_distance = _number(min_distance, "min_distance")
    origin = _soma(cell)(0.5)
    if conductances is not None and not isinstance(conductances, Mapping):
        raise ValueError("conductances must map mechanism names to parameter names")
    chosen: dict[str, tuple[str, ...]] = {}
    record = FFactor(factor=factor, min_distance=min_distance)
    for section in cell.dendrites:
        for k, segment in enumerate(section):
            if not h.distance(origin, segment) > min_distance:
                continue
            values = {}
            for mechanism in segment:
                name = mechanism.name()
                if name.endswith("_ion"):
                    continue
                if name not in chosen:
                    known = _mechanism_parameters(name)
                    wanted = (conductances or {}).get(name)
                    if wanted is None:
                        wanted = [p for p in known if p.startswith("g")]
                    unknown = [p for p in wanted if p not in known]
                    if unknown:
                        raise ValueError(
                            f"conductances: {name} has no parameter(s) {unknown}; it has {known}"
                        )
                    chosen[name] = tuple(wanted)
                for parameter in chosen[name]:
                    values[(name, parameter)] = getattr(mechanism, parameter)
            record.originals[(section, k)] = (segment.cm, values)
            segment.cm = segment.cm * factor
            for (name, parameter), value in values.items():
                setattr(getattr(segment, name), parameter, value * factor)
            record.scaled.append((section, k))
    record.parameters = dict(chosen)
    return record


def area_matched_f_factor(cell: Cell, params: SpineParameters | None = None) -> float:
    """The F that adds exactly the expected spine area to the segments the F-factor
    scales: ``1 + density * spine_area * L / A``, with ``L`` and ``A`` the length (µm)
    and membrane area (µm²) of the dendritic segments whose centre is beyond
    ``min_distance``. Depends on ``nseg``."""
    params = SpineParameters() if params is None else params
    origin = _soma(cell)(0.5)
    length = area = 0.0
    for section in cell.dendrites:
        for segment in section:
            if h.distance(origin, segment) > params.min_distance:
                length += section.L / section.nseg
                area += segment.area()
    if area == 0:
        raise ValueError(f"cell {cell.name!r} has no dendrite beyond {params.min_distance} µm")
    return 1.0 + params.density * params.spine_area * length / area


# -------------------------------------------------------------------------------- spines
@dataclass(eq=False)
class Spines:
    """Spines added to a cell; keep this object while NEURON uses them.

    The neck and head sections are Python-owned: NEURON deletes them when this object
    (and every other reference) goes, or at once with :meth:`delete`.

    Attributes
    ----------
    params : SpineParameters
    mode : {"full", "few", "at"}
        How they were made: every site, a few sites plus the F-factor
        (:func:`add_spines`), or given locations (:func:`add_spines_at`).
    sites : Sites
        Every site of the density rule (modes "full" and "few") or the given locations.
    explicit : ndarray of int64
        For explicit spine ``k`` (``necks[k]``, ``heads[k]``), its index in ``sites``.
    necks, heads : list of nrn.Section
    f_factor : FFactor or None
        The F-factor applied with them (mode "few"; undone by :meth:`delete`).
    """

    params: SpineParameters
    mode: str
    sites: Sites
    explicit: np.ndarray
    necks: list
    heads: list
    f_factor: FFactor | None = None

    def __len__(self) -> int:
        return len(self.necks)

    @property
    def parent_segments(self) -> list:
        """The dendritic segment each neck is attached to (``neck.parentseg()``)."""
        return [neck.parentseg() for neck in self.necks]

    @property
    def soma_distance(self) -> np.ndarray:
        """Path distance (µm) from soma(0.5) of each explicit spine's position."""
        return self.sites.soma_distance[self.explicit]

    def head_of(self, site: int):
        """The head section of the explicit spine at ``sites[site]``."""
        return self.heads[self._spine_of([site])[0]]

    def _spine_of(self, sites) -> list[int]:
        """Explicit spine numbers of site indices (ValueError for a site without one)."""
        spine_of = {int(site): k for k, site in enumerate(self.explicit.tolist())}
        missing = [int(site) for site in sites if int(site) not in spine_of]
        if missing:
            raise ValueError(f"sites {missing[:10]} have no explicit spine")
        return [spine_of[int(site)] for site in sites]

    def delete(self) -> None:
        """Delete the spine sections and undo the F-factor applied with them."""
        for section in [*self.heads, *self.necks]:
            try:
                h.delete_section(sec=section)
            except (ReferenceError, RuntimeError):
                pass  # already gone
        self.necks, self.heads = [], []
        self.explicit = np.zeros(0, dtype=np.int64)
        if self.f_factor is not None:
            self.f_factor.undo()


def _locations(cell: Cell, tree: SectionTree, locations) -> Sites:
    """``Sites`` from a Sites on the cell's tree or from (section, x) pairs."""
    if isinstance(locations, Sites):
        if locations.tree.names != tree.names:
            raise ValueError("locations: these Sites belong to another cell's tree")
        return Sites(tree, locations.section, locations.x)
    if not isinstance(locations, Iterable):
        raise ValueError("locations must be Sites or an iterable of (section, x)")
    sections, xs = [], []
    for item in locations:
        try:
            section, x = item
        except (TypeError, ValueError):
            raise ValueError(f"locations: expected (section, x), got {item!r}") from None
        sections.append(tree.index(section))
        xs.append(float(x))
    return Sites(tree, sections, xs)


def _build(cell: Cell, sites: Sites, chosen: np.ndarray, params: SpineParameters,
           f_factor: FFactor | None, name: str) -> tuple[list, list]:  # fmt: skip
    sections = list(cell.sections)
    necks, heads = [], []
    head_diameter = params.head_diameter
    for k, site in enumerate(chosen.tolist()):
        dendrite = sections[int(sites.section[site])]
        x = float(sites.x[site])
        parent = dendrite(x)
        if f_factor is not None:
            cm, scaled = f_factor.original_membrane(parent)
        else:
            cm, scaled = parent.cm, {}
        has_pas = h.ismembrane("pas", sec=dendrite)
        neck = h.Section(name=f"{cell.name}.{name}_neck[{k}]")
        head = h.Section(name=f"{cell.name}.{name}_head[{k}]")
        neck.L, neck.diam, neck.nseg = params.neck_length, params.neck_diameter, 1
        head.L, head.diam, head.nseg = head_diameter, head_diameter, 1
        for section in (neck, head):
            section.Ra = dendrite.Ra if params.neck_ra is None else params.neck_ra
            section.cm = cm
            if has_pas:
                section.insert("pas")
                section(0.5).pas.g = scaled.get(("pas", "g"), parent.pas.g)
                section(0.5).pas.e = parent.pas.e
        neck.connect(dendrite(x), 0)
        head.connect(neck(1), 0)
        necks.append(neck)
        heads.append(head)
    return necks, heads


def add_spines_at(
    cell: Cell,
    locations,
    params: SpineParameters | None = None,
    *,
    f_factor: FFactor | None = None,
    name: str = "spine",
) -> Spines:
    """Explicit spines at given locations (few-spine models, or any hand-made set).

    Parameters
    ----------
    cell : Cell
    locations : Sites or iterable of (section, x)
        Where the necks attach; ``section`` a NEURON section of ``cell`` (or its name or
        index in ``cell.sections``).
    params : SpineParameters, optional
        Geometry and ``neck_ra`` (density and distance are not used).
    f_factor : FFactor, optional
        The F-factor already applied to the cell: the spines then get the membrane
        the parent had before it (see the module docstring).
    name : str, default "spine"
        Sections are named ``<cell.name>.<name>_neck[k]`` and ``..._head[k]``.

    Returns
    -------
    Spines
        ``mode="at"``, ``sites`` = the locations, one spine per location in order.
    """
    params = SpineParameters() if params is None else params
    if f_factor is not None and not isinstance(f_factor, FFactor):
        raise ValueError(f"f_factor must be an FFactor or None, got {type(f_factor).__name__}")
    tree = section_tree(cell)
    sites = _locations(cell, tree, locations)
    chosen = np.arange(len(sites), dtype=np.int64)
    necks, heads = _build(cell, sites, chosen, params, f_factor, name)
    return Spines(params, "at", sites, chosen, necks, heads, None)


def add_spines(
    cell: Cell,
    params: SpineParameters | None = None,
    *,
    seed: int = 0,
    mode: str = "full",
    at=None,
    name: str = "spine",
) -> Spines:
    """Spines by the density rule: all explicit, or the few-spine model.

    Parameters
    ----------
    cell : Cell
    params : SpineParameters, optional
    seed : int, default 0
        Seed of the spine positions (:func:`spine_sites`).
    mode : {"full", "few"}
        ``"full"``: an explicit spine at every site. ``"few"``: the F-factor
        ``params.f_factor`` beyond ``params.min_distance`` and explicit spines only at
        the sites ``at``.
    at : array_like of int, optional
        Mode "few": indices into the sites (:func:`spine_sites` with the same
        ``seed``) that get explicit spines; default none.
    name : str, default "spine"

    Returns
    -------
    Spines
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    params = SpineParameters() if params is None else params
    sites = spine_sites(cell, params, seed=seed)
    if mode == "full":
        if at is not None:
            raise ValueError("at is only for mode='few' (mode='full' puts a spine on every site)")
        chosen = np.arange(len(sites), dtype=np.int64)
        necks, heads = _build(cell, sites, chosen, params, None, name)
        return Spines(params, mode, sites, chosen, necks, heads, None)
    chosen = sites._indices(np.zeros(0, np.int64) if at is None else at, "at")
    if np.unique(chosen).size != chosen.size:
        raise ValueError("at repeats a site")
    f_factor = apply_f_factor(cell, params.f_factor, params.min_distance)
    necks, heads = _build(cell, sites, chosen, params, f_factor, name)
    return Spines(params, mode, sites, chosen, necks, heads, f_factor)


def spine_synapses(spines: Spines, sites=None, kind: str = "AmpaNmda", **attributes) -> list:
    """A synapse at ``head(0.5)`` of explicit spines.

    Parameters
    ----------
    spines : Spines
    sites : array_like of int, optional
        Indices into ``spines.sites`` (each must have an explicit spine), e.g. a
        :class:`~neuron_bridge.patterns.TrialInputs`' ``site_index``; default every
        explicit spine in order.
    kind : str, default "AmpaNmda"
        A point-process type; ``"AmpaNmda"`` is compiled and loaded if needed
        (:func:`neuron_bridge.compile_mod.load_mod_mechanisms`).
    **attributes
        Set on every synapse (``tau2_nmda=50``, ...).

    Returns
    -------
    list
        The synapses in the order of ``sites``; keep them referenced.
    """
    if kind == "AmpaNmda" and not hasattr(h, "AmpaNmda"):
        from .compile_mod import load_mod_mechanisms

        load_mod_mechanisms()
    if not hasattr(h, kind):
        raise ValueError(f"NEURON has no point process {kind!r}")
    if sites is None:
        heads = list(spines.heads)
    else:
        chosen = spines.sites._indices(sites, "sites")
        heads = [spines.heads[k] for k in spines._spine_of(chosen.tolist())]
    synapses = []
    for head in heads:
        synapse = getattr(h, kind)(head(0.5))
        for attribute, value in attributes.items():
            setattr(synapse, attribute, value)
        synapses.append(synapse)
    return synapses

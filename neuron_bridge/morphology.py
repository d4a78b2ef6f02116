"""Load NEURON morphologies and discretise them.

Everything here works on real NEURON sections (``neuron.h``); nothing is mocked.

Loading (:func:`load_morphology`)
---------------------------------
``path=None``
    The reconstructed pyramidal cell that ships with the ``neuron`` wheel,
    ``<neuron package>/.data/share/nrn/demo/pyramid.nrn`` (also found through
    ``h.neuronhome()``): a soma and 78 dendrites (``dendrite_1[31]`` ... ``dendrite_8[1]``),
    79 sections, 5,349.55 um of dendrite. Nothing is downloaded.
``.hoc`` / ``.nrn``
    Run with ``h.load_file(1, path)`` (forced, so a file can be run again; NEURON runs it
    from the file's own folder, so files it loads by relative path are found). ``stdrun.hoc``
    is loaded first, since cell files often call its procedures (``dend3.nrn`` calls
    ``set_ra()``). The cell's sections are the ones that exist afterwards and did not exist
    before. Such files create **top-level** sections with fixed names; see *Loading a hoc
    file twice* below.
``.swc``
    First read and validated by the project's own reader, :func:`dhs.swc.read_swc`: a
    short line, a bad field or radius, a duplicate id, a missing parent, a cycle or no
    root is a ``ValueError`` naming the file, line and sample, before NEURON sees the
    file (NEURON 9's Import3d segfaults on some of these and loads others silently). A
    valid file that Import3d cannot take as it is (a parent id not below its child's,
    lines not in increasing id order, or huge ids) is renumbered parent-before-child into
    a temporary copy, which Import3d reads instead.
``.swc`` / ``.asc``
    Read by NEURON's Import3d (``Import3d_SWC_read`` / ``Import3d_Neurolucida3``) and
    instantiated with ``Import3d_GUI(reader, False).instantiate(owner)`` into a private Python
    object whose ``str()`` is the ``name`` argument. Import3d then creates Python-owned
    sections ``<name>.soma[0]``, ``<name>.axon[i]``, ``<name>.dend[i]``, ``<name>.apic[i]``
    (SWC types 1-4; other types give ``dend_<type>``), so any number of cells, also of the
    same file, can coexist. (``instantiate(None)`` would instead create top-level
    ``soma[0]``, ``dend[0]``, ... and a second call would silently delete the first cell's
    sections, because hoc's ``create`` of an existing name replaces it.) Import3d merges
    every unbranched run of points of one SWC type into one section, so for example the
    hillock/axon/myelin/node chain of ``dend3.swc`` becomes the single section ``axon[0]``.

Loading a hoc file twice
    Running ``pyramid.nrn`` again would re-``create`` ``soma``, ``dendrite_1``, ... and so
    delete the sections of the first load under the feet of its :class:`Cell`. So
    :func:`load_morphology` **refuses** (``RuntimeError``) to run a ``.hoc``/``.nrn`` file
    again while sections from an earlier load of the same file still exist; call
    :meth:`Cell.delete` first. If a *different* hoc file replaces existing sections (same
    top-level names), the load goes ahead and a ``RuntimeWarning`` says how many existing
    sections were deleted.

Discretisation (:func:`discretize`) and matrix size (:func:`node_count`)
-------------------------------------------------------------------------
``d_lambda`` rule (NEURON's ``fixnseg.hoc`` / CellBuilder)::

    nseg = int((L / (d_lambda * lambda_f(f)) + 0.9) / 2) * 2 + 1

with ``lambda_f`` the AC length constant in um at frequency ``f`` in Hz, computed by
:func:`lambda_f` exactly as ``stdlib.hoc``'s ``lambda_f()`` does (from ``Ra`` in ohm cm,
``cm`` in uF/cm2 and the 3-D diameters in um). Fixed segment length ``dx`` in um::

    nseg = smallest odd integer >= L / dx

Both keep ``nseg`` odd, so ``x = 0.5`` is always a segment centre. NEURON's matrix has one
row per segment centre, one per section for its ``x = 1`` end, and one per root section for
its ``x = 0`` end: ``node_count = sum(nseg + 1) + number of root sections``.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import neuron
import numpy as np
from neuron import h, nrn

from dhs.swc import read_swc

__all__ = [
    "Cell",
    "default_morphology_path",
    "discretize",
    "lambda_f",
    "load_morphology",
    "node_count",
]

HOC_SUFFIXES = (".hoc", ".nrn")
IMPORT3D_SUFFIXES = (".swc", ".asc")
AXON_PREFIXES = ("axon", "hillock", "myelin", "node", "ais", "iseg")

# resolved path of a hoc/nrn file -> the Cell its last load made
_HOC_CELLS: dict[str, Cell] = {}


def _alive(section) -> bool:
    """Whether a section still exists (NEURON raises ReferenceError for deleted ones)."""
    try:
        section.name()
    except ReferenceError:
        return False
    return True


def _base_name(section) -> str:
    """``'cell.dend[3]'`` / ``'dendrite_1[3]'`` -> ``'dend'`` / ``'dendrite_1'`` (lower case)."""
    return section.name().rsplit(".", 1)[-1].split("[", 1)[0].lower()


def _is_soma(section) -> bool:
    return "soma" in _base_name(section)


def _is_axon(section) -> bool:
    return _base_name(section).startswith(AXON_PREFIXES)


class _Import3dOwner:
    """The Python object Import3d instantiates into; its ``str()`` prefixes section names."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __str__(self) -> str:
        return self._name


@dataclass(eq=False, repr=False)
class Cell:
    """The NEURON sections made by one :func:`load_morphology` call.

    ``sections`` lists every section, root sections first (for the demo cells and Import3d:
    the soma), the rest in creation order. The groups are worked out from section names:
    ``soma`` (name contains "soma"), ``axon`` (``axon``, ``hillock``, ``myelin``, ``node``,
    ``ais``, ``iseg``), ``dendrites`` (everything else: ``dend``, ``apic``,
    ``dendrite_1``, ...), ``all`` (= ``sections``).

    Lifetime: sections made by a hoc/nrn file live in NEURON until deleted; Import3d's
    sections are Python-owned and go when the cell is garbage collected (they form a
    reference cycle with their owner, so not necessarily at once). Call :meth:`delete` to
    remove either kind deterministically.
    """

    name: str
    source: Path
    sections: list = field(default_factory=list)
    _owner: object = field(default=None, compare=False)

    @property
    def all(self) -> list:
        """Every section (root sections first)."""
        return list(self.sections)

    @property
    def soma(self) -> list:
        """Sections whose name contains ``soma``."""
        return [sec for sec in self.sections if _is_soma(sec)]

    @property
    def axon(self) -> list:
        """Axon-like sections (axon, hillock, myelin, node, ais, iseg)."""
        return [sec for sec in self.sections if _is_axon(sec) and not _is_soma(sec)]

    @property
    def dendrites(self) -> list:
        """Every section that is neither soma nor axon."""
        return [sec for sec in self.sections if not _is_soma(sec) and not _is_axon(sec)]

    @property
    def root(self):
        """The first root section (the soma for the demo cells and Import3d)."""
        return self.sections[0]

    def delete(self) -> None:
        """Delete this cell's sections from NEURON (idempotent); ``sections`` becomes empty."""
        for sec in self.sections:
            if _alive(sec):
                h.delete_section(sec=sec)
        self.sections = []
        self._owner = None
        key = str(self.source)
        if _HOC_CELLS.get(key) is self:
            del _HOC_CELLS[key]

    def __len__(self) -> int:
        return len(self.sections)

    def __repr__(self) -> str:
        return f"Cell(name={self.name!r}, source={str(self.source)!r}, sections={len(self)})"


# ------------------------------------------------------------------------------- loading
def default_morphology_path() -> Path:
    """``pyramid.nrn`` from the installed ``neuron`` wheel's ``share/nrn/demo`` folder."""
    package = Path(neuron.__file__).resolve().parent
    candidates = [package / ".data" / "share" / "nrn" / "demo" / "pyramid.nrn"]
    try:
        candidates.append(Path(h.neuronhome()) / "demo" / "pyramid.nrn")
    except Exception:  # pragma: no cover - neuronhome() exists in every NEURON we know
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    for found in sorted(package.rglob("pyramid.nrn")):
        return found
    raise FileNotFoundError(
        f"NEURON's demo cell pyramid.nrn was not found (looked at {candidates} and under {package})"
    )


def _roots_first(sections: list) -> list:
    roots = [sec for sec in sections if sec.parentseg() is None]
    others = [sec for sec in sections if sec.parentseg() is not None]
    return roots + others


def _load_hoc(path: Path, name: str) -> Cell:
    key = str(path)
    previous = _HOC_CELLS.get(key)
    if previous is not None and any(_alive(sec) for sec in previous.sections):
        raise RuntimeError(
            f"{path} is already loaded ({previous!r}) and its sections still exist; running "
            "it again would re-create its top-level sections and delete them. Call "
            ".delete() on the earlier Cell first."
        )
    h.load_file("stdrun.hoc")  # cell files may call its procedures (dend3.nrn: set_ra())
    before = list(h.allsec())
    known = set(before)
    try:
        ok = h.load_file(1, key)
    except RuntimeError as error:
        for sec in [s for s in h.allsec() if s not in known]:
            h.delete_section(sec=sec)
        raise RuntimeError(f"NEURON could not run {path}: {error}") from error
    if not ok:
        raise RuntimeError(f"NEURON could not run {path} (load_file returned 0)")
    replaced = [sec for sec in before if not _alive(sec)]
    if replaced:
        warnings.warn(
            f"loading {path} re-created {len(replaced)} existing section(s) with the same "
            "top-level names, deleting the earlier ones",
            RuntimeWarning,
            stacklevel=3,
        )
    sections = [sec for sec in h.allsec() if sec not in known]
    if not sections:
        raise ValueError(f"{path} created no sections")
    cell = Cell(name=name, source=path, sections=_roots_first(sections))
    _HOC_CELLS[key] = cell
    return cell


def _load_import3d(path: Path, name: str, suffix: str) -> Cell:
    with tempfile.TemporaryDirectory(prefix="dhs-swc-") as folder:
        readable = path
        if suffix == ".swc":
            readable = _swc_import3d_can_read(path, Path(folder))
        return _instantiate_import3d(path, readable, name, suffix)


def _swc_import3d_can_read(path: Path, folder: Path) -> Path:
    """``path`` validated by :func:`dhs.swc.read_swc`, renumbered into ``folder`` if needed.

    NEURON 9's Import3d crashes (segfault) unless every parent id is below its child's and
    the lines run in increasing id order (its own re-sorting fails on a hoc error first),
    and it allocates a table indexed by sample id, so files with huge ids are renumbered
    too.
    """
    morphology = read_swc(path)
    sample_id = morphology.samples.sample_id
    ids_increasing = bool(np.all(np.diff(sample_id) > 0))
    ids_compact = int(sample_id.max()) <= 4 * morphology.n + 1024
    if morphology.parent_before_child and ids_increasing and ids_compact:
        return path
    return morphology.write_parent_first(folder / path.name)


def _instantiate_import3d(path: Path, readable: Path, name: str, suffix: str) -> Cell:
    h.load_file("import3d.hoc")
    reader = h.Import3d_SWC_read() if suffix == ".swc" else h.Import3d_Neurolucida3()
    reader.quiet = 1
    owner = _Import3dOwner(name)
    copy = "" if readable == path else f" (renumbered parent-before-child as {readable.name})"
    try:
        reader.input(str(readable))
        h.Import3d_GUI(reader, False).instantiate(owner)
    except RuntimeError as error:
        for sec in getattr(owner, "all", []):
            if _alive(sec):
                h.delete_section(sec=sec)
        raise ValueError(f"NEURON's Import3d could not read {path}{copy}: {error}") from error
    sections = list(getattr(owner, "all", []))
    if not sections:
        raise ValueError(f"{path}: NEURON's Import3d created no sections{copy}")
    return Cell(name=name, source=path, sections=_roots_first(sections), _owner=owner)


def load_morphology(path: str | os.PathLike | None = None, *, name: str = "cell") -> Cell:
    """Create the sections of a morphology in NEURON and return them as a :class:`Cell`.

    ``path=None`` loads NEURON's demo pyramidal cell (:func:`default_morphology_path`).
    ``.swc`` and ``.asc`` (Neurolucida) go through Import3d, with sections named
    ``<name>.soma[0]``, ``<name>.dend[i]``, ...; ``.hoc``/``.nrn`` files are run and keep
    the names they create (``name`` is then only a label). See the module docstring for
    what happens when a hoc file is loaded twice.

    An SWC file is validated by :func:`dhs.swc.read_swc` first and, if Import3d could not
    take it as it is, renumbered parent-before-child into a temporary copy.

    Raises ``ValueError`` for an unknown suffix, for any fault of an SWC file (naming the
    line and sample), if Import3d fails (a hoc error, naming the file) or if nothing was
    created; ``FileNotFoundError`` for a missing file; ``RuntimeError`` if the same hoc
    file's earlier sections still exist or NEURON fails to run a hoc file.
    """
    path = default_morphology_path() if path is None else Path(path)
    suffix = path.suffix.lower()
    if suffix not in HOC_SUFFIXES + IMPORT3D_SUFFIXES:
        raise ValueError(
            f"unknown morphology format {path.suffix!r} of {path}; expected one of "
            f"{', '.join(HOC_SUFFIXES + IMPORT3D_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"morphology file not found: {path}")
    path = path.resolve()
    if suffix in HOC_SUFFIXES:
        return _load_hoc(path, name)
    return _load_import3d(path, name, suffix)


# -------------------------------------------------------------------------- discretising
def _sections_of(cell_or_sections) -> list:
    if isinstance(cell_or_sections, Cell):
        return list(cell_or_sections.sections)
    if isinstance(cell_or_sections, nrn.Section):
        return [cell_or_sections]
    if isinstance(cell_or_sections, Iterable):
        sections = list(cell_or_sections)
        for sec in sections:
            if not isinstance(sec, nrn.Section):
                raise TypeError(f"expected NEURON sections, got {type(sec).__name__}")
        return sections
    raise TypeError(
        f"expected a Cell, a section or sections, got {type(cell_or_sections).__name__}"
    )


def lambda_f(section, frequency: float = 100.0) -> float:
    """AC length constant in um of ``section`` at ``frequency`` Hz, as NEURON's ``lambda_f``.

    With fewer than two 3-D points: ``1e5 * sqrt(diam / (4 pi f Ra cm))`` (``diam`` in um,
    ``Ra`` in ohm cm, ``cm`` in uF/cm2). Otherwise the section's electrotonic length is
    summed over its 3-D points, ``lam = sqrt(2) * 1e-5 * sqrt(4 pi f Ra cm) *
    sum(dx_i / sqrt(d_i + d_(i+1)))``, and ``L / lam`` is returned. ``cm == 0`` gives 1e10,
    as in ``stdlib.hoc``.
    """
    if not frequency > 0 or not math.isfinite(frequency):
        raise ValueError(f"frequency must be a positive number of Hz, got {frequency!r}")
    cm = section.cm
    if cm == 0:
        return 1e10
    scale = 4.0 * math.pi * frequency * section.Ra * cm
    n3d = int(section.n3d())
    if n3d < 2:
        return 1e5 * math.sqrt(section.diam / scale)
    x1 = section.arc3d(0)
    d1 = section.diam3d(0)
    lam = 0.0
    for i in range(1, n3d):
        if d1 == 0:
            raise ValueError(f"0 diameter for 3d point {i - 1} of {section.name()}")
        x2 = section.arc3d(i)
        d2 = section.diam3d(i)
        lam += (x2 - x1) / math.sqrt(d1 + d2)
        x1, d1 = x2, d2
    lam *= math.sqrt(2.0) * 1e-5 * math.sqrt(scale)
    if lam == 0:
        return math.inf
    return section.L / lam


def _odd_at_least(ratio: float) -> int:
    n = max(1, math.ceil(ratio - 1e-9))
    return n if n % 2 else n + 1


def _positive(value: float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return number


def discretize(
    cell_or_sections,
    *,
    d_lambda: float | None = None,
    segment_length: float | None = None,
    frequency: float = 100.0,
) -> int:
    """Set ``nseg`` of every section; return the total number of segments, ``sum(nseg)``.

    Give exactly one of

    ``d_lambda``
        fraction of the AC length constant at ``frequency`` Hz (NEURON's d_lambda rule,
        ``nseg = int((L / (d_lambda * lambda_f(frequency)) + 0.9) / 2) * 2 + 1``; NEURON's
        usual choice is ``d_lambda=0.1`` at 100 Hz);
    ``segment_length``
        longest allowed segment in um (``nseg`` = smallest odd integer >= ``L /
        segment_length``, so ``nseg * segment_length >= L``).

    ``cell_or_sections`` is a :class:`Cell`, one section, or an iterable of sections.
    ``nseg`` is always odd. Use :func:`node_count` for the number of matrix rows.
    """
    if (d_lambda is None) == (segment_length is None):
        raise ValueError("give exactly one of d_lambda and segment_length")
    sections = _sections_of(cell_or_sections)
    if d_lambda is not None:
        d_lambda = _positive(d_lambda, "d_lambda")
        frequency = _positive(frequency, "frequency")
        counts = [
            int((sec.L / (d_lambda * lambda_f(sec, frequency)) + 0.9) / 2) * 2 + 1
            for sec in sections
        ]
    else:
        segment_length = _positive(segment_length, "segment_length")
        counts = [_odd_at_least(sec.L / segment_length) for sec in sections]
    for sec, nseg in zip(sections, counts, strict=True):
        sec.nseg = nseg
    return sum(int(sec.nseg) for sec in sections)


def node_count(cell_or_sections=None) -> int:
    """Number of rows of NEURON's matrix: ``sum(nseg + 1)`` + number of root sections.

    ``None`` counts every section in NEURON (the whole current model, which is what
    NEURON's matrix covers); otherwise the given cell or sections, where only sections that
    are NEURON roots (no parent) add a root node, so pass whole trees.
    """
    if cell_or_sections is None:
        sections = list(h.allsec())
    else:
        sections = _sections_of(cell_or_sections)
    roots = sum(1 for sec in sections if sec.parentseg() is None)
    return roots + sum(int(sec.nseg) + 1 for sec in sections)

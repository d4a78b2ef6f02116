"""Tests of neuron_bridge.morphology against real NEURON (no mocks).

NEURON's state is global to the process, so every test deletes the sections it made: cells
go through the ``load`` fixture (deleted at teardown), the demo pyramid is loaded once per
module, and an autouse fixture fails a test that leaves sections behind.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from paths import MORPHOLOGIES

pytest.importorskip("neuron")

from neuron import h

from neuron_bridge import (
    Cell,
    default_morphology_path,
    discretize,
    lambda_f,
    load_morphology,
    node_count,
)

DATA = MORPHOLOGIES
PYRAMID_SWC = DATA / "pyramid.swc"
DEND3_SWC = DATA / "dend3.swc"

# NEURON's sum of sec.L over the 78 dendrites of demo/pyramid.nrn (L is the arc length of
# each section's 3-D points). The file's header says "43 branches totaling 5349.55 um",
# the same number rounded to 0.01 um (ntscable counted branches, not sections).
PYRAMID_DENDRITE_UM = 5349.5514


@pytest.fixture(autouse=True)
def _no_leaked_sections():
    """Fail a test that leaves NEURON sections behind (and delete them)."""
    before = set(h.allsec())
    yield
    leaked = [sec for sec in h.allsec() if sec not in before]
    names = [sec.name() for sec in leaked]
    for sec in leaked:
        h.delete_section(sec=sec)
    assert not names, f"test left sections behind: {names}"


@pytest.fixture(scope="module")
def pyramid():
    """NEURON's demo pyramid (``load_morphology()``), shared by the module's tests."""
    cell = load_morphology()
    yield cell
    cell.delete()


@pytest.fixture
def load():
    """``load_morphology`` whose cells are deleted when the test ends."""
    cells: list[Cell] = []

    def _load(*args, **kwargs) -> Cell:
        cell = load_morphology(*args, **kwargs)
        cells.append(cell)
        return cell

    yield _load
    for cell in cells:
        cell.delete()  # h.delete_section on each live section; forgets a hoc registration


@pytest.fixture
def new_section():
    """``h.Section`` factory; the sections are deleted at teardown."""
    made = []

    def _make(name: str, length: float, diam: float):
        sec = h.Section(name=name)
        sec.L = length
        sec.diam = diam
        made.append(sec)
        return sec

    yield _make
    for sec in made:
        h.delete_section(sec=sec)


def names(sections) -> list[str]:
    return [sec.name() for sec in sections]


def alive(sec) -> bool:
    try:
        sec.name()
    except ReferenceError:
        return False
    return True


# ------------------------------------------------------------------------------ loading
def test_default_path_is_the_wheels_pyramid():
    path = default_morphology_path()
    assert path.name == "pyramid.nrn"
    assert path.is_file()
    assert path.parent.name == "demo"


def test_default_load(pyramid):
    assert isinstance(pyramid, Cell)
    assert len(pyramid.all) == len(pyramid) == 79
    assert pyramid.all == pyramid.sections
    assert names(pyramid.soma) == ["soma"]
    assert pyramid.root.name() == "soma"
    assert pyramid.all[0].parentseg() is None
    assert all(sec.parentseg() is not None for sec in pyramid.all[1:])
    assert len(pyramid.dendrites) == 78
    assert pyramid.axon == []
    assert names(pyramid.dendrites)[:2] == ["dendrite_1[0]", "dendrite_1[1]"]
    assert names(pyramid.dendrites)[-1] == "dendrite_8[0]"
    # the 8 primary dendrites leave the soma's middle
    primaries = [sec for sec in pyramid.dendrites if sec.parentseg().sec == pyramid.root]
    assert len(primaries) == 8
    assert {sec.parentseg().x for sec in primaries} == {0.5}
    assert sum(int(sec.n3d()) for sec in pyramid.all) == 2116


def test_pyramid_dendritic_length(pyramid):
    total = sum(sec.L for sec in pyramid.dendrites)
    assert total == pytest.approx(PYRAMID_DENDRITE_UM, abs=1e-4)
    assert total == pytest.approx(5349.55, abs=0.005)  # the file header's figure


def test_pyramid_swc_matches_nrn(pyramid, load):
    cell = load(PYRAMID_SWC, name="swc")
    # Import3d, instantiated into a Python object, names sections <name>.<type>[i]
    assert len(cell.all) == 79
    assert names(cell.soma) == ["swc.soma[0]"]
    assert names(cell.dendrites) == [f"swc.dend[{i}]" for i in range(78)]
    assert cell.axon == []
    assert cell.root.parentseg() is None
    swc_total = sum(sec.L for sec in cell.dendrites)
    nrn_total = sum(sec.L for sec in pyramid.dendrites)
    assert swc_total == pytest.approx(nrn_total, abs=1e-3)  # SWC has 4 decimals
    assert sorted(sec.L for sec in cell.all) == pytest.approx(
        sorted(sec.L for sec in pyramid.all), abs=1e-3
    )
    assert sum(1 for sec in cell.dendrites if sec.parentseg().sec == cell.root) == 8


def test_dend3_swc_loads(load):
    cell = load(DEND3_SWC, name="mn")
    # Import3d merges each unbranched run of one SWC type into one section: the hillock,
    # axon and 6 myelin/node pairs of dend3.nrn (all SWC type 2) become one axon.
    assert names(cell.all) == ["mn.soma[0]", "mn.axon[0]", "mn.dend[0]", "mn.dend[1]", "mn.dend[2]"]
    assert names(cell.soma) == ["mn.soma[0]"]
    assert names(cell.axon) == ["mn.axon[0]"]
    assert len(cell.dendrites) == 3
    assert cell.soma[0].L == pytest.approx(100.0, abs=1e-3)
    # hillock 10 + axon 100 + myelin 250, 500, 4 x 1000 + 6 nodes x 6 um, as in dend3.nrn
    assert cell.axon[0].L == pytest.approx(10 + 100 + 250 + 500 + 4000 + 36, abs=1e-3)
    # dend3.nrn makes its three dendrites 1439.873 um long (eq_leng())
    assert [sec.L for sec in cell.dendrites] == pytest.approx([1439.873] * 3, abs=1e-3)
    assert {sec.parentseg().sec for sec in cell.all[1:]} == {cell.root}


def write_asc(path: Path, a: float = 10.0, b: float = 5.0, n: int = 24) -> Path:
    """A tiny Neurolucida ASC file: an elliptic soma outline (semi-axes a, b um, n points),
    a dendrite that forks in two, and an axon."""
    outline = "\n".join(
        f"  ({a * math.cos(2 * math.pi * k / n):.4f} {b * math.sin(2 * math.pi * k / n):.4f}"
        " 0.0 0.5)"
        for k in range(n)
    )
    path.write_text(
        f"""; hand-written test cell
("CellBody"
  (Color Red)
  (CellBody)
{outline}
)  ;  End of contour

( (Color Yellow)
  (Dendrite)
  ( {a} 0.0 0.0 2.0)
  ( {a + 10} 0.0 0.0 2.0)
  (
    ( {a + 10} 0.0 0.0 1.0)
    ( {a + 20} 5.0 0.0 1.0)
    Normal
  |
    ( {a + 10} 0.0 0.0 1.0)
    ( {a + 20} -5.0 0.0 1.0)
    Normal
  )  ;  End of split
)  ;  End of tree

( (Color Green)
  (Axon)
  ( {-a} 0.0 0.0 1.0)
  ( {-a - 20} 0.0 0.0 1.0)
  Normal
)  ;  End of tree
"""
    )
    return path


def test_asc_loads_through_import3d(tmp_path, load):
    cell = load(write_asc(tmp_path / "tiny.asc"), name="asc")
    assert names(cell.all) == [
        "asc.soma[0]",
        "asc.axon[0]",
        "asc.dend[0]",
        "asc.dend[1]",
        "asc.dend[2]",
    ]
    soma = cell.root
    trunk, left, right = cell.dendrites
    (axon,) = cell.axon
    assert trunk.L == pytest.approx(10.0)
    assert left.L == pytest.approx(math.hypot(10, 5))
    assert right.L == pytest.approx(math.hypot(10, 5))
    assert axon.L == pytest.approx(20.0)
    assert trunk.parentseg().sec == soma
    assert axon.parentseg().sec == soma
    assert left.parentseg().sec == trunk and left.parentseg().x == 1.0
    assert right.parentseg().sec == trunk and right.parentseg().x == 1.0
    # the outline becomes a soma along its long axis: a bit shorter than 2a (the polygon is
    # inscribed in the ellipse), at most 2b thick
    assert 0.97 * 20.0 < soma.L <= 20.0
    assert max(soma.diam3d(i) for i in range(int(soma.n3d()))) <= 10.0


def test_import3d_cells_coexist(load):
    first = load(DEND3_SWC, name="a")
    second = load(DEND3_SWC, name="b")
    assert names(first.all)[0] == "a.soma[0]"
    assert names(second.all)[0] == "b.soma[0]"
    first.delete()
    assert first.all == []
    assert all(alive(sec) for sec in second.all)


def test_loading_the_pyramid_again_is_refused(pyramid):
    with pytest.raises(RuntimeError, match=r"pyramid\.nrn is already loaded"):
        load_morphology()
    assert all(alive(sec) for sec in pyramid.all)
    assert len(pyramid.all) == 79


def test_hoc_file_can_be_reloaded_after_delete(tmp_path, load):
    path = tmp_path / "probe.hoc"
    path.write_text("create probe_a, probe_b[2]\nprobe_b[0] connect probe_a(0), 1\n")
    cell = load(path)
    # root sections first, each group in creation order
    assert names(cell.all) == ["probe_b[0]", "probe_b[1]", "probe_a"]
    assert cell.all[2].parentseg().sec == cell.all[0]
    assert cell.dendrites == cell.all
    with pytest.raises(RuntimeError, match="already loaded"):
        load(path)
    cell.delete()
    again = load(path)
    assert len(again.all) == 3


def test_hoc_file_replacing_other_sections_warns(tmp_path, load):
    first = load(_write(tmp_path / "one.hoc", "create probe_shared, probe_one\n"))
    with pytest.warns(RuntimeWarning, match="re-created 1 existing section"):
        second = load(_write(tmp_path / "two.hoc", "create probe_shared\n"))
    assert names(second.all) == ["probe_shared"]
    assert [alive(sec) for sec in first.all] == [False, True]


def test_hoc_error_deletes_partial_sections(tmp_path):
    path = _write(tmp_path / "broken.hoc", "create probe_broken\nthis is not hoc\n")
    with pytest.raises(RuntimeError, match=r"broken\.hoc"):
        load_morphology(path)
    assert "probe_broken" not in names(h.allsec())


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("filename", "error", "message"),
    [
        ("cell.txt", ValueError, "unknown morphology format"),
        ("missing.txt", ValueError, "unknown morphology format"),
        ("missing.swc", FileNotFoundError, "not found"),
        ("missing.nrn", FileNotFoundError, "not found"),
    ],
    ids=["unknown-suffix", "unknown-suffix-missing", "missing-swc", "missing-nrn"],
)
def test_bad_paths(tmp_path, filename, error, message):
    (tmp_path / "cell.txt").write_text("1 1 0 0 0 1 -1\n")
    path = tmp_path / filename
    with pytest.raises(error, match=message) as info:
        load_morphology(path)
    assert str(path) in str(info.value)


def test_files_that_create_nothing(tmp_path):
    empty_hoc = _write(tmp_path / "empty.hoc", "x_probe_empty = 1\n")
    with pytest.raises(ValueError, match="created no sections"):
        load_morphology(empty_hoc)
    empty_swc = _write(tmp_path / "empty.swc", "# no samples\n")
    with pytest.raises(ValueError, match=r"empty\.swc"):
        load_morphology(empty_swc)


# ------------------------------------------------------------------------ discretising
@pytest.mark.parametrize(
    ("segment_length", "npz"),
    [(1.0, "pyramid_nodes_1um.npz"), (4.35, "pyramid_nodes_ca1size.npz"), (20.0, None)],
)
def test_segment_length(pyramid, segment_length, npz):
    total = discretize(pyramid, segment_length=segment_length)
    nseg = np.array([sec.nseg for sec in pyramid.all])
    lengths = np.array([sec.L for sec in pyramid.all])
    assert total == nseg.sum()
    assert np.all(nseg % 2 == 1)
    assert np.all(nseg * segment_length >= lengths * (1 - 1e-9))  # no segment too long
    assert np.all((nseg == 1) | ((nseg - 2) * segment_length < lengths))  # smallest odd
    assert node_count(pyramid) == total + len(pyramid.all) + 1
    if npz is not None:  # same nseg and node count as data/make_morphologies.py
        with np.load(DATA / npz) as data:
            stored = dict(zip(data["section_names"].tolist(), data["nseg"].tolist(), strict=True))
            assert {sec.name(): int(sec.nseg) for sec in pyramid.all} == stored
            assert node_count(pyramid) == int(data["n"])


def test_node_count_of_the_pyramid_at_1um(pyramid):
    discretize(pyramid, segment_length=1.0)
    assert node_count(pyramid) == 5551  # data/README.md
    # NEURON's own count: the distinct matrix rows of every section in the model
    h.finitialize(-65.0)
    rows = set()
    for sec in h.allsec():
        rows.add(sec(0).node_index())
        rows.add(sec(1).node_index())
        rows.update(seg.node_index() for seg in sec)
    assert node_count() == len(rows) == max(rows) + 1


def test_lambda_f_matches_neuron(pyramid, new_section):
    h.load_file("stdlib.hoc")
    no_points = new_section("probe_cylinder", 200.0, 1.5)  # n3d() == 0: the diam formula
    for frequency in (100.0, 1000.0):
        for sec in [*pyramid.all, no_points]:
            expected = h.lambda_f(frequency, sec=sec)
            assert lambda_f(sec, frequency) == pytest.approx(expected, rel=1e-12)
    # closed form for a cylinder: 1e5 * sqrt(diam / (4 pi f Ra cm)) um
    expected = 1e5 * math.sqrt(1.5 / (4 * math.pi * 100.0 * no_points.Ra * no_points.cm))
    assert lambda_f(no_points) == pytest.approx(expected, rel=1e-12)
    no_points.cm = 0
    assert lambda_f(no_points) == 1e10


@pytest.mark.parametrize(("d_lambda", "frequency"), [(0.1, 100.0), (0.05, 100.0), (0.1, 1e3)])
def test_d_lambda(pyramid, d_lambda, frequency):
    h.load_file("stdlib.hoc")
    total = discretize(pyramid, d_lambda=d_lambda, frequency=frequency)
    nseg = [int(sec.nseg) for sec in pyramid.all]
    expected = [
        int((sec.L / (d_lambda * h.lambda_f(frequency, sec=sec)) + 0.9) / 2) * 2 + 1
        for sec in pyramid.all
    ]
    assert nseg == expected
    assert total == sum(nseg)
    assert all(n % 2 == 1 for n in nseg)
    assert node_count(pyramid) == total + 80


def test_d_lambda_refines_with_smaller_d_lambda_and_higher_frequency(pyramid):
    coarse = discretize(pyramid, d_lambda=0.3)
    assert discretize(pyramid, d_lambda=0.1) > coarse
    assert discretize(pyramid, d_lambda=0.3, frequency=2000.0) > coarse


def test_discretize_single_section_and_lists(new_section):
    sec = new_section("probe_single", 10.0, 1.0)
    assert discretize(sec, segment_length=3.0) == 5  # 10/3 = 3.33 -> 4 -> odd 5
    assert sec.nseg == 5
    assert discretize([sec], segment_length=10.0) == 1
    assert node_count([sec]) == 3  # root node + 1 centre + the x = 1 end
    child = new_section("probe_child", 2.0, 1.0)
    child.connect(sec(1))
    assert discretize((sec, child), segment_length=0.5) == 21 + 5
    assert node_count([sec, child]) == 1 + 22 + 6


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"d_lambda": 0.1, "segment_length": 1.0},
        {"d_lambda": 0.0},
        {"d_lambda": -0.1},
        {"d_lambda": math.nan},
        {"segment_length": 0},
        {"segment_length": -1.0},
        {"segment_length": math.inf},
        {"segment_length": "a"},
        {"d_lambda": 0.1, "frequency": 0.0},
        {"d_lambda": 0.1, "frequency": -100.0},
    ],
)
def test_discretize_rejects_bad_arguments(new_section, kwargs):
    sec = new_section("probe_bad", 10.0, 1.0)
    sec.nseg = 3
    with pytest.raises(ValueError):
        discretize(sec, **kwargs)
    assert sec.nseg == 3  # unchanged


def test_discretize_rejects_non_sections():
    with pytest.raises(TypeError):
        discretize(42, segment_length=1.0)
    with pytest.raises(TypeError):
        discretize(["soma"], segment_length=1.0)


def test_no_warnings_on_plain_loads(load):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(DEND3_SWC, name="quiet")

"""Build the committed morphology data in ``data/morphologies/`` from NEURON's demo cells.

Run from the repository root (needs the ``neuron`` wheel, numpy; ``dhs`` is optional and
only used for the summary printed at the end)::

    python data/make_morphologies.py

The script is deterministic: running it again with the same NEURON version rewrites the
same bytes (the ``.npz`` archives are written with fixed zip timestamps).

Sources
-------
Both cells ship inside the ``neuron`` wheel, under ``<neuron package>/.data/share/nrn/demo``
(found from ``neuron.__file__``, or from ``h.neuronhome()``):

``pyramid.nrn``
    A reconstructed pyramidal cell (soma + 78 dendritic sections, 2,116 3-D points;
    ntscable translation, 1992). The file reads its own trailing data with ``fscan()``
    and creates top-level sections ``soma``, ``dendrite_1[31]`` ... ``dendrite_8[1]``.
``dend3/dend3.nrn``
    A stylized motoneuron (soma, hillock, axon, 6 myelin/node pairs, 3 dendrites) given
    by ``L``/``diam`` only. It calls ``set_ra()`` from ``stdrun.hoc``, so that file is
    loaded first. It has no 3-D points; NEURON's ``define_shape()`` makes them
    (one per segment boundary/centre, for the file's own ``nseg``).

Outputs
-------
``pyramid.swc``, ``dend3.swc``
    One SWC sample per 3-D point. Sections are written depth-first from the root
    section (children in NEURON's ``allsec`` order), each from the end attached to its
    parent. A child's first point is joined to the parent's 3-D point at the connection
    location ``x = sec.parentseg().x``: ``x = 1`` -> the parent's last point, ``x = 0``
    -> its first, interior ``x`` -> the point nearest by arc length (``arc3d``) to
    ``x * L``. **A child's first point is dropped when its coordinates equal that
    attachment point** (standard SWC practice; every ``x = 1`` connection of the pyramid
    is such a duplicate, the 8 primary dendrites leave the soma centre at ``x = 0.5`` and
    keep all their points). Types by section name: ``soma`` 1; ``axon``, ``hillock``,
    ``myelin``, ``node`` 2; ``apic...`` 4; anything else (``dend...``) 3. Neither demo
    names an apical dendrite, so all pyramid dendrites are type 3. The root is the first
    soma point, parent -1; ids are 1..N and every parent id is smaller than its child's.

``pyramid_nodes_1um.npz``, ``pyramid_nodes_ca1size.npz``
    The Hines-matrix tree of the pyramid cell in NEURON's own node (matrix row) order,
    for a uniform target segment length ``dx``: each section gets
    ``nseg = smallest odd integer >= L / dx`` (so every segment is at most ``dx`` long and
    x = 0.5 is a segment centre). ``dx = 1 um`` for the first file; for the second, the
    ``dx`` on a 0.05 um grid whose node count is closest to 1,400 (a CA1-sized cell).
    Nodes are: one root node (``soma(0)``, zero area), every segment centre, and the
    zero-area node at each section's free end (``x = 1``). The first centre of a section
    hangs off the node it is attached to (``sec(0).node_index()``: the parent's segment
    centre, or the parent's ``x = 1`` node), the next centres off the previous one, and
    the end node off the last centre. Arrays (``np.load``; no pickles):

    ``parent`` (int64, -1 for the root), ``section_index`` (int64, into
    ``section_names``), ``x`` (float64, position of the node along its section),
    ``area_um2`` (float64, 0 for the zero-area nodes), ``section_names`` (str),
    ``nseg``, ``section_length_um`` (per section), ``segment_length_um``, ``n``, and a
    reference linear system taken from NEURON: ``a``, ``b``, ``d``, ``rhs`` (NEURON's
    NODEA, NODEB, NODED, NODERHS after ``fcurrent()``) and ``solution`` (NEURON's solve of
    that system in one ``fadvance()``). Row i reads

        d[i] * v[i] + b[i] * v[parent[i]] + sum over children c of a[c] * v[c] = rhs[i].

    The system is for ``Ra = 150 ohm cm``, ``cm = 1 uF/cm2``, ``pas`` with
    ``g = 1e-4 S/cm2``, ``e = -70 mV``, ``dt = 0.025 ms`` and the voltage
    ``v[i] = -65 + 10 sin(0.05 i) mV`` at node i; these are stored too.

Checks made here (the script stops on any failure)
--------------------------------------------------
* The node indices read with ``node_index()`` are exactly 0..N-1, each once, and N is
  the number of rows NEURON prints with ``h.fmatrix()``; the printed a, b, d agree with
  the per-location ``h.fmatrix(loc, 1..3)`` values used here.
* Each section's attachment node equals the node of ``sec.trueparentseg()``.
* ``parent`` is a tree: every node reaches the single root.
* ``a[i]`` and ``b[i]`` are nonzero exactly for non-root nodes, ``a[i] * A[parent[i]] ==
  b[i] * A[i]`` (A = node area, 100 um2 for zero-area nodes, as in NEURON), and
  ``d[i] + b[i] + sum of a over i's children`` is 0 at zero-area nodes and
  ``1e-3 cm / dt + g_pas`` elsewhere: axial current is conserved exactly over the
  parent array given here.
* ``solution`` (NEURON's) satisfies the system above with this parent array, and equals
  the change of ``v`` made by ``fadvance()``.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import math
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import neuron
import numpy as np
from neuron import h

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "data" / "morphologies"
CA1_TARGET_NODES = 1400
DX_GRID_UM = 0.05

# The reference linear system stored with the node trees.
RA_OHM_CM = 150.0
CM_UF_CM2 = 1.0
G_PAS_S_CM2 = 1e-4
E_PAS_MV = -70.0
DT_MS = 0.025


# --------------------------------------------------------------------------- loading
def find_demo_dir() -> Path:
    """Return NEURON's ``share/nrn/demo`` folder inside the installed ``neuron`` package."""
    candidates = [
        Path(neuron.__file__).resolve().parent / ".data" / "share" / "nrn" / "demo",
        Path(h.neuronhome()) / "demo",
    ]
    for candidate in candidates:
        if (candidate / "pyramid.nrn").is_file():
            return candidate
    for found in sorted(Path(neuron.__file__).resolve().parent.rglob("pyramid.nrn")):
        return found.parent
    raise FileNotFoundError(f"pyramid.nrn not found under {candidates}")


def load_cell(path: Path) -> list:
    """Delete every existing section, then run a hoc cell file; return its sections."""
    for section in list(h.allsec()):
        h.delete_section(sec=section)
    h.load_file("stdrun.hoc")  # also loads stdlib.hoc; dend3.nrn needs its set_ra()
    h.xopen(str(path))
    sections = list(h.allsec())
    if not sections:
        raise RuntimeError(f"{path} created no sections")
    return sections


def hoc_header(path: Path) -> list[str]:
    """The first ``/* ... */`` comment block of a hoc file, as stripped non-empty lines."""
    lines = []
    inside = False
    for line in path.read_text(errors="replace").splitlines():
        text = line.strip()
        if not inside:
            if text.startswith("/*"):
                inside = True
            continue
        if "*/" in text:
            break
        text = text.strip("-").strip()
        if text and "%W%" not in text:
            lines.append(" ".join(text.split()))
    return lines


def root_section(sections: list):
    """The single section without a parent."""
    roots = [sec for sec in sections if sec.parentseg() is None]
    if len(roots) != 1:
        raise ValueError(f"expected one root section, found {[s.name() for s in roots]}")
    if roots[0].orientation() != 0:
        raise ValueError("the root section is reversed; not handled")
    return roots[0]


def depth_first_sections(sections: list) -> list:
    """Sections in depth-first order from the root; children in ``allsec`` order."""
    position = {sec.name(): i for i, sec in enumerate(sections)}
    children: dict[str, list] = {sec.name(): [] for sec in sections}
    for sec in sections:
        parent = sec.parentseg()
        if parent is not None:
            children[parent.sec.name()].append(sec)
    ordered = []
    stack = [root_section(sections)]
    while stack:
        sec = stack.pop()
        ordered.append(sec)
        stack.extend(sorted(children[sec.name()], key=lambda s: -position[s.name()]))
    if len(ordered) != len(sections):
        raise ValueError("sections do not form one tree")
    return ordered


# ------------------------------------------------------------------------------- SWC
def swc_type(name: str) -> int:
    """SWC structure type from a NEURON section name."""
    base = name.split("[", 1)[0].lower()
    if "soma" in base:
        return 1
    if base.startswith(("axon", "hillock", "myelin", "node", "ais", "iseg")):
        return 2
    if base.startswith("apic"):
        return 4
    return 3


def attachment_point(parent_sec, x: float) -> int:
    """Index of the parent's 3-D point where a child connected at ``parent_sec(x)`` sits."""
    n3d = int(parent_sec.n3d())
    if x >= 1.0:
        return n3d - 1
    if x <= 0.0:
        return 0
    arc = np.array([parent_sec.arc3d(i) for i in range(n3d)])
    return int(np.argmin(np.abs(arc - x * parent_sec.L)))


def swc_rows(sections: list) -> tuple[list[tuple], dict[str, int]]:
    """SWC rows (id, type, x, y, z, radius, parent) and counts of what was done."""
    point_id: dict[tuple[str, int], int] = {}  # (section name, 3-D point index) -> id
    rows: list[tuple] = []
    counts = {"dropped_duplicates": 0, "kept_first_points": 0}
    for sec in depth_first_sections(sections):
        n3d = int(sec.n3d())
        if n3d == 0:
            raise ValueError(f"{sec.name()} has no 3-D points")
        kind = swc_type(sec.name())
        order = range(n3d) if sec.orientation() == 0 else range(n3d - 1, -1, -1)
        parentseg = sec.parentseg()
        if parentseg is None:
            parent_id = -1
            attach_xyz = None
        else:
            attach = attachment_point(parentseg.sec, parentseg.x)
            parent_id = point_id[(parentseg.sec.name(), attach)]
            ps = parentseg.sec
            attach_xyz = (ps.x3d(attach), ps.y3d(attach), ps.z3d(attach))
        for rank, i in enumerate(order):
            xyz = (sec.x3d(i), sec.y3d(i), sec.z3d(i))
            if rank == 0 and attach_xyz is not None:
                if xyz == attach_xyz:
                    counts["dropped_duplicates"] += 1
                    point_id[(sec.name(), i)] = parent_id
                    continue
                counts["kept_first_points"] += 1
            sample = len(rows) + 1
            rows.append((sample, kind, *xyz, sec.diam3d(i) / 2.0, parent_id))
            point_id[(sec.name(), i)] = sample
            parent_id = sample
    return rows, counts


def write_swc(path: Path, sections: list, header: list[str]) -> int:
    """Write the sections as SWC; return the number of samples."""
    rows, counts = swc_rows(sections)
    lines = [f"# {text}" for text in header]
    lines += [
        f"# {len(sections)} sections, {sum(int(s.n3d()) for s in sections)} 3-D points, "
        f"{len(rows)} samples ({counts['dropped_duplicates']} child first points dropped "
        "as duplicates of their parent's attachment point, "
        f"{counts['kept_first_points']} kept)",
        "# id type x y z radius parent",
    ]
    for sample, kind, x, y, z, radius, parent in rows:
        lines.append(f"{sample} {kind} {x:.4f} {y:.4f} {z:.4f} {radius:.4f} {parent}")
    path.write_text("\n".join(lines) + "\n")
    return len(rows)


# ------------------------------------------------------------------------ node trees
def odd_nseg(length: float, dx: float) -> int:
    """Smallest odd integer >= length / dx (at least 1)."""
    n = max(1, math.ceil(length / dx - 1e-9))
    return n if n % 2 else n + 1


def node_count(lengths: np.ndarray, dx: float, n_roots: int = 1) -> int:
    """Matrix rows for segment length ``dx``: roots + per section (nseg centres + end)."""
    return n_roots + sum(odd_nseg(length, dx) + 1 for length in lengths)


def choose_dx(lengths: np.ndarray, target: int) -> float:
    """The ``dx`` on a ``DX_GRID_UM`` grid whose node count is closest to ``target``."""
    grid = [round(k * DX_GRID_UM, 10) for k in range(1, 2001)]
    return min(grid, key=lambda dx: (abs(node_count(lengths, dx) - target), dx))


def node_locations(sections: list) -> dict:
    """Enumerate NEURON's matrix nodes (call after ``finitialize``).

    Returns the parent array in node-index order, plus per node its section index,
    position x and a location object addressing its matrix row.
    """
    root = root_section(sections)
    index_of = {sec.name(): j for j, sec in enumerate(sections)}
    entries: dict[int, tuple[int, int, float, object]] = {}  # node -> (parent, sec, x, loc)

    def claim(node: int, parent: int, section: int, x: float, loc) -> None:
        if node in entries:
            raise ValueError(f"node {node} claimed twice")
        entries[node] = (parent, section, x, loc)

    claim(int(root(0).node_index()), -1, index_of[root.name()], 0.0, root(0))
    for sec in sections:
        j = index_of[sec.name()]
        near = int(sec.orientation())  # the end attached to the parent: 0 or 1
        attach = int(sec(near).node_index())
        true_parent = sec.trueparentseg()
        if true_parent is None:
            expected = int(root(0).node_index())
        else:
            expected = int(true_parent.sec(true_parent.x).node_index())
        if sec is not root and attach != expected:
            raise ValueError(f"{sec.name()}: attached to node {attach}, expected {expected}")
        centres = list(sec) if near == 0 else list(sec)[::-1]
        previous = attach
        for seg in centres:
            node = int(seg.node_index())
            claim(node, previous, j, float(seg.x), seg)
            previous = node
        far = 1 - near
        claim(int(sec(far).node_index()), previous, j, float(far), sec(far))

    n = len(entries)
    if sorted(entries) != list(range(n)):
        raise ValueError("node indices are not exactly 0..N-1")
    parent = np.array([entries[i][0] for i in range(n)], np.int64)
    # every node must reach the root
    depth = np.full(n, -1, np.int64)
    for i in range(n):
        chain = []
        k = i
        while k >= 0 and depth[k] < 0:
            chain.append(k)
            k = parent[k]
            if len(chain) > n:
                raise ValueError("parent array has a cycle")
        base = -1 if k < 0 else depth[k]
        for step, node in enumerate(reversed(chain), start=1):
            depth[node] = base + step
    return {
        "parent": parent,
        "section_index": np.array([entries[i][1] for i in range(n)], np.int64),
        "x": np.array([entries[i][2] for i in range(n)], np.float64),
        "loc": [entries[i][3] for i in range(n)],
        "depth": depth,
    }


def printed_matrix() -> np.ndarray:
    """Capture ``h.fmatrix()``'s printout: one row per matrix row (index, b, a, d, rhs)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            h.fmatrix()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode()
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return np.array(rows, np.float64)


def reference_system(sections: list, tree: dict) -> dict:
    """Read NEURON's matrix in node order for a set voltage, and NEURON's solution."""
    h.secondorder = 0
    h.dt = DT_MS
    h.finitialize(-65.0)
    locs = tree["loc"]
    n = len(locs)
    v0 = -65.0 + 10.0 * np.sin(0.05 * np.arange(n))
    for loc, value in zip(locs, v0, strict=True):
        loc.v = value
    h.fcurrent()
    matrix = np.array([[h.fmatrix(loc, k) for k in (1, 2, 3, 4)] for loc in locs])
    a, d, b, rhs = matrix.T.copy()
    area = np.array([loc.area() for loc in locs])

    printed = printed_matrix()
    if printed.shape[0] != n:
        raise ValueError(f"NEURON prints {printed.shape[0]} matrix rows, found {n} nodes")
    if not np.array_equal(printed[:, 0], np.arange(n)):
        raise ValueError("fmatrix() rows are not numbered 0..N-1")
    for column, values in ((1, b), (2, a), (3, d)):
        if not np.allclose(printed[:, column], values, rtol=1e-5, atol=1e-9):
            raise ValueError(f"fmatrix() column {column} disagrees with fmatrix(loc, k)")

    h.fadvance()
    solution = np.array([h.fmatrix(loc, 4) for loc in locs])
    v1 = np.array([loc.v for loc in locs])
    if not np.allclose(v1 - v0, solution, rtol=1e-9, atol=1e-9):
        raise ValueError("fadvance() did not add the solved rhs to v")
    return {
        "a": a,
        "b": b,
        "d": d,
        "rhs": rhs,
        "solution": solution,
        "v": v0,
        "area_um2": area,
    }


def check_system(parent: np.ndarray, system: dict) -> None:
    """Check NEURON's a, b, d, solution against the parent array (raises on failure)."""
    a, b, d, rhs, x = (system[k] for k in ("a", "b", "d", "rhs", "solution"))
    area = system["area_um2"]
    has = parent >= 0
    if np.any(a[~has] != 0) or np.any(b[~has] != 0):
        raise ValueError("a root has a nonzero off-diagonal element")
    if np.any(a[has] == 0) or np.any(b[has] == 0):
        raise ValueError("a non-root node has a zero off-diagonal element")
    node_area = np.where(area > 0, area, 100.0)
    lhs = a[has] * node_area[parent[has]]
    rhs_pair = b[has] * node_area[has]
    if not np.allclose(lhs, rhs_pair, rtol=1e-9):
        raise ValueError("a[i] * area(parent) != b[i] * area(i)")
    child_a = np.bincount(parent[has], weights=a[has], minlength=parent.size)
    conserved = d + np.where(has, b, 0.0) + child_a
    membrane = np.where(area > 0, 1e-3 * CM_UF_CM2 / DT_MS + G_PAS_S_CM2, 0.0)
    scale = np.abs(d) + 1.0
    if np.max(np.abs(conserved - membrane) / scale) > 1e-10:
        raise ValueError("axial current is not conserved over the parent array")
    residual = d * x - rhs
    residual[has] += b[has] * x[parent[has]]
    residual += np.bincount(parent[has], weights=a[has] * x[has], minlength=parent.size)
    if np.max(np.abs(residual)) > 1e-9 * (np.max(np.abs(rhs)) + 1.0):
        raise ValueError("NEURON's solution does not satisfy the system over this tree")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but byte-for-byte reproducible (fixed zip dates)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def write_node_tree(path: Path, sections: list, dx: float, source: str) -> dict:
    """Discretise with segment length ``dx``, verify against NEURON, write ``path``."""
    for sec in sections:
        sec.nseg = odd_nseg(sec.L, dx)
        sec.Ra = RA_OHM_CM
        sec.cm = CM_UF_CM2
        sec.insert("pas")
        for seg in sec:
            seg.pas.g = G_PAS_S_CM2
            seg.pas.e = E_PAS_MV
    h.finitialize(-65.0)
    tree = node_locations(sections)
    system = reference_system(sections, tree)
    check_system(tree["parent"], system)
    n = tree["parent"].size
    lengths = np.array([sec.L for sec in sections])
    if n != node_count(lengths, dx):
        raise ValueError("node count disagrees with roots + sum(nseg + 1)")
    arrays = {
        "parent": tree["parent"],
        "section_index": tree["section_index"],
        "x": tree["x"],
        "area_um2": system["area_um2"],
        "section_names": np.array([sec.name() for sec in sections]),
        "nseg": np.array([sec.nseg for sec in sections], np.int64),
        "section_length_um": lengths,
        "segment_length_um": np.float64(dx),
        "n": np.int64(n),
        "nseg_rule": np.array("nseg = smallest odd integer >= L / segment_length_um"),
        "source": np.array(source),
        "neuron_version": np.array(neuron.__version__),
        "a": system["a"],
        "b": system["b"],
        "d": system["d"],
        "rhs": system["rhs"],
        "solution": system["solution"],
        "v": system["v"],
        "Ra_ohm_cm": np.float64(RA_OHM_CM),
        "cm_uF_cm2": np.float64(CM_UF_CM2),
        "g_pas_S_cm2": np.float64(G_PAS_S_CM2),
        "e_pas_mV": np.float64(E_PAS_MV),
        "dt_ms": np.float64(DT_MS),
    }
    save_npz(path, arrays)
    parent = tree["parent"]
    has = parent >= 0
    return {
        "n": n,
        "height": int(tree["depth"].max()),
        "parent_before_child": bool(np.all(parent[has] < np.flatnonzero(has))),
        "reversed_sections": sum(int(sec.orientation()) for sec in sections),
        "dx": dx,
    }


# ------------------------------------------------------------------------------ main
def summarise_with_dhs(paths: list[Path]) -> None:
    """Print dhs's view of each written file, if ``dhs`` can be imported."""
    sys.path.insert(0, str(ROOT))
    try:
        import dhs
    except ImportError as error:
        print(f"dhs not importable ({error}); skipping the dhs summary")
        return
    for path in paths:
        if path.suffix == ".swc":
            tree = dhs.Tree.from_swc(path)
        else:
            with np.load(path) as data:
                tree = dhs.Tree(data["parent"])
        steps = dhs.schedule(tree, 16).n_steps
        print(
            f"{path.name}: n={tree.n} height={tree.height} components={tree.n_components} "
            f"schedule(16).n_steps={steps} lower_bound(16)={dhs.lower_bound(tree, 16)}"
        )


def main(argv: list[str] | None = None) -> None:
    """Write every file into ``--out`` (default ``data/morphologies``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    demo = find_demo_dir()
    generator = f"generated by data/make_morphologies.py with NEURON {neuron.__version__}"
    written = []

    pyramid_file = demo / "pyramid.nrn"
    sections = load_cell(pyramid_file)
    header = ["pyramid.swc: " + generator, "source: share/nrn/demo/pyramid.nrn"]
    header += hoc_header(pyramid_file)
    n_samples = write_swc(out / "pyramid.swc", sections, header)
    written.append(out / "pyramid.swc")
    print(f"pyramid.swc: {len(sections)} sections, {n_samples} samples")

    lengths = np.array([sec.L for sec in sections])
    for name, dx in (
        ("pyramid_nodes_1um.npz", 1.0),
        ("pyramid_nodes_ca1size.npz", choose_dx(lengths, CA1_TARGET_NODES)),
    ):
        info = write_node_tree(out / name, sections, dx, "share/nrn/demo/pyramid.nrn")
        written.append(out / name)
        print(
            f"{name}: segment length {dx} um, n={info['n']}, height={info['height']}, "
            f"parent index < child index: {info['parent_before_child']}, "
            f"reversed sections: {info['reversed_sections']}"
        )

    dend3_file = demo / "dend3" / "dend3.nrn"
    sections = load_cell(dend3_file)
    h.define_shape()
    header = [
        "dend3.swc: " + generator,
        "source: share/nrn/demo/dend3/dend3.nrn (stylized motoneuron, L/diam only);",
        "3-D points made by NEURON's define_shape() for the file's own nseg",
    ]
    n_samples = write_swc(out / "dend3.swc", sections, header)
    written.append(out / "dend3.swc")
    print(f"dend3.swc: {len(sections)} sections, {n_samples} samples")

    summarise_with_dhs(written)


if __name__ == "__main__":
    main()

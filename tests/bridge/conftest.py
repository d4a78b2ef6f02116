"""Factories for the bridge tests: morphology files and NEURON runs in a child process.

A NEURON crash (a segfault inside Import3d) would kill the whole test process, so tests
that give NEURON a file that could crash it run NEURON in a child process
(:func:`neuron_child`). One child takes a batch of jobs, so NEURON starts once per batch;
if it dies, the job it was on is reported as crashed and a fresh child takes the rest.

The NEURON models and the reset between tests (``clean_neuron``, ``branchy``,
``pyramid``, ``model``, ``native_runs``) come from ``tests/support/neuron_fixtures.py``,
loaded for the whole suite by ``tests/conftest.py``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import networkx as nx
import pytest
from neuron import h

import child_process
import pyramid_cells
from fetched import package_root
from paths import ROOT

# The real morphologies of other packages (fetched from PyPI at test time, not vendored).
MORPHOLOGY_PACKAGES = (
    ("bluepyopt", "1.14.26", "sdist", "."),  # examples/, bluepyopt/tests/test_ephys/testdata
    ("neuron-morphology", "1.2.2", "wheel", "tests/data"),
    ("navis", "1.10.0", "wheel", "navis/data/swc"),
)

# Run in the child: read jobs (JSON on stdin), print one JSON line per job, as each ends.
_CHILD = r"""
import json, sys
from neuron import h
from neuron_bridge import load_morphology, node_count
h.load_file("import3d.hoc")

class Owner:
    def __str__(self):
        return "reference"

def neuron_rows(sections):
    # NEURON's own count of matrix rows: the distinct node indices of the sections
    h.finitialize(-65.0)
    rows = set()
    for sec in sections:
        rows.update((sec(0).node_index(), sec(1).node_index()))
        rows.update(seg.node_index() for seg in sec)
    return len(rows)

def summary(sections, nodes):
    return {"ok": True, "sections": len(sections), "nodes": nodes,
            "length": sum(sec.L for sec in sections)}

for job in json.load(sys.stdin):
    print(json.dumps({"start": job["id"]}), flush=True)
    extra = h.Section(name="already_present") if job.get("section_present") else None
    if job["kind"] == "load":
        try:
            cell = load_morphology(job["path"], name="cell")
        except Exception as error:
            result = {"ok": False, "error": type(error).__name__, "message": str(error)}
        else:
            result = summary(cell.all, node_count(cell))
            result["neuron_rows"] = neuron_rows(cell.all)
            cell.delete()
    else:  # NEURON's own Import3d, used as the reference
        path = job["path"]
        reader = h.Import3d_SWC_read() if path.endswith(".swc") else h.Import3d_Neurolucida3()
        reader.quiet = 1
        owner = Owner()
        reader.input(path)
        h.Import3d_GUI(reader, False).instantiate(owner)
        sections = list(owner.all)
        result = summary(sections, neuron_rows(sections))
        for sec in sections:
            h.delete_section(sec=sec)
    if extra is not None:
        h.delete_section(sec=extra)
    result["end"] = job["id"]
    print(json.dumps(result), flush=True)
"""


@pytest.fixture(scope="session")
def real_morphology_files() -> list[Path]:
    """Every SWC and ASC file of the packages in :data:`MORPHOLOGY_PACKAGES`, sorted."""
    found = []
    for name, version, kind, folder in MORPHOLOGY_PACKAGES:
        root = package_root(name, version, kind=kind) / folder
        found += [
            path
            for path in root.rglob("*")
            if path.is_file() and path.suffix.lower() in (".swc", ".asc")
        ]
    return sorted(found)


@pytest.fixture(scope="session")
def renumber_parent_first() -> Callable[[Path, Path], Path]:
    """``renumber(source, destination)``: :func:`_renumber_parent_first`."""
    return _renumber_parent_first


def _renumber_parent_first(source: Path, destination: Path) -> Path:
    """An SWC copy with ids ``1..n``, parents first (networkx, independent of dhs.swc).

    Ties go to the smaller original id, as in ``dhs.swc``; section names may differ
    otherwise, but not the tree NEURON builds.
    """
    rows = {}
    for line in source.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            rows[int(fields[0])] = fields[:7]
    graph = nx.DiGraph()
    graph.add_nodes_from(rows)
    graph.add_edges_from((int(row[6]), i) for i, row in rows.items() if int(row[6]) >= 0)
    order = list(nx.lexicographical_topological_sort(graph))
    new_id = {old: new for new, old in enumerate(order, start=1)}
    lines = []
    for old in order:
        row = rows[old]
        parent = new_id[int(row[6])] if int(row[6]) >= 0 else -1
        lines.append(" ".join([str(new_id[old]), *row[1:6], str(parent)]))
    destination.write_text("\n".join(lines) + "\n")
    return destination


def _run_batch(jobs: list[dict], timeout: float) -> dict[str, dict]:
    results: dict[str, dict] = {}
    environment = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's packages
    pending = list(jobs)
    while pending:
        completed = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps(pending),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=environment,
        )
        started = None
        for line in completed.stdout.splitlines():
            if not line.startswith("{"):
                continue  # NEURON's own output
            message = json.loads(line)
            if "start" in message:
                started = message["start"]
            elif "end" in message:
                results[message.pop("end")] = message
                started = None
        if started is None:
            if completed.returncode != 0:  # died before the first job began
                raise RuntimeError(f"NEURON child process failed:\n{completed.stderr[-3000:]}")
            break
        results[started] = {
            "ok": False,
            "error": "crash",
            "message": f"child exited with {completed.returncode}: {completed.stderr[-1500:]}",
        }
        pending = [job for job in pending if job["id"] not in results]
    return results


@pytest.fixture(scope="session")
def neuron_child() -> Callable[..., dict[str, dict]]:
    """``run(jobs, timeout=..., workers=2)``: NEURON runs the jobs in child processes.

    The jobs are dealt round-robin to ``workers`` children that run side by side.

    Each job is a dict with ``id``, ``path`` and ``kind``: ``"load"``
    (``neuron_bridge.load_morphology``) or ``"reference"`` (NEURON's own Import3d on the
    file as it is); ``section_present=True`` creates a section first. Returns, per id,
    ``{"ok": True, "sections", "nodes", "length", ["neuron_rows"]}`` or ``{"ok": False,
    "error": <exception name or "crash">, "message"}``.
    """

    def run(jobs: Iterable[dict], timeout: float = 300.0, workers: int = 2) -> dict[str, dict]:
        jobs = list(jobs)
        batches = [jobs[start::workers] for start in range(workers) if jobs[start::workers]]
        with ThreadPoolExecutor(len(batches)) as pool:
            parts = list(pool.map(lambda batch: _run_batch(batch, timeout), batches))
        return {key: value for part in parts for key, value in part.items()}

    return run


@pytest.fixture
def write_swc(tmp_path) -> Callable[[str, str], Path]:
    """``write(text, name="cell.swc")``: a file the test writes into ``tmp_path``."""

    def write(text: str, name: str = "cell.swc") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# =========================================================================================
# Argument checks and warnings of use_dhs and extract (test_bridge_arguments.py,
# test_bridge_swap.py, test_bridge_extract.py), and the cells of test_spines.py
# =========================================================================================


@pytest.fixture
def run_python() -> Callable:
    """``run_python(code, timeout=300)``: the code in a fresh interpreter with this checkout
    importable; returns the finished ``subprocess.CompletedProcess``."""
    return child_process.run_python


@pytest.fixture
def caught_runtime_warnings() -> Callable:
    """``with caught_runtime_warnings() as messages:`` records every RuntimeWarning raised
    inside (also those of objects collected there) as a list of message strings."""

    @contextmanager
    def catch() -> Iterator[list[str]]:
        messages: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                gc.collect()  # a swap left unreferenced warns when it is collected
                messages.extend(
                    str(warning.message) for warning in caught if warning.category is RuntimeWarning
                )

    return catch


@pytest.fixture
def passive_pyramid(clean_neuron) -> Callable:
    """``passive_pyramid(segment_length=None)``: NEURON's demo pyramid, passive everywhere
    (``pyramid_cells.passive_pyramid``), in a NEURON reset before and after the test."""
    return pyramid_cells.passive_pyramid


@pytest.fixture
def active_pyramid(clean_neuron) -> Callable:
    """``active_pyramid(segment_length=40)``: the demo pyramid with an hh soma and passive
    dendrites (``pyramid_cells.active_pyramid``)."""
    return pyramid_cells.active_pyramid


@pytest.fixture
def no_hh_tables(clean_neuron) -> Iterator[None]:
    """``usetable_hh = 0`` for the test (hh's rate tables off), 1 again afterwards."""
    h.usetable_hh = 0
    yield
    h.usetable_hh = 1


# ======================================================================= end of that block

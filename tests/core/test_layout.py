"""The layering of the libraries, read from their import statements (``ast``, nothing run).

* no import cycles among the modules of ``dhs`` and ``neuron_bridge``;
* ``dhs`` never imports ``neuron_bridge``, ``benchmarks`` or ``studies``;
* nothing under ``dhs/`` or ``neuron_bridge/`` imports a benchmark, demo or study module.

Every import counts, also one inside a function: a deferred import still ties the two
modules together.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import networkx as nx
import pytest

from paths import ROOT

LIBRARIES = ("dhs", "neuron_bridge")
# Top-level folders that hold demos, benchmarks and studies, never library code.
APPLICATION_PACKAGES = ("benchmarks", "studies", "notebooks")
# A library module whose name says it is a demo, a benchmark or a study.
APPLICATION_NAME = re.compile(r"(demo|bench|experiment|study)", re.IGNORECASE)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def library_modules() -> dict[str, Path]:
    """Every module of the libraries, by dotted name."""
    return {
        _module_name(path): path
        for library in LIBRARIES
        for path in sorted((ROOT / library).rglob("*.py"))
    }


def _imported_names(name: str, path: Path, modules: set[str]) -> set[str]:
    """Dotted names of the modules that ``name`` imports (relative imports resolved).

    ``from package import x`` imports ``package.x`` when that is one of ``modules``, else
    ``package`` (x is then a name defined in the package).
    """
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return found


@cache
def import_graph() -> nx.DiGraph:
    """Module -> every module it imports (library modules and outside ones alike)."""
    graph = nx.DiGraph()
    modules = library_modules()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in _imported_names(name, path, set(modules)):
            if imported != name:
                graph.add_edge(name, imported)
    return graph


def _cycles(within: str | None = None) -> list[list[str]]:
    """Import cycles among library modules; ``within``: only those inside that package."""
    modules = set(library_modules())
    internal = import_graph().subgraph(modules)
    cycles = []
    for component in nx.strongly_connected_components(internal):
        if len(component) < 2:
            continue
        inside = all(member.startswith(f"{within}.") for member in component) if within else None
        if within is None or inside:
            cycles.append(sorted(component))
    return cycles


def _is_application(module: str) -> bool:
    top = module.partition(".")[0]
    if top in APPLICATION_PACKAGES:
        return True
    return top in LIBRARIES and bool(APPLICATION_NAME.search(module.rpartition(".")[2]))


# ----------------------------------------------------------------------------- the graph
def test_the_graph_sees_every_library_module_and_known_edges():
    """The walk is not vacuous: it finds the modules and imports known to exist."""
    modules = library_modules()
    assert {"dhs", "dhs.solver", "dhs.tree", "neuron_bridge", "neuron_bridge.swap"} <= set(modules)
    graph = import_graph()
    assert graph.has_edge("dhs.solver", "dhs.tree")  # from .tree import Tree
    assert graph.has_edge("dhs.solver", "dhs.solvers.cuda_engine")  # inside a method
    assert graph.has_edge("neuron_bridge.swap", "neuron_bridge._nrn")  # from . import _nrn
    assert graph.has_edge("neuron_bridge.swap", "dhs")  # import dhs
    assert not graph.has_edge("dhs.solver", "dhs.solver.Solver")
    assert graph.has_edge("dhs.solver", "dhs.checks")  # from . import checks
    assert not graph.has_edge("dhs.solver", "dhs")


def test_cycle_detection_works_on_a_made_up_graph():
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    components = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert components == [{"a", "b", "c"}]


# ----------------------------------------------------------------------------- the rules
def test_no_import_cycles_outside_the_engine():
    cycles = [
        cycle
        for cycle in _cycles()
        if not all(member.startswith("dhs.engine.") for member in cycle)
    ]
    assert cycles == []


def test_no_import_cycles_in_the_engine():
    assert _cycles(within="dhs.engine") == []


def test_dhs_never_imports_the_bridge_or_applications():
    forbidden = ("neuron_bridge", *APPLICATION_PACKAGES)
    graph = import_graph()
    offending = sorted(
        (module, imported)
        for module, imported in graph.edges
        if module.partition(".")[0] == "dhs" and imported.partition(".")[0] in forbidden
    )
    assert offending == []


def test_libraries_never_import_a_benchmark_demo_or_study():
    graph = import_graph()
    offending = sorted(
        (module, imported)
        for module, imported in graph.edges
        if _is_application(imported) and not _is_application(module)
    )
    assert offending == []


def test_application_names_are_recognised():
    assert _is_application("benchmarks.solve")
    assert _is_application("studies.spines.runner")
    assert _is_application("neuron_bridge.spine_experiment")
    assert _is_application("dhs.schedule_demo")
    assert not _is_application("dhs.schedule")
    assert not _is_application("neuron_bridge.spines")


# ----------------------------------------------------------------------------- design notes
@pytest.mark.parametrize("library", LIBRARIES)
def test_each_library_has_a_short_design_note(library):
    note = ROOT / library / "DESIGN.md"
    assert note.is_file()
    assert len(note.read_text(encoding="utf-8").splitlines()) <= 60


def test_every_cited_note_is_in_the_repository():
    """A module may point at a note (``dhs/DESIGN.md``); the note must exist."""
    cited = set()
    for folder in (*LIBRARIES, "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in re.finditer(r"[\w./-]+\.md\b", path.read_text(encoding="utf-8")):
                cited.add((path.relative_to(ROOT).as_posix(), match.group()))
    assert ("dhs/solvers/cuda.py", "dhs/DESIGN.md") in cited  # the scan finds citations
    missing = sorted(
        (source, note)
        for source, note in cited
        if not (ROOT / note).is_file() and not (ROOT / source).parent.joinpath(note).is_file()
    )
    assert missing == []

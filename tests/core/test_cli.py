"""The command line, the benchmark script and the core demo, run for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import dhs
from benchmarks.cli import main as benchmark_main
from benchmarks.solve import run_benchmark
from dhs.cli import NEURON_SUFFIXES, find_model_reader, main, schedule_table
from fetched import package_file
from paths import MORPHOLOGIES, ROOT


def test_schedule_command_prints_the_schedule_numbers(capsys):
    path = MORPHOLOGIES / "pyramid.swc"
    assert main(["schedule", str(path), "--threads", "16", "32"]) == 0
    printed = capsys.readouterr().out
    tree = dhs.Tree.from_swc(path)
    for threads in (16, 32):
        plan = dhs.schedule(tree, threads)
        assert f"threads={threads}" in printed
        assert f"{plan.n_steps:>10,}" in printed
        assert f"{dhs.breadth_first_level_steps(tree, threads):>10,}" in printed
    assert f"{tree.n:>10,}" in printed
    assert f"{tree.height:>10,}" in printed


def test_schedule_command_reads_npz_parent_arrays(capsys):
    path = MORPHOLOGIES / "pyramid_nodes_1um.npz"
    assert main(["schedule", str(path), "-k", "4"]) == 0
    assert "1,404" in capsys.readouterr().out  # DHS steps = lower bound for k = 4


@pytest.mark.parametrize(
    ("content", "message"),
    [("1 1 0 0 0 1 7\n", "names parent 7"), ("1 1 0 0\n", "needs 7 fields")],
)
def test_schedule_command_reports_bad_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.swc"
    path.write_text(content)
    assert main(["schedule", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_schedule_command_rejects_unknown_formats(tmp_path, capsys):
    path = tmp_path / "cell.txt"
    path.write_text("")
    assert main(["schedule", str(path)]) == 2
    assert "expected one of .swc, .asc, .hoc, .nrn, .py, .npz, .npy" in capsys.readouterr().err


def test_schedule_command_rejects_discretising_a_parent_array(capsys):
    path = MORPHOLOGIES / "pyramid_nodes_1um.npz"
    assert main(["schedule", str(path), "--dx", "1"]) == 2
    assert "--d-lambda and --dx apply to NEURON models only" in capsys.readouterr().err


def test_a_missing_model_reader_says_neuron_is_needed():
    with pytest.raises(ValueError, match=r"reading \.asc files needs NEURON.*pip install neuron"):
        find_model_reader(".asc", group="dhs.no_such_group")


def test_the_model_readers_are_installed_entry_points():
    # neuron_bridge's reader, found without dhs importing neuron_bridge
    for suffix in NEURON_SUFFIXES:
        assert find_model_reader(suffix).__module__ == "neuron_bridge.cli"


# --------------------------------------------- NEURON files, the CLI run as a subprocess
def run_command(module: str, *arguments: str) -> subprocess.CompletedProcess:
    """``python -m module arguments`` from this checkout (its packages first on the path)."""
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def printed_rows(stdout: str) -> dict[int, dict[str, int]]:
    """The numbers ``dhs schedule`` printed, per k."""
    rows: dict[int, dict[str, int]] = {}
    for line in stdout.splitlines():
        found = re.search(r"  threads=(\d+)$", line)
        if found:
            row = rows.setdefault(int(found[1]), {})
        elif re.match(r"  [a-z ]+ +[\d,]+$", line):
            name, value = line.rsplit(maxsplit=1)
            row[name.strip().replace(" ", "_")] = int(value.replace(",", ""))
    return rows


def expected_rows(parent: list[int], threads: tuple[int, ...]) -> dict[int, dict[str, int]]:
    tree = dhs.Tree(parent)
    return {k: schedule_table(tree, k) for k in threads}


# NEURON itself on the ASC file (Import3d, no neuron_bridge): matrix rows and cells, at
# Import3d's nseg and at the d_lambda rule computed with NEURON's own lambda_f.
_NEURON_REFERENCE = r"""
import json, sys
from neuron import h
h.load_file("import3d.hoc"); h.load_file("stdlib.hoc")
class Owner:
    def __str__(self):
        return "reference"
reader = h.Import3d_Neurolucida3(); reader.quiet = 1; reader.input(sys.argv[1])
owner = Owner(); h.Import3d_GUI(reader, False).instantiate(owner)
def rows():
    h.finitialize(-65)
    found = set()
    for sec in h.allsec():
        found.update((sec(0).node_index(), sec(1).node_index()))
        found.update(seg.node_index() for seg in sec)
    return len(found)
counts = {"own": rows()}
for sec in h.allsec():
    sec.nseg = int((sec.L / (0.1 * h.lambda_f(100, sec=sec)) + 0.9) / 2) * 2 + 1
counts["d_lambda"] = rows()
counts["cells"] = sum(1 for sec in h.allsec() if h.SectionRef(sec=sec).has_parent() == 0)
print(json.dumps(counts))
"""


def test_schedule_of_the_l5pc_asc_is_neurons_compartment_tree():
    pytest.importorskip("neuron")
    path = package_file("bluepyopt", "1.14.26", "examples/l5pc/morphology/C060114A7.asc")
    reference = subprocess.run(
        [sys.executable, "-c", _NEURON_REFERENCE, str(path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    counts = json.loads(reference.stdout.splitlines()[-1])
    for flags, key in (((), "own"), (("--d-lambda", "0.1"), "d_lambda")):
        completed = run_command("dhs.cli", "schedule", str(path), "-k", "16", "32", *flags)
        assert completed.returncode == 0, completed.stderr
        assert "tree: NEURON's compartments" in completed.stdout
        rows = printed_rows(completed.stdout)
        assert sorted(rows) == [16, 32]
        for k, row in rows.items():
            assert row["nodes"] == row["serial_steps"] == counts[key]
            assert row["cells"] == counts["cells"] == 1
            assert row["lower_bound"] <= row["dhs_steps"] <= row["breadth_first_level_steps"]
            assert row["lower_bound"] >= max(row["depth"] + 1, -(-row["nodes"] // k))
    assert counts["d_lambda"] > counts["own"]


# soma (nseg 1, 20 um); dend[0] (nseg 3, 100 um) at soma(1); dend[1] (nseg 2, 50 um) at
# soma(0). NEURON's matrix rows: the root (soma x=0) 0, soma centre 1, soma(1) 2, dend[0]
# centres 3 4 5 and its end 6, dend[1] centres 7 8 and its end 9.
HOC_MODEL = """\
create soma, dend[2]
soma { L = 20  diam = 20  nseg = 1 }
dend[0] { L = 100  diam = 2  nseg = 3 }
dend[1] { L = 50  diam = 1  nseg = 2 }
connect dend[0](0), soma(1)
connect dend[1](0), soma(0)
"""
HOC_PARENT = [-1, 0, 1, 2, 3, 4, 5, 0, 7, 8]
# at --dx 30: soma nseg 1, dend[0] ceil(100/30) = 4 -> 5, dend[1] ceil(50/30) = 2 -> 3
HOC_PARENT_DX30 = [-1, 0, 1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11]

PY_MODEL = """\
from neuron import h

soma = h.Section(name="soma")
soma.L = soma.diam = 20
dendrites = [h.Section(name=f"dend{i}") for i in range(3)]
for i, dend in enumerate(dendrites):
    dend.L, dend.diam, dend.nseg = 100, 2, 1 + 2 * i
    dend.connect(soma(1))
"""
# root, soma centre, soma(1); then dend0 (1 centre + end), dend1 (3 + end), dend2 (5 + end)
PY_PARENT = [-1, 0, 1, 2, 3, 2, 5, 6, 7, 2, 9, 10, 11, 12, 13]


@pytest.mark.parametrize(
    ("module", "name", "text", "flags", "parent"),
    [
        ("dhs.cli", "model.hoc", HOC_MODEL, (), HOC_PARENT),
        ("dhs.cli", "model.nrn", HOC_MODEL, ("--dx", "30"), HOC_PARENT_DX30),
        ("dhs.cli", "model.py", PY_MODEL, (), PY_PARENT),
        ("neuron_bridge", "model.hoc", HOC_MODEL, ("--dx", "30"), HOC_PARENT_DX30),
        ("neuron_bridge", "model.py", PY_MODEL, (), PY_PARENT),
    ],
    ids=["dhs-hoc", "dhs-nrn-dx", "dhs-py", "dhs-neuron-hoc-dx", "dhs-neuron-py"],
)
def test_schedule_of_a_neuron_model_file(tmp_path, module, name, text, flags, parent):
    pytest.importorskip("neuron")
    path = tmp_path / name
    path.write_text(text)
    completed = run_command(module, "schedule", str(path), "-k", "2", "4", *flags)
    assert completed.returncode == 0, completed.stderr
    assert printed_rows(completed.stdout) == expected_rows(parent, (2, 4))


def test_schedule_of_a_failing_model_file_is_a_clear_error(tmp_path):
    pytest.importorskip("neuron")
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('no such cell')\n")
    completed = run_command("dhs.cli", "schedule", str(path))
    assert completed.returncode == 2
    assert f"running {path} failed: RuntimeError: no such cell" in completed.stderr


def test_dhs_neuron_names_itself():
    pytest.importorskip("neuron")
    completed = run_command("neuron_bridge", "--help")
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: dhs-neuron ")
    assert "schedule" in completed.stdout


def test_benchmark_writes_a_complete_report(tmp_path):
    output = tmp_path / "bench.json"
    report = run_benchmark(
        batches=(9,), repeats=1, spsolve_cells=2, output_path=output, copy_bytes=1 << 22
    )
    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    entry = report["results"][0]
    assert entry["cells"] == 9 and entry["nodes"] == 9 * report["cell"]["nodes"]
    assert {"serial", "cpu", "scipy_spsolve"} <= set(entry["methods"])
    assert entry["methods"]["cpu"]["max_relative_difference_to_serial"] < 1e-12
    assert report["machine"]["cpu_count"] >= 1
    for method in entry["methods"].values():
        assert np.isfinite(method["ns_per_node"]) and method["ns_per_node"] > 0


def test_core_demo_runs(capsys):
    assert benchmark_main(["schedule-demo"]) == 0
    printed = capsys.readouterr().out
    assert "serial  max |x - NEURON| = 0.00e+00 mV" in printed
    assert "cpu" in printed


def test_schedule_of_the_out_of_order_allen_swc(capsys):
    # samples not numbered parent-before-child, 289 roots (axon fragments): read by dhs.swc
    path = package_file("neuron-morphology", "1.2.2", "tests/data/17545-6151-X24259-Y36270.swc",
                        kind="wheel")  # fmt: skip
    samples = [line.split() for line in path.read_text().splitlines() if line[:1].isdigit()]
    assert main(["schedule", str(path), "-k", "8"]) == 0
    row = printed_rows(capsys.readouterr().out)[8]
    assert row["nodes"] == len(samples) == 3397
    assert row["cells"] == sum(1 for fields in samples if fields[6] == "-1") == 289


def test_schedule_of_an_swc_discretised_by_neuron():
    pytest.importorskip("neuron")
    path = MORPHOLOGIES / "pyramid.swc"
    completed = run_command("dhs.cli", "schedule", str(path), "--dx", "1", "-k", "16")
    assert completed.returncode == 0, completed.stderr
    assert "nseg for segments of at most 1 um" in completed.stdout
    assert printed_rows(completed.stdout)[16]["nodes"] == 5551  # data/README.md, pyramid at 1 um

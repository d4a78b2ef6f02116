"""The command line, the benchmark script and the core demo, run for real."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dhs
from benchmarks.cli import main as benchmark_main
from benchmarks.solve import run_benchmark
from dhs.cli import main
from paths import MORPHOLOGIES


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
    assert "expected an .swc, .npz or .npy file" in capsys.readouterr().err


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

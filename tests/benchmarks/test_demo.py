"""The main demo (``dhs-bench demo``): N instances, NEURON against the engine, run for real
with tiny settings."""

from __future__ import annotations

import os
import re

from neuron import h

from benchmarks.cli import main
from dhs import resolve_backend
from neuron_bridge import _nrn


def test_demo_runs_the_engine_against_neuron(tmp_path, capsys, monkeypatch, clean_neuron):
    monkeypatch.chdir(tmp_path)  # the figure goes to ./output/
    assert main(["demo", "--n", "4", "--tstop", "30"]) == 0
    printed = capsys.readouterr().out

    assert "1,399 nodes" in printed
    assert "N = 4 instances" in printed
    assert "ParallelContext().nthread(" in printed
    backend = resolve_backend("auto")
    assert f"engine : backend {backend}: " in printed
    if backend == "cpu":
        assert "the CPU engine" in printed
    ratio = re.search(r"throughput ratio engine/NEURON: ([0-9.]+)x", printed)
    assert ratio and float(ratio.group(1)) > 0
    assert re.search(
        r"max \|ΔV\| over all 4 instances: soma 0\.0 mV, far dendrite \(\S+\) 0\.0 mV "
        r"\(every step\); every node at tstop 0\.0 mV",
        printed,
    )
    spikes = re.search(r"spikes: NEURON (\d+), engine (\d+); every instance's spike "
                       r"times identical: True", printed)  # fmt: skip
    assert spikes and spikes.group(1) == spikes.group(2) and int(spikes.group(1)) > 0
    assert "shadow max difference 0.0 mV" in printed

    figure = tmp_path / "output" / "demo_engine.png"
    assert figure.is_file() and os.path.getsize(figure) > 10_000
    assert not any(True for _ in h.allsec()), "the demo left NEURON sections behind"
    assert int(h.List("NetCon").count()) == 0, "the demo left NetCons behind"
    assert _nrn.thread_count() == 1, "the demo left NEURON on several threads"

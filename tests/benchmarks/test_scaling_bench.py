"""Smoke test of the per-node cost benchmark (``python -m benchmarks.scaling``)."""

from __future__ import annotations

from neuron import h

from benchmarks.scaling import run_benchmark


def test_scaling_benchmark_smoke(tmp_path):
    path = tmp_path / "scaling.json"
    report = run_benchmark(n_instances=2, tstop=0.5, rounds=1, output_path=path, verbose=False)
    assert path.exists()
    nodes = {key: entry["nodes"] for key, entry in report["results"].items()}
    assert nodes["small, 1 worker"] == 1399
    assert nodes["large, 1 worker"] > 24_000
    assert all(entry["ns_per_node_and_instance_step"] > 0 for entry in report["results"].values())
    assert set(report["ratio_large_over_small"]) == {"1 worker", "2 workers"}
    assert not any(True for _ in h.allsec()), "the benchmark left NEURON sections behind"

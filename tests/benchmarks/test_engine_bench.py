"""Smoke test of the engine throughput benchmark (neuron_bridge.engine_bench)."""

from __future__ import annotations

from neuron import h

from benchmarks.engine import run_benchmark


def test_engine_bench_smoke(tmp_path):
    path = tmp_path / "engine.json"
    report = run_benchmark(
        sizes=(2,),
        cuda_sizes=(2,),
        tstop=2.0,
        neuron_instances=2,
        check_instances=2,
        profile=False,
        output_path=path,
        verbose=False,
    )
    assert path.exists()
    for key in ("model", "machine", "tstop_ms", "dt_ms", "methods", "targets", "cuda",
                "accuracy_vs_neuron", "reproduce"):  # fmt: skip
        assert key in report
    assert report["model"]["nodes"] == 1399
    assert report["steps_per_instance"] == 80
    engine = report["methods"]["engine cpu N=2"]
    assert engine["instance_steps_per_s"] > 0 and engine["speedup_over_neuron"] > 0
    assert report["methods"]["neuron"]["instance_steps_per_s"] > 0
    for check in report["accuracy_vs_neuron"].values():
        assert check["instances_checked"] == [0, 1]
        assert check["max_abs_dv_mV"] < 1e-9
        assert check["spike_counts_match"]
    assert set(report["targets"]) == {"cpu", "cuda"}
    assert not any(True for _ in h.allsec()), "the benchmark left NEURON sections behind"

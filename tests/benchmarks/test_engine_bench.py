"""Smoke test of the engine throughput benchmark (benchmarks.engine) and its baselines."""

from __future__ import annotations

import itertools

from neuron import h

import benchmarks.engine as engine_bench
from benchmarks.engine import (
    ARBOR_MISSING,
    BASELINES,
    FAIR_BASELINES,
    HEADLINE,
    MANY_CELL_BASELINES,
    run_benchmark,
)


def _no_sections_left() -> None:
    assert not any(True for _ in h.allsec()), "the benchmark left NEURON sections behind"


def test_engine_bench_smoke(tmp_path):
    path = tmp_path / "engine.json"
    report = run_benchmark(
        sizes=(2,),
        cuda_sizes=(2,),
        tstop=2.0,
        neuron_instances=2,
        check_instances=2,
        rounds=1,
        profile=False,
        output_path=path,
        verbose=False,
    )
    assert path.exists()
    for key in ("model", "machine", "tstop_ms", "dt_ms", "baselines", "results", "summary",
                "targets", "cuda", "headline", "reproduce"):  # fmt: skip
        assert key in report
    assert report["model"]["nodes"] == 1399
    assert report["steps_per_instance"] == 80
    assert set(report["baselines"]) == set(BASELINES)
    group = report["results"]["N=2"]
    methods = group["methods"]

    # Every baseline ran, or the report says why not (CoreNEURON's error, Arbor missing).
    for name in ("neuron_sequential", "neuron_nthread2"):
        assert report["baselines"][name]["status"] == "ran", report["baselines"][name]
        assert methods[name]["instance_steps_per_s"] > 0
    for name in ("coreneuron", "arbor"):
        status = report["baselines"][name]["status"]
        if status == "ran":
            assert methods[name]["instance_steps_per_s"] > 0
        else:
            assert status.strip(), f"{name} did not run and the report does not say why"
            assert methods[name].get("error") or methods[name].get("status")
        if name == "arbor" and status != "ran":
            assert "error" in status or status == ARBOR_MISSING
    assert methods["neuron_nthread2"]["threads_running"] == 2

    # The engine beside every baseline that ran, and its accuracy against each NEURON.
    engine = methods["engine_cpu"]
    assert engine["instance_steps_per_s"] > 0
    ran = [name for name in BASELINES if "instance_steps_per_s" in methods[name]]
    assert set(engine["speedup_vs"]) == set(ran)
    fair = [name for name in FAIR_BASELINES if name in ran]
    assert engine["fastest_neuron_same_cores"] in fair
    assert engine[HEADLINE] == min(engine["speedup_vs"][name] for name in fair)
    for name in ("neuron_sequential", *FAIR_BASELINES):
        if name not in ran:
            continue
        check = group["accuracy"][f"engine_cpu_vs_{name}"]
        assert check["instances_checked"] == [0, 1]
        assert check["max_abs_dv_mV"] < 1e-9, (name, check)
        assert check["spike_counts_match"]
    for name in MANY_CELL_BASELINES:
        if name in ran:
            assert f"{name}_vs_neuron_sequential" in group["accuracy"]
    assert set(report["targets"]) == {"cpu", "cuda"}
    _no_sections_left()


def test_engine_bench_without_arbor(monkeypatch):
    """Arbor missing: the report says how to install it and the benchmark carries on."""
    monkeypatch.setattr(engine_bench, "_arbor_status", lambda: ARBOR_MISSING)
    report = run_benchmark(
        sizes=(2,), cuda_sizes=(), tstop=1.0, neuron_instances=2, rounds=1,
        baselines=("arbor",), profile=False, write=False, verbose=False,
    )  # fmt: skip
    assert report["baselines"]["arbor"]["status"] == ARBOR_MISSING
    assert report["results"]["N=2"]["methods"]["arbor"] == {"status": ARBOR_MISSING}
    assert report["baselines"]["neuron_nthread2"]["status"].startswith("not selected")
    assert report["results"]["N=2"]["methods"]["engine_cpu"]["instance_steps_per_s"] > 0
    _no_sections_left()


def test_cli_baselines_match():
    from benchmarks.cli import ENGINE_BASELINES

    assert ENGINE_BASELINES == BASELINES


def test_profile_removes_parts_through_the_model_tables():
    """``--profile``: reduced models built from the model's own tables, every chunk width,
    one worker against all, N = 1; the phase estimates are differences of the variants."""
    bench = engine_bench.PyramidBench()
    try:
        cell = bench.cell
        inputs = engine_bench.make_inputs(2, len(bench.netcons))
        points = [k for k, t in cell.mechanisms.items() if t.mechanism.is_point_process]
        no_points = engine_bench._reduced(cell, lambda t: t.name not in points)
        assert points and not set(points) & set(no_points.mechanisms)
        assert no_points.events == {}  # the removed point processes' events went too
        assert set(no_points.ions) == set(cell.ions)  # still used by a density mechanism
        bare = engine_bench._reduced(no_points, lambda t: False)
        assert bare.mechanisms == {} and bare.ions == {} and bare.n == cell.n

        profile = engine_bench.profile_engine(bench, inputs, n=2, tstop=0.25, rounds=1)
    finally:
        bench.close()
    variants = list(profile["variants_workers_1"].values())
    phases = list(profile["phase_estimates"].values())
    assert len(variants) == len(phases) == 4
    assert phases[:3] == [a - b for a, b in itertools.pairwise(variants)]
    assert phases[3] == variants[3]
    names = " ".join(profile["phase_estimates"])
    for name in cell.mechanisms:  # every mechanism named, from the model's tables
        assert name in names
    widths = [key.split(",")[0] for key in profile["chunk_sweep"]]
    assert widths[1:] == [f"chunk={w}" for w in engine_bench.PROFILE_CHUNKS]
    assert set(profile["instances_sweep"]) == {"N=2", "N=1"}
    assert set(profile["set_up_us_per_call"]) == {"N=2", "N=1"}
    for section in ("variants_workers_1", "chunk_sweep", "workers_sweep", "instances_sweep"):
        assert all(value > 0 for value in profile[section].values()), section
    _no_sections_left()

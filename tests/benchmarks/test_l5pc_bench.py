"""Smoke test of the L5PC throughput benchmark (benchmarks.l5pc) and its baselines.

Every NEURON baseline runs in a child process, so this process builds no NEURON cell.
The first run on a machine compiles the L5PC's mechanisms for CoreNEURON
(``nrnivmodl -coreneuron``, about a minute on two cores; cached after that).
"""

from __future__ import annotations

import json

import pytest
from neuron import h

from benchmarks.engine import FAIR_BASELINES, HEADLINE
from benchmarks.l5pc import BASELINES, MANY_CELL_BASELINES, coreneuron_mechanisms, run_benchmark


def _no_sections_left() -> None:
    assert not any(True for _ in h.allsec()), "the benchmark left NEURON sections behind"


def test_l5pc_bench_smoke(tmp_path):
    path = tmp_path / "l5pc.json"
    report = run_benchmark(
        sizes=(2,),
        tstop=15.0,
        step_delay=1.0,
        neuron_instances=1,
        check_instances=2,
        rounds=1,
        output_path=path,
        logs=tmp_path / "logs",
        verbose=False,
    )
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    for key in ("benchmark", "model", "tstop_ms", "dt_ms", "steps_per_instance", "machine",
                "baselines", "headline", "method", "results", "summary", "targets"):  # fmt: skip
        assert key in report
    assert report["steps_per_instance"] == 600
    assert len(report["model"]["mechanism_instances"]) == 14  # 12 channels, pas, IClamp
    assert set(report["baselines"]) == set(BASELINES)
    group = report["results"]["N=2"]
    methods = group["methods"]

    # Every baseline ran, or the report says why not (CoreNEURON's exact error).
    for name in ("neuron_sequential", "neuron_nthread2"):
        assert report["baselines"][name]["status"] == "ran", report["baselines"][name]
        assert methods[name]["instance_steps_per_s"] > 0
    status = report["baselines"]["coreneuron"]["status"]
    if status == "ran":
        assert methods["coreneuron"]["instance_steps_per_s"] > 0
        assert methods["coreneuron"]["coreneuron_enable"] is True
        assert methods["coreneuron"]["cache_efficient"] == 1
        assert methods["coreneuron"]["threads_running"] == 2
    else:  # its error (at N=2), or why it could not start
        assert status.strip(), "coreneuron did not run and the report does not say why"
        assert methods["coreneuron"].get("error") or methods["coreneuron"].get("status")
    assert methods["neuron_nthread2"]["threads_running"] == 2
    assert methods["neuron_sequential"]["instances_timed"] == 1

    # The engine beside every baseline that ran, and its accuracy against each NEURON.
    engine = methods["engine_cpu"]
    assert engine["instance_steps_per_s"] > 0
    ran = [name for name in BASELINES if "instance_steps_per_s" in methods[name]]
    assert set(engine["speedup_vs"]) == set(ran)
    fair = [name for name in FAIR_BASELINES if name in ran]
    assert engine["fastest_neuron_same_cores"] in fair
    assert engine[HEADLINE] == min(engine["speedup_vs"][name] for name in fair)
    for name in ran:
        check = group["accuracy"][f"engine_cpu_vs_{name}"]
        assert check["instances_checked"] == [0, 1]
        assert check["max_abs_dv_all_nodes_at_tstop_mV"] is not None
        assert check["spike_counts_match"], (name, check)
        if name == "coreneuron":  # its own arithmetic: ~1e-11 mV at most
            assert check["max_abs_dv_mV"] < 1e-9, check
            assert check["max_abs_spike_time_difference_ms"] < 1e-9, check
        else:
            assert check["max_abs_dv_mV"] == 0.0, (name, check)
            assert check["max_abs_spike_time_difference_ms"] == 0.0, (name, check)
    assert sum(group["accuracy"]["engine_cpu_vs_neuron_sequential"]["spikes_per_instance"]) > 0
    for name in MANY_CELL_BASELINES:
        if name in ran:
            assert f"{name}_vs_neuron_sequential" in group["accuracy"]
    target = report["targets"]["cpu"]
    assert target["met"] is None and "no N >= 100" in target["verdict"]
    assert report["summary"][HEADLINE]["N=2"]["against"] in fair
    assert (tmp_path / "logs" / "l5pc_neuron_nthread2_N2.log").exists()
    _no_sections_left()


def test_coreneuron_build_error_is_nrnivmodls_text(tmp_path, monkeypatch):
    """A mechanism nrnivmodl cannot build: the error carries its output (for the JSON)."""
    monkeypatch.setenv("DHS_NRN_BUILD", str(tmp_path / "build"))
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "broken.mod").write_text("NEURON { SUFFIX broken }\nBREAKPOINT { x = }\n")
    with pytest.raises(RuntimeError, match="nrnivmodl -coreneuron failed") as error:
        coreneuron_mechanisms(mods)
    assert "broken" in str(error.value)
    assert not list((tmp_path / "build").glob("*-coreneuron"))  # nothing half-built left
    _no_sections_left()

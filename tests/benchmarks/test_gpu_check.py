"""The GPU check's dry run (``python3 tasks.py gpu --dry-run OUTDIR``), for real: every
part runs on the CPU, the GPU parts under the CUDA simulator at tiny sizes, and says so."""

from __future__ import annotations

import json
import subprocess
import sys

from paths import ROOT

#: Simulated parts: their numbers mean nothing about speed, and must say so.
SIMULATED = ("solve", "engine", "differences", "l5pc")


def test_dry_run_passes_and_marks_the_simulator(tmp_path):
    outdir = tmp_path / "gpu"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tasks.py"), "gpu", "--dry-run", str(outdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((outdir / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert summary["device"] == "no GPU (simulator)"
    assert {part: result["status"] for part, result in summary["parts"].items()} == {
        part: "ok" for part in ("device", "gpu_tests", *SIMULATED)
    }
    for part in SIMULATED:
        result = json.loads((outdir / f"{part}.json").read_text())
        assert result["simulator"] is True, part
    differences = json.loads((outdir / "differences.json").read_text())
    assert all(case["max_abs_dv_mV"] == 0.0 for case in differences["cases"])
    assert {case["scheme"] for case in differences["cases"]} == {"thread", "lanes"}
    for scheme in differences["mixed"]["schemes"].values():
        assert scheme["max_abs_dv_vs_alone_on_cpu_mV"] == 0.0
    l5pc = json.loads((outdir / "l5pc.json").read_text())
    assert [entry["scheme"] for entry in l5pc["results"]] == ["thread", "lanes"]
    assert all(entry["max_abs_dv_vs_cpu_mV"] == 0.0 for entry in l5pc["results"])
    solve = json.loads((outdir / "solve.json").read_text())
    assert {entry["dtype"] for entry in solve["results"]} == {"float64", "float32"}

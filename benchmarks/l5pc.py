"""Throughput on the released L5PC: N cells with per-cell step amplitudes, side by side.

NEURON runs the N cells in one session with ``ParallelContext.nthread(2)`` (the same two
cores; a warm-up run is excluded), and the engine runs N instances of the exported
model on the CPU (two workers). Both give every cell its own Step3-like amplitude; the
script checks that the traces are equal and writes the ratio, with the machine, to
JSON. Run from a source checkout (the model builder lives with the tests):

    python -m benchmarks.l5pc --n 100 --tstop 300 --out data/benchmarks/l5pc.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
import numpy as np
from neuron import h
from neuron_bridge.compile_mod import load_mod_mechanisms
from neuron_bridge.export import export_model
from dhs.engine import Engine
from published_models import build_l5pc, l5pc_folder

n, tstop, step_delay, part = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
load_mod_mechanisms(l5pc_folder() / "mechanisms")
amplitudes = np.linspace(0.6, 1.2, n)
h.dt = 0.025
h.load_file("stdrun.hoc")
h.cvode.active(0)
if part == "engine":
    built = build_l5pc("Step3")
    built["clamps"][0].delay = step_delay
    model = export_model()
    soma = int(built["soma"].node_index())
    engine = Engine(model, n)
    engine.set("IClamp.amp", amplitudes, target=built["clamps"][0])
    engine.run(1.0)  # compiles (cached)
    start = time.perf_counter()
    result = engine.run(tstop, record_nodes=[soma], spike_node=soma)
    seconds = time.perf_counter() - start
    traces = result.v[:, 0]
else:
    cells = []
    for amplitude in amplitudes:
        built = build_l5pc("Step3")
        built["clamps"][0].delay = step_delay
        built["clamps"][0].amp = amplitude
        cells.append(built)
    vectors = [h.Vector().record(c["soma"]._ref_v) for c in cells]
    context = h.ParallelContext()
    context.nthread(2 if part == "nthread2" else 1)
    h.finitialize(h.v_init)
    h.continuerun(min(tstop, 5.0))  # warm-up, excluded
    start = time.perf_counter()
    h.finitialize(h.v_init)
    h.continuerun(tstop)
    seconds = time.perf_counter() - start
    traces = np.array([np.array(v) for v in vectors])
    context.nthread(1)
np.save(sys.argv[5], traces)
print("SECONDS", seconds)
"""


def _run(part: str, n: int, tstop: float, step_delay: float, out: Path) -> float:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "support")])
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(tstop), str(step_delay), part, str(out)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{completed.stderr[-3000:]}")
    line = next(x for x in completed.stdout.splitlines() if x.startswith("SECONDS"))
    return float(line.split()[1])


def main(argv=None) -> int:
    import numpy as np

    parser = argparse.ArgumentParser(prog="dhs-bench l5pc", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="cells (default 100)")
    parser.add_argument("--tstop", type=float, default=300.0, help="ms (default 300)")
    parser.add_argument(
        "--step-delay",
        type=float,
        default=100.0,
        help="step onset in ms (Step3's is 700; default 100 so short runs spike)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "benchmarks" / "l5pc.json")
    arguments = parser.parse_args(argv)
    work = arguments.out.parent
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    traces = {}
    for part in ("engine", "nthread2"):
        path = work / f".l5pc_{part}.npy"
        timings[part] = _run(part, arguments.n, arguments.tstop, arguments.step_delay, path)
        traces[part] = np.load(path)
        path.unlink()
        print(f"{part}: {timings[part]:.2f} s", flush=True)
    difference = float(np.abs(traces["engine"] - traces["nthread2"]).max())
    report = {
        "model": "BluePyOpt examples/l5pc, released parameters, Step3 holding + step",
        "n_cells": arguments.n,
        "tstop_ms": arguments.tstop,
        "dt_ms": 0.025,
        "step_delay_ms": arguments.step_delay,
        "seconds": timings,
        "engine_speedup_vs_neuron_nthread2": timings["nthread2"] / timings["engine"],
        "max_abs_dv_mV": difference,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    arguments.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
